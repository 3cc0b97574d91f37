"""A running payment stack for tests: our app and the Daraja simulator, both on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiohttp import web
from sqlalchemy import func, select

from core.db.models import AuditEntry, Booking, CallbackInbox, Outbox, PaymentAttempt, Reminder
from core.db.types import utcnow
from core.runtime import Runtime, build_runtime
from simulators.daraja import DarajaSimulator
from smiling_steps.app import SERVICES, Services, create_app
from tests.conftest import make_settings
from tests.factories import make_booking
from tests.support.daraja import RunningSimulator, closed_port, running_simulator, wait_until


class Clock:
    """A clock the test moves forward; starts at the real time, or at `start` when given."""

    def __init__(self, start: datetime | None = None) -> None:
        self.offset = timedelta() if start is None else start - utcnow()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class PaymentStack:
    runtime: Runtime
    services: Services
    sim: RunningSimulator
    base_url: str
    clock: Clock

    @property
    def daraja(self) -> DarajaSimulator:
        return self.sim.state

    async def approved_booking(self, **overrides: Any) -> Booking:
        async with self.runtime.uow() as uow:
            booking = await make_booking(uow.session, **overrides)
            await uow.commit()
            return booking

    async def attempt(self, attempt_id: int) -> PaymentAttempt:
        async with self.runtime.uow() as uow:
            return await uow.session.get_one(PaymentAttempt, attempt_id)

    async def booking(self, booking_id: int) -> Booking:
        async with self.runtime.uow() as uow:
            return await uow.session.get_one(Booking, booking_id)

    async def wait_status(self, attempt_id: int, *statuses: str, within: float = 5.0) -> PaymentAttempt:
        """Poll the attempt until it reaches one of ``statuses``."""
        seen: list[PaymentAttempt] = []

        async def check() -> bool:
            seen.append(await self.attempt(attempt_id))
            return seen[-1].status in statuses

        deadline = utcnow() + timedelta(seconds=within)
        while not await check():
            if utcnow() > deadline:
                raise AssertionError(f"attempt {attempt_id} stayed {seen[-1].status}, wanted {statuses}")
            await _sleep(0.02)
        return seen[-1]

    async def outbox(self, **where: Any) -> list[Outbox]:
        async with self.runtime.uow() as uow:
            query = select(Outbox).order_by(Outbox.id)
            for key, value in where.items():
                query = query.where(getattr(Outbox, key) == value)
            return list((await uow.session.scalars(query)).all())

    async def reminders(self, booking_id: int) -> list[Reminder]:
        async with self.runtime.uow() as uow:
            return list(
                (await uow.session.scalars(select(Reminder).where(Reminder.booking_id == booking_id))).all()
            )

    async def audit_actions(self, subject_type: str, subject_id: int) -> list[AuditEntry]:
        async with self.runtime.uow() as uow:
            return list(
                (
                    await uow.session.scalars(
                        select(AuditEntry)
                        .where(
                            AuditEntry.subject_type == subject_type, AuditEntry.subject_id == str(subject_id)
                        )
                        .order_by(AuditEntry.seq)
                    )
                ).all()
            )

    async def inbox_count(self) -> int:
        async with self.runtime.uow() as uow:
            return int(await uow.session.scalar(select(func.count(CallbackInbox.id))) or 0)

    async def post_callback(self, path_secret: str, body: Any) -> httpx.Response:
        """POST a callback body (dict → JSON, bytes as they are) to our webhook."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:
            return await http.post(
                f"/hooks/lnm/{path_secret}", content=content, headers={"Content-Type": "application/json"}
            )

    def callback_secret_of(self, checkout_request_id: str) -> str:
        """The secret in the CallBackURL the simulator was given for this push."""
        return self.daraja.transactions[checkout_request_id].callback_url.rsplit("/", 1)[1]

    def pushes(self) -> list[dict[str, Any]]:
        """STK Push requests the simulator received."""
        return self.sim.requests("stk_push")


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@asynccontextmanager
async def payment_stack(
    database_url: str, *, start: datetime | None = None, **env: str
) -> AsyncIterator[PaymentStack]:
    """Start the Daraja simulator (at its root, like Safaricom) and our app wired to it.

    ``start``: where the runtime's clock begins (default: now), for tests whose free days and
    times must not depend on when they run.
    """
    async with running_simulator(prefix=None, callback_delay=0.05) as sim:
        port = closed_port()
        settings = make_settings(
            database_url,
            PORT=str(port),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            MPESA_API_BASE_URL=sim.base_url,
            **{"SECRET_KEY": "test-secret-key-for-callbacks", **env},
        )
        clock = Clock(start=start)
        runtime = build_runtime(settings, clock=clock)
        app = create_app(settings, runtime, with_bot=False, with_notifications=False)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            yield PaymentStack(runtime, app[SERVICES], sim, f"http://127.0.0.1:{port}", clock)
        finally:
            await runner.cleanup()


__all__ = ["Clock", "PaymentStack", "payment_stack", "wait_until"]
