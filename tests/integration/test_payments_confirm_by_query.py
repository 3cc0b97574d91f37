"""Outside simulator mode a success callback is confirmed by STK Query before it settles anything.

The URL secret alone is not proof: whoever learns one callback URL could otherwise confirm a
booking with a made-up receipt. These tests run our app in ``sandbox`` mode against the
project's Daraja simulator over real HTTP (the simulator plays Safaricom's sandbox).
"""

from __future__ import annotations

import asyncio
import json

from core.db.models import CallbackInbox, PaymentAttempt
from core.domain.states import BookingStatus, PaymentStatus
from core.mpesa import StkQueryResult
from core.runtime import Runtime
from core.services.payments.intake import PROVIDER, SettlementWorker
from simulators.daraja import SIMULATOR_CONSUMER_KEY, SIMULATOR_CONSUMER_SECRET
from tests.factories import make_attempt, make_booking
from tests.integration.test_payments_callbacks import _body, _held_attempt
from tests.support.payments import PaymentStack, payment_stack

SANDBOX = {
    "MPESA_ENVIRONMENT": "sandbox",
    "MPESA_CONSUMER_KEY": SIMULATOR_CONSUMER_KEY,
    "MPESA_CONSUMER_SECRET": SIMULATOR_CONSUMER_SECRET,
    "SECRET_KEY": "UGNcPTHOh4H7RvzVvRQDFhjCl_Ku2N5NWsKldVX9qaY",  # secrets.token_urlsafe(32)
}
SUCCESS_PHONE = "0708374149"


def queried(stack: PaymentStack, checkout_request_id: str) -> int:
    """How many STK Queries the simulator received for this push."""
    bodies = [r["body"] for r in stack.sim.requests("stk_query")]
    return sum(1 for body in bodies if body.get("CheckoutRequestID") == checkout_request_id)


async def test_in_sandbox_a_genuine_success_is_queried_and_then_confirms_the_booking(database_url: str):
    async with payment_stack(database_url, **SANDBOX) as stack:
        assert stack.services.settlement.confirm is not None
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        paid = await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        assert queried(stack, paid.checkout_request_id) >= 1
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED


async def test_in_sandbox_a_success_waits_for_the_query_before_settling(database_url: str):
    async with payment_stack(database_url, **SANDBOX) as stack:
        booking, attempt, secret = await _held_attempt(stack)  # Daraja: still on the phone
        answer = await stack.post_callback(
            secret, _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt="QZZ0000001")
        )
        assert answer.status_code == 200  # stored durably, as before
        await stack.sim.wait_for(lambda: queried(stack, attempt.checkout_request_id) >= 1)
        await asyncio.sleep(0.3)
        assert (await stack.attempt(attempt.id)).status == PaymentStatus.AWAITING_CUSTOMER
        assert (await stack.booking(booking.id)).status == BookingStatus.APPROVED

        await stack.sim.control("/control/resolve", {"CheckoutRequestID": attempt.checkout_request_id,
                                                     "outcome": "success"})
        stack.runtime.wake("settlement")
        await stack.wait_status(attempt.id, PaymentStatus.PAID, within=10)
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED


async def test_in_sandbox_a_forged_success_that_the_query_contradicts_confirms_nothing(database_url: str):
    async with payment_stack(database_url, **SANDBOX) as stack:
        booking, attempt, secret = await _held_attempt(stack)
        # The customer in fact cancels; the forger knows the URL and posts a success first.
        forged = _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt="FAKE000001")
        assert (await stack.post_callback(secret, forged)).status_code == 200
        await stack.sim.control("/control/resolve", {"CheckoutRequestID": attempt.checkout_request_id,
                                                     "outcome": "cancelled"})
        stack.runtime.wake("settlement")
        settled = await stack.wait_status(
            attempt.id, PaymentStatus.NEEDS_REVIEW, PaymentStatus.CANCELLED, PaymentStatus.FAILED, within=10
        )
        assert queried(stack, attempt.checkout_request_id) >= 1
        assert settled.status != PaymentStatus.PAID  # NEEDS_REVIEW keeps the claim for a person to judge
        assert (await stack.booking(booking.id)).status == BookingStatus.APPROVED
        assert await stack.outbox(template="payment_confirmed_client") == []


async def test_in_sandbox_the_query_can_be_turned_off_explicitly(database_url: str):
    async with payment_stack(database_url, **SANDBOX, MPESA_CONFIRM_WITH_QUERY="false") as stack:
        assert stack.services.settlement.confirm is None
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        paid = await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        assert queried(stack, paid.checkout_request_id) == 0


async def test_in_simulator_mode_a_success_settles_without_a_query_as_before(database_url: str):
    async with payment_stack(database_url) as stack:
        assert stack.services.settlement.confirm is None
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        paid = await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        assert queried(stack, paid.checkout_request_id) == 0


async def test_a_query_that_is_not_final_is_asked_again_only_after_a_growing_wait(runtime: Runtime):
    async with runtime.uow() as uow:
        attempt = await make_attempt(uow.session, await make_booking(uow.session))
        body = _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt="QWE1234567")
        uow.session.add(CallbackInbox(provider=PROVIDER, provider_id=f"{attempt.checkout_request_id}:0",
                                      raw_body=json.dumps(body)))
        await uow.commit()
    asked: list[str] = []
    final = StkQueryResult(pending=True, result_code=None, result_desc=None)

    async def query(checkout_request_id: str) -> StkQueryResult:
        asked.append(checkout_request_id)
        return final

    now = [1000.0]
    worker = SettlementWorker(runtime, confirm=query, monotonic=lambda: now[0])

    async def sweep_at(seconds_later: float) -> int:
        now[0] += seconds_later
        await worker.settle_pending()
        return len(asked)

    assert await sweep_at(0) == 1  # asked at once
    assert [await sweep_at(2) for _ in range(2)] == [1, 1]  # every 2 s sweep: not again yet
    assert await sweep_at(1) == 2  # 5 s after the first answer
    assert await sweep_at(5) == 2 and await sweep_at(5) == 3  # then 10 s
    final = StkQueryResult(pending=False, result_code=0, result_desc="The service request is processed")
    assert await sweep_at(20) == 4
    async with runtime.uow() as uow:
        settled = await uow.session.get_one(PaymentAttempt, attempt.id)
    assert settled.status == PaymentStatus.PAID and settled.mpesa_receipt == "QWE1234567"
