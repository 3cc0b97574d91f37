"""The payment engine end to end: our app and the Daraja simulator over real HTTP on 127.0.0.1.

The simulator picks the outcome from the phone's last digit (see simulators/daraja.py):
0/8/9 success, 1 insufficient, 2 cancelled, 3 wrong PIN, 4 unreachable, 5 no callback,
6 duplicate callback, 7 delayed callback.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from core.domain.states import BookingStatus, PaymentStatus
from core.services.audit import verify_chain
from core.services.payments.initiate import PaymentRefused
from tests.support.payments import payment_stack

SUCCESS_PHONE = "0708374149"
CANCEL_PHONE = "0712345672"
INSUFFICIENT_PHONE = "0712345671"
WRONG_PIN_PHONE = "0712345673"
UNREACHABLE_PHONE = "0712345674"
NO_CALLBACK_PHONE = "0712345675"
DUPLICATE_PHONE = "0712345676"


# Feature: mpesa-payment-integration, Property 10: STK Push Stores Checkout ID
# Feature: mpesa-payment-integration, Property 21: Confirmed Payment Updates Payment Status
# Feature: mpesa-payment-integration, Property 22: Confirmed Payment Updates Session Status
# Feature: mpesa-payment-integration, Property 23: Confirmed Payment Stores Transaction ID
# Feature: mpesa-payment-integration, Property 56: Confirmed Payment Stores Required Fields
async def test_successful_payment_confirms_the_booking_with_receipt_and_messages(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking(email="client@example.org")
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert view.status == PaymentStatus.AWAITING_CUSTOMER
        assert view.checkout_request_id and view.checkout_request_id.startswith("ws_CO_")
        push = stack.pushes()[-1]["body"]
        assert push["Amount"] == booking.price_kes and push["PhoneNumber"] == "254708374149"

        paid = await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        assert paid.mpesa_receipt and len(paid.mpesa_receipt) == 10
        assert paid.paid_amount_kes == booking.price_kes
        assert paid.paid_phone == "254708374149" and paid.transaction_time is not None
        confirmed = await stack.booking(booking.id)
        assert confirmed.status == BookingStatus.CONFIRMED
        assert confirmed.meeting_url and "SmilingSteps-" in confirmed.meeting_url

        templates = {row.template for row in await stack.outbox()}
        assert {
            "payment_confirmed_client",
            "payment_received_therapist",
            "payment_confirmed_email",
        } <= templates
        assert {r.kind for r in await stack.reminders(booking.id)} == {"24h", "1h"}
        actions = [
            (e.details.get("previous"), e.details.get("new"))
            for e in await stack.audit_actions("payment", view.attempt_id)
        ]
        assert ("AWAITING_CUSTOMER", "PAID") in actions
        assert (await verify_chain(stack.runtime.uow())).ok


# Feature: mpesa-payment-integration, Property 53: Callback Processing Time
# Feature: mpesa-payment-integration, Property 51: Payment Initiation Response Time
async def test_initiation_answers_fast_and_callback_settles_within_five_seconds(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        started = time.monotonic()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert time.monotonic() - started < 3.0
        await stack.wait_status(view.attempt_id, PaymentStatus.PAID, within=5.0)


# Feature: mpesa-payment-integration, Property 5: Pending Sessions Block Payment
async def test_pending_booking_cannot_be_paid_and_nothing_is_pushed(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking(status=BookingStatus.PENDING_APPROVAL)
        with pytest.raises(PaymentRefused) as refused:
            await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert refused.value.code == "not_approved"
        assert stack.pushes() == []


async def test_a_session_that_has_started_can_no_longer_be_paid(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        stack.clock.advance((booking.starts_at - stack.clock()).total_seconds() + 60)
        with pytest.raises(PaymentRefused) as refused:
            await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert refused.value.code == "too_late"
        assert stack.pushes() == []
        assert (await stack.booking(booking.id)).status == BookingStatus.APPROVED  # housekeeping expires it


async def test_only_the_bookings_own_client_may_pay(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        with pytest.raises(PaymentRefused) as refused:
            await stack.services.payments.initiate_payment(booking.id, booking.client_id + 999, SUCCESS_PHONE)
        assert refused.value.code == "not_found"
        assert stack.pushes() == []


async def test_second_pay_request_while_waiting_returns_the_same_attempt(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        await stack.sim.control("/control/next-outcome", {"outcome": "hold"})
        booking = await stack.approved_booking()
        first = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        second = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert second.attempt_id == first.attempt_id and second.reused
        assert len(stack.pushes()) == 1


async def test_concurrent_pay_requests_push_once(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        await stack.sim.control("/control/next-outcome", {"outcome": "hold"})
        booking = await stack.approved_booking()
        views = await asyncio.gather(
            *[
                stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
                for _ in range(5)
            ]
        )
        assert len({v.attempt_id for v in views}) == 1
        assert len(stack.pushes()) == 1


async def test_paid_booking_cannot_be_paid_twice(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        with pytest.raises(PaymentRefused) as refused:
            await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert refused.value.code == "already_paid"


# Feature: mpesa-payment-integration, Property 27: Cancelled Payment Shows Retry Option
# Feature: mpesa-payment-integration, Property 28: Failed Payment Maintains Approved Status
# Feature: mpesa-payment-integration, Property 30: Failed Payment Logs Failure Reason
# Feature: mpesa-payment-integration, Property 63: Failed Payment Sends Notification With Reason
@pytest.mark.parametrize(
    ("phone", "status", "code"),
    [
        (CANCEL_PHONE, PaymentStatus.CANCELLED, "1032"),
        (INSUFFICIENT_PHONE, PaymentStatus.FAILED, "1"),
        (WRONG_PIN_PHONE, PaymentStatus.FAILED, "2001"),
        (UNREACHABLE_PHONE, PaymentStatus.TIMED_OUT, "1037"),
    ],
)
async def test_failed_payment_keeps_booking_approved_and_tells_the_client_why(
    database_url: str, phone: str, status: PaymentStatus, code: str
) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, phone)
        failed = await stack.wait_status(view.attempt_id, status)
        assert failed.result_code == code and failed.result_desc
        assert (await stack.booking(booking.id)).status == BookingStatus.APPROVED
        notices = await stack.outbox(template="payment_failed_client")
        assert len(notices) == 1 and notices[0].data["reason"]
        reasons = [e.details.get("reason", "") for e in await stack.audit_actions("payment", view.attempt_id)]
        assert any(code in r for r in reasons)


# Feature: mpesa-payment-integration, Property 29: Failed Payment Allows Retry
async def test_retry_after_a_cancelled_payment_pushes_again_and_can_succeed(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        first = await stack.services.payments.initiate_payment(booking.id, booking.client_id, CANCEL_PHONE)
        await stack.wait_status(first.attempt_id, PaymentStatus.CANCELLED)
        second = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert second.attempt_id != first.attempt_id
        await stack.wait_status(second.attempt_id, PaymentStatus.PAID)
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED
        assert len(stack.pushes()) == 2


# Feature: mpesa-payment-integration, Property 75: Duplicate Callback Detection
async def test_duplicate_callback_settles_once(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, DUPLICATE_PHONE)
        await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        await stack.sim.wait_for(lambda: len(stack.sim.callbacks()) >= 2)
        assert [c["status"] for c in stack.sim.callbacks()] == [200, 200]
        assert await stack.inbox_count() == 1
        assert len(await stack.outbox(template="payment_confirmed_client")) == 1


# Feature: mpesa-payment-integration, Property 55: API Unavailability Shows Error and Retry
# Feature: mpesa-payment-integration, Property 71: API Unavailability Queues and Retries
async def test_daraja_unavailable_queues_the_payment_and_retries_after_thirty_seconds(
    database_url: str,
) -> None:
    async with payment_stack(database_url) as stack:
        await stack.sim.control("/control/faults", {"push_503": True})
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert view.status == PaymentStatus.QUEUED
        assert len(await stack.outbox(template="payment_delayed_client")) == 1
        await stack.services.watchdog.tick()  # not yet due: nothing is pushed again
        assert len(stack.pushes()) == 1
        await stack.sim.control("/control/faults", {"push_503": False})
        stack.clock.advance(31)
        await stack.services.watchdog.tick()
        assert len(stack.pushes()) == 2
        await stack.wait_status(view.attempt_id, PaymentStatus.PAID)


# Feature: mpesa-payment-integration, Property 71: API Unavailability Queues and Retries
async def test_local_mode_may_shorten_the_retry_of_a_queued_payment(database_url: str) -> None:
    async with payment_stack(database_url, MPESA_UNAVAILABLE_RETRY_SECONDS="2") as stack:
        await stack.sim.control("/control/faults", {"push_503": True})
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert view.status == PaymentStatus.QUEUED
        [delayed] = await stack.outbox(template="payment_delayed_client")
        assert delayed.data["retry_seconds"] == 2  # the client is told the real delay
        await stack.sim.control("/control/faults", {"push_503": False})
        stack.clock.advance(1)
        await stack.services.watchdog.tick()
        assert len(stack.pushes()) == 1
        stack.clock.advance(1.5)
        await stack.services.watchdog.tick()
        assert len(stack.pushes()) == 2
        await stack.wait_status(view.attempt_id, PaymentStatus.PAID)


# Feature: mpesa-payment-integration, Property 14: STK Push Timeout Handling
# Feature: mpesa-payment-integration, Property 19: Unclear Status Triggers Direct Query
# Feature: mpesa-payment-integration, Property 74: Unclear Status Triggers Direct Query
async def test_a_missing_callback_is_settled_by_the_watchdogs_query_in_the_first_tick_after_the_deadline(
    database_url: str,
) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(
            booking.id, booking.client_id, NO_CALLBACK_PHONE
        )
        await asyncio.sleep(0.2)
        assert (await stack.attempt(view.attempt_id)).status == PaymentStatus.AWAITING_CUSTOMER
        stack.clock.advance(121)
        await stack.services.watchdog.tick()  # deadline passed, no longer waiting: STK Query → ResultCode 0
        assert len(stack.sim.requests("stk_query")) == 1
        assert (await stack.attempt(view.attempt_id)).status == PaymentStatus.PAID
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED
        steps = [
            (e.details["previous"], e.details["new"])
            for e in await stack.audit_actions("payment", view.attempt_id)
            if "previous" in e.details
        ]
        assert steps[-2:] == [
            (PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.UNCLEAR),
            (PaymentStatus.UNCLEAR, PaymentStatus.PAID),
        ]
        assert len(stack.pushes()) == 1  # found out by asking, never by pushing again


async def test_push_with_unknown_outcome_is_never_pushed_again(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        await stack.sim.control("/control/faults", {"slow_seconds": 8})
        booking = await stack.approved_booking()
        started = time.monotonic()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        # Bounded by the 2.5 s push timeout, far below the 8 s Daraja takes (margin for a busy CI box).
        assert time.monotonic() - started < 5.0
        assert view.status == PaymentStatus.UNCLEAR
        # The prompt did reach the phone: its callback settles the attempt by the URL secret.
        await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        for _ in range(3):
            stack.clock.advance(60)
            await stack.services.watchdog.tick()
        assert len(stack.pushes()) == 1


async def test_late_success_after_a_timeout_still_confirms_an_unpaid_booking(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        await stack.sim.control("/control/next-outcome", {"outcome": "hold"})
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        await stack.sim.control(
            "/control/resolve", {"CheckoutRequestID": view.checkout_request_id, "outcome": "unreachable"}
        )
        await stack.wait_status(view.attempt_id, PaymentStatus.TIMED_OUT)
        attempt = await stack.attempt(view.attempt_id)
        body = _success_body(attempt.checkout_request_id, attempt.amount_kes, "LATE000001")
        secret = stack.callback_secret_of(attempt.checkout_request_id)
        assert (await stack.post_callback(secret, body)).status_code == 200
        paid = await stack.wait_status(view.attempt_id, PaymentStatus.PAID)
        assert paid.mpesa_receipt == "LATE000001"
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED
        reasons = [e.details.get("reason", "") for e in await stack.audit_actions("payment", view.attempt_id)]
        assert any("late success" in r for r in reasons)


async def test_second_success_for_a_paid_booking_is_flagged_as_double_payment(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        await stack.sim.control("/control/next-outcome", {"outcome": "hold"})
        first = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        await stack.sim.control(
            "/control/resolve", {"CheckoutRequestID": first.checkout_request_id, "outcome": "cancelled"}
        )
        await stack.wait_status(first.attempt_id, PaymentStatus.CANCELLED)
        second = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        await stack.wait_status(second.attempt_id, PaymentStatus.PAID)
        # Safaricom now reports that the first prompt was paid too: money must not vanish.
        secret = stack.callback_secret_of(first.checkout_request_id)
        body = _success_body(first.checkout_request_id, booking.price_kes, "DOUBLE0001")
        assert (await stack.post_callback(secret, body)).status_code == 200
        flagged = await stack.wait_status(first.attempt_id, PaymentStatus.NEEDS_REVIEW)
        assert "double payment" in (flagged.review_reason or "")
        assert flagged.mpesa_receipt == "DOUBLE0001"
        assert (await stack.attempt(second.attempt_id)).status == PaymentStatus.PAID


def _success_body(checkout: str, amount: int, receipt: str) -> dict:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "1-2-3",
                "CheckoutRequestID": checkout,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": amount},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20261126101500},
                        {"Name": "PhoneNumber", "Value": 254708374149},
                    ]
                },
            }
        }
    }


async def test_payment_fails_cleanly_when_daraja_stays_unavailable(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        await stack.sim.control("/control/faults", {"push_503": True})
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        for _ in range(3):
            stack.clock.advance(31)
            await stack.services.watchdog.tick()
        failed = await stack.attempt(view.attempt_id)
        assert failed.status == PaymentStatus.FAILED and "unavailable" in (failed.result_desc or "")
        assert len(stack.pushes()) == 4
        assert len(await stack.outbox(template="payment_failed_client")) == 1
        assert (await stack.booking(booking.id)).status == BookingStatus.APPROVED
        # Nothing reached the phone, so the client may start again at once.
        await stack.sim.control("/control/faults", {"push_503": False})
        again = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        await stack.wait_status(again.attempt_id, PaymentStatus.PAID)


async def test_daraja_rejecting_the_request_fails_the_attempt_and_tells_the_client(database_url: str) -> None:
    async with payment_stack(database_url, MPESA_PASSKEY="wrong-passkey") as stack:
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, SUCCESS_PHONE)
        assert view.status == PaymentStatus.FAILED
        assert (await stack.attempt(view.attempt_id)).result_code == "500.001.1001"
        notices = await stack.outbox(template="payment_failed_client")
        assert len(notices) == 1 and "did not accept" in notices[0].data["reason"]
