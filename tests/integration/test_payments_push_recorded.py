"""A push Daraja accepted is never lost to a database error while it is being recorded.

Our app and the Daraja simulator run over real HTTP on 127.0.0.1 on the test's database. Only
the payment service's own view of the runtime is wrapped: once the simulator holds the push,
its next units of work fail the way an exhausted connection pool does (sqlalchemy's
``TimeoutError``). Everything else — the callback intake, settlement, the watchdog — uses the
real database.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.db.uow import UnitOfWork
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services.payments.initiate import PaymentService
from core.services.payments.watchdog import STALE_QUEUED_AFTER
from simulators.daraja import DarajaSimulator
from tests.support.payments import PaymentStack, payment_stack

SUCCESS_PHONE = "0708374149"


class PoolRunsDryAfterThePush:
    """The runtime as the payment service sees it; after the push, ``failures`` units of work fail."""

    def __init__(self, runtime: Runtime, daraja: DarajaSimulator, failures: int) -> None:
        self._runtime, self._daraja, self.failures = runtime, daraja, failures
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def uow(self) -> UnitOfWork:
        if self._daraja.transactions and self.refused < self.failures:
            self.refused += 1
            raise PoolTimeout("QueuePool limit of size 10 overflow 20 reached, connection timed out")
        return self._runtime.uow()


def failing_payments(stack: PaymentStack, failures: int) -> tuple[PaymentService, PoolRunsDryAfterThePush]:
    wrapper = PoolRunsDryAfterThePush(stack.runtime, stack.daraja, failures)
    return dataclasses.replace(stack.services.payments, runtime=cast(Runtime, wrapper)), wrapper


# Feature: mpesa-payment-integration, Property 73: Database Failure Rolls Back Transaction
# Feature: mpesa-payment-integration, Property 10: STK Push Stores Checkout ID
async def test_an_accepted_push_that_cannot_be_recorded_is_settled_by_its_callback_and_never_pushed_again(
    database_url: str,
) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        payments, pool = failing_payments(stack, failures=1_000)

        view = await payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)

        (checkout,) = stack.daraja.transactions
        assert pool.refused >= 4  # the write was retried before giving up
        assert view.status is PaymentStatus.UNCLEAR  # the chat says "we are checking", no traceback
        assert view.checkout_request_id == checkout
        # The callback finds the attempt by the secret in its URL and gives it its CheckoutRequestID.
        await _wait_for_checkout(stack, view.attempt_id, checkout)
        assert (await stack.attempt(view.attempt_id)).status == PaymentStatus.QUEUED
        stack.clock.advance(STALE_QUEUED_AFTER.total_seconds() + 1)
        await stack.services.watchdog.tick()  # QUEUED without a retry time → UNCLEAR, not re-pushed
        paid = await stack.wait_status(view.attempt_id, PaymentStatus.PAID, within=15.0)

        assert paid.checkout_request_id == checkout and paid.mpesa_receipt
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED
        await stack.services.watchdog.tick()
        assert len(stack.pushes()) == 1


# Feature: mpesa-payment-integration, Property 10: STK Push Stores Checkout ID
async def test_a_brief_database_failure_while_recording_the_push_is_retried(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        payments, pool = failing_payments(stack, failures=2)

        view = await payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)

        (checkout,) = stack.daraja.transactions
        assert pool.refused == 2
        assert view.status is PaymentStatus.AWAITING_CUSTOMER
        assert view.checkout_request_id == checkout
        await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        assert len(stack.pushes()) == 1


async def _wait_for_checkout(
    stack: PaymentStack, attempt_id: int, checkout: str, within: float = 10.0
) -> None:
    """Poll until the attempt holds ``checkout`` (the intake adopts it from the callback)."""
    deadline = asyncio.get_running_loop().time() + within
    while (await stack.attempt(attempt_id)).checkout_request_id != checkout:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"attempt {attempt_id} never learned its CheckoutRequestID")
        await asyncio.sleep(0.05)
