"""The watchdog tick by tick: an attempt past its deadline is queried in the same tick.

The Daraja simulator answers the STK Push and Query over HTTP; the watchdog is driven by
the test alone (no background ticks) on a clock that stands still until the test moves it,
so every tick's outcome is exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.db.models import Booking, PaymentAttempt
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime, build_runtime
from core.services.payments.initiate import PaymentService
from core.services.payments.watchdog import Watchdog, query_delay
from tests.conftest import make_settings
from tests.factories import make_booking
from tests.support.daraja import RunningSimulator, closed_port, make_client, running_simulator

DEADLINE_S = 120
SECRET_KEY = "test-secret-key-for-callbacks"
PHONE = "0708374149"


class StillClock:
    """Stands still until advanced (unlike tests.support.payments.Clock, which follows real time)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Stack:
    runtime: Runtime
    clock: StillClock
    sim: RunningSimulator
    payments: PaymentService
    watchdog: Watchdog

    async def attempt(self, attempt_id: int) -> PaymentAttempt:
        async with self.runtime.uow() as uow:
            return await uow.session.get_one(PaymentAttempt, attempt_id)

    async def booking(self, booking_id: int) -> Booking:
        async with self.runtime.uow() as uow:
            return await uow.session.get_one(Booking, booking_id)

    async def approved_booking(self) -> Booking:
        async with self.runtime.uow() as uow:
            booking = await make_booking(uow.session)
            await uow.commit()
            return booking

    def queries(self) -> int:
        return len(self.sim.requests("stk_query"))

    def pushes(self) -> int:
        return len(self.sim.requests("stk_push"))


@asynccontextmanager
async def watchdog_stack(database_url: str) -> AsyncIterator[Stack]:
    async with running_simulator(prefix=None) as sim:
        port = closed_port()  # no callback ever arrives: the watchdog alone finds the results
        settings = make_settings(
            database_url,
            PORT=str(port),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            MPESA_API_BASE_URL=sim.base_url,
            SECRET_KEY=SECRET_KEY,
        )
        clock = StillClock(datetime(2026, 11, 26, 7, 0, tzinfo=UTC))
        runtime = build_runtime(settings, clock=clock)
        client = make_client(sim.base_url)
        payments = PaymentService(runtime, client, SECRET_KEY)
        try:
            yield Stack(runtime, clock, sim, payments, Watchdog(runtime, client, payments))
        finally:
            await client.aclose()
            await runtime.close()


# Feature: mpesa-payment-integration, Property 14: STK Push Timeout Handling
# Feature: mpesa-payment-integration, Property 19: Unclear Status Triggers Direct Query
async def test_one_tick_after_the_deadline_settles_a_paid_attempt_by_stk_query(database_url: str):
    async with watchdog_stack(database_url) as stack:
        # the customer paid, but the callback never comes; the query knows at once
        await stack.sim.control("/control/next-outcome", {"outcome": "no_callback", "delay": 0})
        booking = await stack.approved_booking()
        view = await stack.payments.initiate_payment(booking.id, booking.client_id, PHONE)
        assert view.status == PaymentStatus.AWAITING_CUSTOMER
        stack.clock.advance(DEADLINE_S - 1)
        assert await stack.watchdog.tick() == {}  # still within the deadline: the customer may be typing
        assert stack.queries() == 0
        stack.clock.advance(2)
        assert await stack.watchdog.tick() == {"deadline_passed": 1, "settled_paid": 1}
        paid = await stack.attempt(view.attempt_id)
        assert paid.status == PaymentStatus.PAID and paid.settled_at == stack.clock()
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED
        assert (stack.queries(), stack.pushes()) == (1, 1)
        assert await stack.watchdog.tick() == {}  # settled: nothing left to do


async def test_being_processed_at_the_deadline_is_asked_again_only_after_the_back_off(database_url: str):
    async with watchdog_stack(database_url) as stack:
        await stack.sim.control("/control/next-outcome", {"outcome": "hold"})  # the PIN prompt stays open
        booking = await stack.approved_booking()
        view = await stack.payments.initiate_payment(booking.id, booking.client_id, PHONE)
        stack.clock.advance(DEADLINE_S + 1)
        assert await stack.watchdog.tick() == {"deadline_passed": 1, "pending": 1}
        unclear = await stack.attempt(view.attempt_id)
        assert unclear.status == PaymentStatus.UNCLEAR and unclear.query_count == 1
        assert unclear.next_check_at == stack.clock() + query_delay(0)
        assert await stack.watchdog.tick() == {}  # bounded: one query per back-off step
        assert stack.queries() == 1
        stack.clock.advance(query_delay(0).total_seconds())
        assert await stack.watchdog.tick() == {"pending": 1}
        assert (await stack.attempt(view.attempt_id)).next_check_at == stack.clock() + query_delay(1)
        assert (stack.queries(), stack.pushes()) == (2, 1)  # asked twice, never pushed again
