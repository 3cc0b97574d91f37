"""Helpers for Telegram tests: the Bot API stand-in on 127.0.0.1, a fake engine, fake payments.

The fakes are small working implementations (not mocks): ``FakeEngine.handle`` answers by
a rule function and records what it was asked; ``FakePayments.status`` returns views the
test sets.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from bot.app import BotHandle, start_bot
from core.db.types import utcnow
from core.dialog.types import Inbound, Reply
from core.domain.states import PaymentStatus
from core.runtime import Runtime
from core.services.payments.initiate import PaymentView
from simulators.telegram_api import SIMULATOR_TOKEN, TelegramApiSimulator, create_app, simulator_state

LOCAL_PREFIX = "/sim/telegram"  # where `serve` mounts the stand-in in local mode


@dataclass
class RunningTelegram:
    """The stand-in listening on 127.0.0.1."""

    root_url: str  # the stand-in's own root (driver API at root_url + "/driver/…")
    state: TelegramApiSimulator
    token: str = SIMULATOR_TOKEN

    @property
    def base_url(self) -> str:
        """What PTB's ``base_url`` / TELEGRAM_API_BASE_URL is set to."""
        return f"{self.root_url}/bot"


@asynccontextmanager
async def running_telegram(
    prefix: str | None = LOCAL_PREFIX, **kwargs: Any
) -> AsyncIterator[RunningTelegram]:
    """Start the stand-in (mounted under ``prefix`` like local mode, or at the root)."""
    sim_app = create_app(**kwargs)
    state = simulator_state(sim_app)
    if prefix:
        root = web.Application()
        root.add_subapp(prefix, sim_app)
    else:
        root = sim_app
    runner = web.AppRunner(root, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningTelegram(f"http://127.0.0.1:{port}{prefix or ''}", state)
    finally:
        await runner.cleanup()


Rule = Callable[[Inbound], Iterable[Reply] | Awaitable[Iterable[Reply]]]


def echo(inbound: Inbound) -> list[Reply]:
    """The default rule: say back what arrived."""
    what = inbound.text or inbound.option or inbound.contact_phone or ""
    return [Reply(f"You said: {what}")]


@dataclass
class FakeEngine:
    """A tiny DialogEngine: ``respond`` decides the replies; every call is recorded."""

    respond: Rule = echo
    delay: float = 0.0  # slow work, e.g. an STK Push
    calls: list[tuple[float, Inbound]] = field(default_factory=list)  # (monotonic time, inbound)

    async def handle(self, inbound: Inbound) -> list[Reply]:
        self.calls.append((time.monotonic(), inbound))
        if self.delay:
            await asyncio.sleep(self.delay)
        result = self.respond(inbound)
        if inspect.isawaitable(result):
            result = await result
        return list(result)

    @property
    def inbounds(self) -> list[Inbound]:
        return [inbound for _at, inbound in self.calls]


def payment_view(
    attempt_id: int = 1,
    booking_id: int = 10,
    status: PaymentStatus = PaymentStatus.AWAITING_CUSTOMER,
    *,
    created_at: datetime | None = None,
    deadline_s: int = 120,
    **overrides: Any,
) -> PaymentView:
    created = created_at or utcnow()
    values: dict[str, Any] = {
        "attempt_id": attempt_id,
        "booking_id": booking_id,
        "status": status,
        "amount_kes": 2500,
        "phone_masked": "*******4149",
        "checkout_request_id": "ws_CO_test",
        "receipt": None,
        "result_code": None,
        "client_message": None,
        "created_at": created,
        "deadline_at": created + timedelta(seconds=deadline_s),
        "test_mode": True,
    }
    values.update(overrides)
    return PaymentView(**values)


@dataclass
class FakePayments:
    """Answers ``status(attempt_id)`` from views the test sets (``settle`` also wakes the bot)."""

    runtime: Runtime | None = None
    views: dict[int, PaymentView] = field(default_factory=dict)
    reads: int = 0

    def add(self, view: PaymentView) -> PaymentView:
        self.views[view.attempt_id] = view
        return view

    def settle(self, attempt_id: int, status: PaymentStatus, **changes: Any) -> None:
        """Change an attempt like settlement does, then wake the chat side like on_change does."""
        self.views[attempt_id] = replace(self.views[attempt_id], status=status, **changes)
        if self.runtime is not None:
            self.runtime.wake("payments")

    async def status(self, attempt_id: int) -> PaymentView:
        self.reads += 1
        return self.views[attempt_id]


@asynccontextmanager
async def running_bot(
    runtime: Runtime,
    engine: Any,
    telegram: RunningTelegram,
    payments: Any = None,
    app: web.Application | None = None,
    **kwargs: Any,
) -> AsyncIterator[BotHandle]:
    """start_bot against the stand-in; waits until it receives updates; stops it afterwards."""
    kwargs.setdefault("poll_timeout", 10.0)
    handle = await start_bot(
        runtime,
        engine,
        payments or FakePayments(runtime),
        app,
        token=telegram.token,
        base_url=telegram.base_url,
        **kwargs,
    )
    try:
        await handle.wait_ready(5.0)
        yield handle
    finally:
        await handle.stop()


@asynccontextmanager
async def serving(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """Serve an aiohttp app on 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


__all__ = [
    "FakeEngine",
    "FakePayments",
    "LOCAL_PREFIX",
    "RunningTelegram",
    "echo",
    "payment_view",
    "running_bot",
    "running_telegram",
    "serving",
]
