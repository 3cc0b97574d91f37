"""Security warnings of the webhooks (forged secrets, refused addresses, rejected callbacks), rate-limited.

Anyone can send garbage to a public webhook, and a WARNING per request lets them fill the disk
(200 concurrent garbage requests for 20 s made ~16k lines). Per event kind and interval, the
first :attr:`SecurityLog.burst` events are logged in full with the caller's source address;
the rest are only counted, and when the interval ends one summary line gives the count and the
busiest source addresses. Callers pass the source address and safe fields only: never a path
secret, a token or a full phone number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

MAX_SOURCES_TRACKED = 50  # distinct source addresses counted per window (memory stays bounded)
TOP_SOURCES_SHOWN = 5


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    timer: asyncio.TimerHandle | None = None


class SecurityLog:
    """One logger's security warnings, at most ``burst`` lines per event per ``interval_s`` plus a summary."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self.burst = burst
        self.interval_s = interval_s
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def warning(self, event: str, message: str, *, source: str | None, **fields: object) -> None:
        """Log (or count) one security event; ``event`` names its kind, e.g. ``unknown_callback_secret``."""
        now = self._clock()
        window = self._windows.get(event)
        if window is not None and now - window.started >= self.interval_s:
            self._close(event, window)
            window = None
        if window is None:
            window = self._windows[event] = _Window(started=now)
        if window.logged < self.burst:
            window.logged += 1
            self._logger.warning(
                f"security: {message}", extra={"event": event, "source": source or "unknown", **fields}
            )
            return
        window.suppressed += 1
        source = source or "unknown"
        if source in window.sources or len(window.sources) < MAX_SOURCES_TRACKED:
            window.sources[source] += 1
        if window.timer is None:
            window.timer = _call_later(self.interval_s - (now - window.started), self._on_timer, event)

    def flush(self) -> None:
        """Write the summary of every interval that has ended (on demand; a timer does it too)."""
        now = self._clock()
        for event, window in list(self._windows.items()):
            if now - window.started >= self.interval_s:
                self._close(event, window)

    def close(self) -> None:
        """Write the summaries of every interval still open (at shutdown, so no count is lost)."""
        for event, window in list(self._windows.items()):
            self._close(event, window)

    def _on_timer(self, event: str) -> None:
        window = self._windows.get(event)
        if window is None:
            return
        remaining = self.interval_s - (self._clock() - window.started)
        if remaining > 0:  # woke a little early (timer resolution): wait for the rest
            window.timer = _call_later(remaining, self._on_timer, event)
        else:
            self._close(event, window)

    def _close(self, event: str, window: _Window) -> None:
        del self._windows[event]
        if window.timer is not None:
            window.timer.cancel()
        if not window.suppressed:
            return
        top = ", ".join(f"{src} x{n}" for src, n in window.sources.most_common(TOP_SOURCES_SHOWN))
        self._logger.warning(
            f"security: {window.suppressed} more '{event}' events in {self.interval_s:g} s "
            f"(not logged one by one; busiest sources: {top})",
            extra={
                "event": event,
                "summary": True,
                "suppressed": window.suppressed,
                "interval_s": self.interval_s,
                "sources": dict(window.sources.most_common(TOP_SOURCES_SHOWN)),
            },
        )


def _call_later(delay: float, callback: Callable[[str], None], event: str) -> asyncio.TimerHandle | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop (a synchronous caller): the next event or flush() writes the summary
        return None
    return loop.call_later(max(delay, 0.0), callback, event)


SECURITY_LOG = web.AppKey("security_log", SecurityLog)
SECURITY_LOGGER = logging.getLogger("smiling_steps.security")


def install_security_log(app: web.Application) -> SecurityLog:
    """The application's security log, created on first call (every webhook's setup calls this).

    One instance per application, so its budget is shared by all the webhooks on it; a test may
    put its own (with a driven clock) under :data:`SECURITY_LOG` before setting up the routes.
    """
    if SECURITY_LOG not in app:
        app[SECURITY_LOG] = SecurityLog(SECURITY_LOGGER)

        async def write_open_summaries(app: web.Application) -> None:
            app[SECURITY_LOG].close()

        app.on_shutdown.append(write_open_summaries)
    return app[SECURITY_LOG]


class MalformedRequestFilter(logging.Filter):
    """On aiohttp's server logger: a malformed request is the caller's doing, not a server error.

    aiohttp logs each request it cannot parse (bad header bytes, unknown Content-Encoding,
    broken chunking or compression) at ERROR with a traceback, sometimes twice; anyone can
    send them. Such records are replaced by a ``malformed_http_request`` line of the security
    log (no traceback, rate-limited, with the source address when aiohttp gives it). Every
    other record — a handler's exception, a real bug — passes unchanged, traceback and all.
    """

    def __init__(self, security: SecurityLog) -> None:
        super().__init__()
        self.security = security

    def filter(self, record: logging.LogRecord) -> bool:
        problem = _protocol_error(record.exc_info[1] if record.exc_info else None)
        if problem is None:
            return True
        source = record.args[0] if isinstance(record.args, tuple) and record.args else None
        reason = " ".join(str(getattr(problem, "message", "") or problem).split())[:120]
        self.security.warning(
            "malformed_http_request",
            f"malformed HTTP request refused ({type(problem).__name__})",
            source=str(source) if source else None,
            reason=reason,
        )
        return False


def _protocol_error(exc: BaseException | None) -> BaseException | None:
    """The HTTP protocol error in ``exc``'s chain (cause/context), if it is one caused by the caller."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (HttpProcessingError, RequestPayloadError)):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def install_malformed_request_filter(security: SecurityLog | None = None) -> MalformedRequestFilter:
    """Put the filter on ``aiohttp.server`` (once; a later call replaces the earlier filter)."""
    server_log = logging.getLogger("aiohttp.server")
    for old in [f for f in server_log.filters if isinstance(f, MalformedRequestFilter)]:
        server_log.removeFilter(old)
    installed = MalformedRequestFilter(security or SecurityLog(SECURITY_LOGGER))
    server_log.addFilter(installed)
    return installed
