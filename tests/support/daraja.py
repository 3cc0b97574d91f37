"""Helpers for tests that talk to the Daraja simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from core.mpesa import DarajaClient
from simulators.daraja import (
    SANDBOX_PASSKEY,
    SANDBOX_SHORT_CODE,
    SIMULATOR_CONSUMER_KEY,
    SIMULATOR_CONSUMER_SECRET,
    DarajaSimulator,
    create_app,
    simulator_state,
)

LOCAL_PREFIX = "/sim/daraja"  # where `serve` mounts the simulator in local mode


@dataclass
class RunningSimulator:
    """A simulator listening on 127.0.0.1; ``base_url`` is what a DarajaClient is given."""

    base_url: str
    state: DarajaSimulator

    def requests(self, endpoint: str) -> list[dict[str, Any]]:
        """Logged requests to one endpoint: "oauth", "stk_push" or "stk_query"."""
        return self.state.entries(kind="request", endpoint=endpoint)

    def callbacks(self) -> list[dict[str, Any]]:
        """Logged callback deliveries."""
        return self.state.entries(kind="callback")

    async def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call the control API over HTTP (POST with a body, GET without)."""
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False) as http:
            if body is None and path in ("/control/log", "/control/transactions"):
                response = await http.get(path)
            else:
                response = await http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 3.0) -> None:
        """Poll until ``predicate()`` is true (the simulator works in the background)."""
        await wait_until(predicate, within)


@asynccontextmanager
async def running_simulator(
    *, prefix: str | None = LOCAL_PREFIX, **kwargs: Any
) -> AsyncIterator[RunningSimulator]:
    """Start the simulator (mounted under ``prefix`` like local mode, or at the root)."""
    kwargs.setdefault("callback_delay", 0.05)
    kwargs.setdefault("late_delay", 0.4)
    sim_app = create_app(**kwargs)
    state = simulator_state(sim_app)
    if prefix:
        root = web.Application()
        root.add_subapp(prefix, sim_app)
    else:
        root = sim_app
    runner = web.AppRunner(root)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningSimulator(base_url=f"http://127.0.0.1:{port}{prefix or ''}", state=state)
    finally:
        await runner.cleanup()


@dataclass
class ReceivedCallback:
    """One POST the listener got."""

    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class CallbackListener:
    """A stand-in for our webhook: records every POST and answers like the real endpoint."""

    base_url: str = ""
    status: int = 200
    received: list[ReceivedCallback] = field(default_factory=list)

    def url(self, secret: str = "s3cr3t") -> str:
        """A CallBackURL shaped like the service's (no "mpesa" in it)."""
        return f"{self.base_url}/hooks/lnm/{secret}"

    async def wait_for(self, count: int, within: float = 3.0) -> list[ReceivedCallback]:
        """Wait until ``count`` callbacks arrived and return them."""
        await wait_until(lambda: len(self.received) >= count, within)
        return self.received

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(ReceivedCallback(request.path, await request.read(), dict(request.headers)))
        return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"}, status=self.status)


@asynccontextmanager
async def callback_listener(status: int = 200) -> AsyncIterator[CallbackListener]:
    """Run a CallbackListener on 127.0.0.1 (random port)."""
    listener = CallbackListener(status=status)
    app = web.Application()
    app.router.add_post("/hooks/lnm/{secret}", listener._handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    listener.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield listener
    finally:
        await runner.cleanup()


def make_client(base_url: str, **overrides: Any) -> DarajaClient:
    """A DarajaClient for the simulator's default credentials, with test-friendly delays."""
    values: dict[str, Any] = {
        "base_url": base_url,
        "short_code": SANDBOX_SHORT_CODE,
        "passkey": SANDBOX_PASSKEY,
        "consumer_key": SIMULATOR_CONSUMER_KEY,
        "consumer_secret": SIMULATOR_CONSUMER_SECRET,
        "retry_base_delay": 0.01,
        "timeout": 5.0,
        "trust_env": False,  # never route test traffic through an environment proxy
    }
    values.update(overrides)
    return DarajaClient(**values)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    """Poll ``predicate`` every 10 ms; fail the test after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)
