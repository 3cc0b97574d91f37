"""How the HTTP server treats connections: time-outs and limits against idle and slow clients.

aiohttp closes a connection that has not sent a complete request head within the keep-alive
time-out (it arms that timer when the connection opens), and an idle keep-alive connection
after the same time; the webhooks read each body within :attr:`ServerLimits.body_timeout_s`
and only :attr:`ServerLimits.max_concurrent_bodies` at once (``webhooks/request_body.py``).
Requests aiohttp cannot parse are logged as rate-limited security lines, not one ERROR
traceback each (``webhooks/security_log.py``).
A reverse proxy (TLS, request buffering) is still expected in front in production: these
limits keep one process usable without it, they do not replace it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from webhooks.request_body import BODY_LIMITS, BodyLimits
from webhooks.security_log import install_malformed_request_filter


@dataclass(frozen=True)
class ServerLimits:
    """Server time-outs (seconds) and limits; the defaults are what ``smiling-steps serve`` uses."""

    keepalive_timeout_s: float = 15.0  # idle connection, or a request head still incomplete, is closed
    body_timeout_s: float = 10.0  # a webhook body must arrive whole within this (else 408)
    max_concurrent_bodies: int = 128  # webhook bodies being received at once (more wait, then 503)
    lingering_s: float = 2.0  # after an early answer, the rest of an unread body is drained this long
    shutdown_timeout_s: float = 10.0  # on stop, requests in flight get this long to finish
    max_line_size: int = 8190  # request line and each header line (aiohttp's default)
    max_field_size: int = 8190

    def runner_options(self) -> dict[str, Any]:
        """Keyword arguments for ``web.AppRunner`` (and so for ``web.run_app``)."""
        return {
            "keepalive_timeout": self.keepalive_timeout_s,
            "lingering_time": self.lingering_s,
            "shutdown_timeout": self.shutdown_timeout_s,
            "max_line_size": self.max_line_size,
            "max_field_size": self.max_field_size,
        }

    def apply_to(self, app: web.Application) -> None:
        """Give the routes that read bodies their time limit and concurrency bound (before start),
        and turn aiohttp's traceback per malformed request into rate-limited security lines."""
        app[BODY_LIMITS] = BodyLimits(self.body_timeout_s, self.max_concurrent_bodies)
        install_malformed_request_filter()


DEFAULT_LIMITS = ServerLimits()


def new_event_loop(choice: str = "auto") -> asyncio.AbstractEventLoop:
    """serve's event loop (EVENT_LOOP): uvloop where installed ("auto"), or asyncio's own.

    uvloop runs the same asyncio code with a libuv loop written in C: less CPU per request and
    per socket operation (bench/README.md has the figures). "asyncio" turns it off; "uvloop"
    insists (an error when it is not installed, e.g. on Windows or PyPy).
    """
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_server(
    app: web.Application,
    host: str,
    port: int,
    limits: ServerLimits = DEFAULT_LIMITS,
    *,
    event_loop: str = "auto",
) -> None:
    """Serve ``app`` until interrupted, with ``limits`` (``smiling-steps serve``), on the chosen loop."""
    limits.apply_to(app)
    options = limits.runner_options()
    loop = new_event_loop(event_loop)
    asyncio.set_event_loop(loop)
    web.run_app(
        app,
        host=host,
        port=port,
        print=None,
        keepalive_timeout=options.pop("keepalive_timeout"),
        shutdown_timeout=options.pop("shutdown_timeout"),
        loop=loop,
        **options,
    )


async def start_server(
    app: web.Application, host: str, port: int, limits: ServerLimits = DEFAULT_LIMITS
) -> web.AppRunner:
    """Start serving ``app`` on the running loop with ``limits``; ``await runner.cleanup()`` stops it."""
    limits.apply_to(app)
    runner = web.AppRunner(app, **limits.runner_options())
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
