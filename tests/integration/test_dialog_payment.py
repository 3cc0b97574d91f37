"""Paying through the conversation: our app and the Daraja simulator over real HTTP on 127.0.0.1.

The simulator picks the outcome from the phone's last digit: 0/8/9 success, 2 cancelled,
4 unreachable (timeout); ``/control/next-outcome`` overrides it for one push.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from core.dialog import messages
from core.dialog.types import Reply
from core.domain.phone import ACCEPTED_FORMATS
from core.domain.states import BookingStatus, PaymentStatus
from core.mpesa.client import StkPushAccepted
from core.runtime import build_runtime
from core.services.payments.initiate import PaymentService
from tests.conftest import make_settings
from tests.integration.test_dialog_support import Chat, World, book, build_world
from tests.integration.test_payments_callbacks import _body
from tests.support.payments import PaymentStack, payment_stack

SUCCESS_PHONE = "0708374149"
TEST_MSISDN = "254708374149"
CANCEL_PHONE = "0712345672"
TIMEOUT_PHONE = "0712345674"
PRODUCTION_SECRET_KEY = "7Ix8h8CgKK9RdXmKsdJdeS1ok5emrCiBAllzF-h5kck"  # secrets.token_urlsafe(32)


@dataclass
class Paying:
    stack: PaymentStack
    world: World
    client: Chat
    booking_id: int


@pytest.fixture
async def paying(database_url: str) -> AsyncIterator[Paying]:
    """A client with an APPROVED booking, talking to an engine wired to the payment stack."""
    async with payment_stack(database_url) as stack:
        world = await build_world(stack.runtime, stack.services.payments)
        client = world.chat()
        await book(client, world)
        [booking] = await world.bookings()
        await world.therapist_chat().choose(f"v1:approve:{booking.id}")
        yield Paying(stack, world, client, booking.id)


def _attempt_id(replies: list[Reply]) -> int:
    tags = [r.tag for r in replies if r.tag and r.tag.startswith("payment_progress:")]
    assert tags, f"no progress message in {[r.text for r in replies]}"
    return int(tags[-1].split(":")[1])


async def _booking_status(p: Paying) -> str:
    return (await p.stack.booking(p.booking_id)).status


# Feature: mpesa-payment-integration, Property 6: Approved Sessions Show Payment Option
# Feature: mpesa-payment-integration, Property 11: STK Push Shows Check Phone Message
# Feature: mpesa-payment-integration, Property 78: Sandbox Mode Indicates Test Mode
# Feature: mpesa-payment-integration, Property 79: Sandbox Mode Uses Test Phone Numbers
async def test_the_client_pays_with_m_pesa_and_the_booking_is_confirmed(paying: Paying) -> None:
    chat = paying.client
    await chat.send("/my")
    await chat.press("Pay with M-Pesa")
    [ask] = chat.last
    assert ask.ask_phone and TEST_MSISDN in ask.phone_suggestions
    assert ask.text.startswith("[TEST MODE]") and "KES 2,500" in ask.text
    await chat.send(SUCCESS_PHONE)
    [progress] = chat.last
    assert progress.text.startswith("[TEST MODE] Check your phone")
    assert progress.remove_keyboard  # the phone keyboard is no longer needed
    assert "0708 374 149" in progress.text and "PIN" in progress.text
    attempt_id = _attempt_id(chat.last)
    assert progress.tag == f"payment_progress:{attempt_id}"
    paid = await paying.stack.wait_status(attempt_id, PaymentStatus.PAID)
    assert paid.amount_kes == 2500 and paid.phone == TEST_MSISDN
    assert await _booking_status(paying) == BookingStatus.CONFIRMED
    await chat.send("/my")
    assert f"Paid and confirmed (M-Pesa {paid.mpesa_receipt})" in chat.text
    assert "Pay with M-Pesa" not in chat.labels


async def test_the_test_number_is_a_one_tap_choice_next_to_the_clients_own_number(paying: Paying) -> None:
    chat = paying.client
    await chat.share_contact("0722 000 111")
    assert chat.text == messages.say("phone_noted")
    await chat.choose(f"v1:pay:{paying.booking_id}")
    assert chat.last[0].phone_suggestions == ("254722000111", TEST_MSISDN)
    await chat.send("2")  # the second suggestion, picked by number
    attempt_id = _attempt_id(chat.last)
    assert (await paying.stack.attempt(attempt_id)).phone == TEST_MSISDN


# Feature: mpesa-payment-integration, Property 7: Phone Number Validation
# Feature: mpesa-payment-integration, Property 9: Invalid Phone Number Shows Error
async def test_an_invalid_phone_is_refused_with_the_accepted_formats_and_nothing_is_pushed(
    paying: Paying,
) -> None:
    chat = paying.client
    await chat.choose(f"v1:pay:{paying.booking_id}")
    for bad in ("12345", "0812345678", "+1 202 555 0100", "call me"):
        await chat.send(bad)
        assert ACCEPTED_FORMATS in chat.text and chat.text.startswith("[TEST MODE]")
        assert chat.last[-1].ask_phone
    assert paying.stack.pushes() == []
    await chat.send("+254 708-374-149")  # spaces and dashes are fine
    _attempt_id(chat.last)
    assert paying.stack.pushes()[-1]["body"]["PhoneNumber"] == TEST_MSISDN


async def test_a_number_that_is_probably_not_safaricom_gets_a_warning_but_is_tried(paying: Paying) -> None:
    chat = paying.client
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send("0770 123 450")
    assert "may not be a Safaricom line" in chat.last[0].text
    assert "Check your phone" in chat.last[-1].text
    assert paying.stack.pushes()[-1]["body"]["PhoneNumber"] == "254770123450"


# Feature: mpesa-payment-integration, Property 5: Pending Sessions Block Payment
async def test_a_booking_waiting_for_approval_cannot_be_paid(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        world = await build_world(stack.runtime, stack.services.payments)
        chat = world.chat()
        await book(chat, world)
        [booking] = await world.bookings()
        await chat.choose(f"v1:pay:{booking.id}")
        assert chat.text == "[TEST MODE] " + messages.say("pay_not_approved", reference=booking.reference)
        await chat.send("/pay")
        assert messages.say("nothing_to_pay") in chat.text
        assert stack.pushes() == []


# Feature: mpesa-payment-integration, Property 27: Cancelled Payment Shows Retry Option
# Feature: mpesa-payment-integration, Property 29: Failed Payment Allows Retry
async def test_a_cancelled_payment_offers_retry_which_pushes_again_to_the_same_number(paying: Paying) -> None:
    chat = paying.client
    await paying.stack.sim.control("/control/next-outcome", {"outcome": "cancelled"})
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send(SUCCESS_PHONE)
    first = _attempt_id(chat.last)
    await paying.stack.wait_status(first, PaymentStatus.CANCELLED)
    assert await _booking_status(paying) == BookingStatus.APPROVED
    [failed] = await paying.world.outbox(template="payment_failed_client")
    assert failed.data["booking_id"] == paying.booking_id

    await chat.send("/my")
    assert "The last payment attempt was cancelled." in chat.text
    await chat.press("Retry payment")
    assert "Sending the M-Pesa prompt again to 0708 374 149" in chat.text  # no phone question
    assert "Use another number" in chat.labels
    second = _attempt_id(chat.last)
    assert second != first and len(paying.stack.pushes()) == 2
    await paying.stack.wait_status(second, PaymentStatus.PAID)
    assert await _booking_status(paying) == BookingStatus.CONFIRMED


async def test_the_retry_button_of_the_failure_message_works_in_its_template_form(paying: Paying) -> None:
    chat = paying.client
    await paying.stack.sim.control("/control/next-outcome", {"outcome": "cancelled"})
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send(SUCCESS_PHONE)
    await paying.stack.wait_status(_attempt_id(chat.last), PaymentStatus.CANCELLED)
    await chat.choose(f"pay:{paying.booking_id}")  # the callback data of payment_failed_client's button
    await paying.stack.wait_status(_attempt_id(chat.last), PaymentStatus.PAID)


async def test_after_a_failure_the_client_can_pay_from_another_number(paying: Paying) -> None:
    chat = paying.client
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send(CANCEL_PHONE)
    await paying.stack.wait_status(_attempt_id(chat.last), PaymentStatus.CANCELLED)
    await chat.choose(f"v1:chphone:{paying.booking_id}")
    assert chat.last[0].ask_phone and "254712345672" in chat.last[0].phone_suggestions
    await chat.send(SUCCESS_PHONE)
    await paying.stack.wait_status(_attempt_id(chat.last), PaymentStatus.PAID)
    assert await _booking_status(paying) == BookingStatus.CONFIRMED


async def test_changing_the_number_while_a_prompt_is_open_explains_why_not_yet(paying: Paying) -> None:
    chat = paying.client
    await paying.stack.sim.control("/control/next-outcome", {"outcome": "hold"})
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send(SUCCESS_PHONE)
    await chat.choose(f"v1:chphone:{paying.booking_id}")
    assert "still open" in chat.text and chat.labels == ["Retry payment"]
    await chat.choose(f"v1:pay:{paying.booking_id}")
    assert "already waiting" in chat.text
    assert len(paying.stack.pushes()) == 1


# Feature: mpesa-payment-integration, Property 31: Timeout Shows Retry Instructions
async def test_a_timed_out_payment_tells_the_client_to_check_messages_then_retry(paying: Paying) -> None:
    chat = paying.client
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send(TIMEOUT_PHONE)
    await paying.stack.wait_status(_attempt_id(chat.last), PaymentStatus.TIMED_OUT)
    await chat.send("/my")
    assert "timed out" in chat.text and "M-Pesa confirmation SMS" in chat.text
    assert "Retry payment" in chat.labels


# Feature: mpesa-payment-integration, Property 55: API Unavailability Shows Error and Retry
async def test_when_m_pesa_is_unavailable_the_client_is_told_we_retry_in_thirty_seconds(
    paying: Paying,
) -> None:
    chat = paying.client
    await paying.stack.sim.control("/control/faults", {"push_503": True})
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send(SUCCESS_PHONE)
    attempt = await paying.stack.attempt(_attempt_id(chat.last))
    assert attempt.status == PaymentStatus.QUEUED
    assert (
        chat.text.startswith("[TEST MODE]")
        and "30 seconds" in chat.text
        and "Nothing was charged" in chat.text
    )


async def test_paying_twice_for_a_paid_booking_is_refused_politely(paying: Paying) -> None:
    chat = paying.client
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send(SUCCESS_PHONE)
    await paying.stack.wait_status(_attempt_id(chat.last), PaymentStatus.PAID)
    await chat.choose(f"v1:pay:{paying.booking_id}")
    assert "already paid" in chat.text
    assert len(paying.stack.pushes()) == 1


class AcceptingGateway:
    """Daraja accepting every push (production-mode test without network)."""

    async def stk_push(self, **_: object) -> StkPushAccepted:
        return StkPushAccepted("m-1", "ws_CO_prod_1", "0", "Success. Request accepted for processing", "ok")

    async def stk_query(self, checkout_request_id: str) -> None:
        raise AssertionError("no query expected")


async def test_in_production_there_is_no_test_mode_marker_and_no_test_number(database_url: str) -> None:
    settings = make_settings(
        database_url,
        MPESA_ENVIRONMENT="production",
        MPESA_CONSUMER_KEY="k",
        MPESA_CONSUMER_SECRET="s",
        MPESA_BUSINESS_SHORT_CODE="600000",
        MPESA_PASSKEY="p",
        SECRET_KEY=PRODUCTION_SECRET_KEY,
        PUBLIC_BASE_URL="https://pay.example.org",
    )
    runtime = build_runtime(settings)
    try:
        world = await build_world(runtime, PaymentService(runtime, AcceptingGateway(), PRODUCTION_SECRET_KEY))
        chat = world.chat()
        await book(chat, world)
        [booking] = await world.bookings()
        await world.therapist_chat().choose(f"v1:approve:{booking.id}")
        await chat.choose(f"v1:pay:{booking.id}")
        assert chat.last[0].ask_phone and TEST_MSISDN not in chat.last[0].phone_suggestions
        await chat.send("0712 345 678")
        assert chat.text.startswith("Check your phone") and "TEST MODE" not in chat.text
    finally:
        await runtime.close()


async def test_an_old_retry_button_pressed_after_a_late_success_says_already_paid_and_pushes_nothing(
    paying: Paying,
) -> None:
    chat = paying.client
    await paying.stack.sim.control("/control/next-outcome", {"outcome": "cancelled"})
    await chat.choose(f"v1:pay:{paying.booking_id}")
    await chat.send(SUCCESS_PHONE)
    attempt = await paying.stack.wait_status(_attempt_id(chat.last), PaymentStatus.CANCELLED)
    late = _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt="LATE765432")
    secret = paying.stack.callback_secret_of(attempt.checkout_request_id)
    assert (await paying.stack.post_callback(secret, late)).status_code == 200
    await paying.stack.wait_status(attempt.id, PaymentStatus.PAID)
    [booking] = await paying.world.bookings()
    pushes = len(paying.stack.pushes())
    for button in (f"v1:pay:{paying.booking_id}", f"pay:{paying.booking_id}"):  # progress / notice forms
        await chat.choose(button)
        assert messages.say("pay_already_paid", reference=booking.reference) in chat.text
        assert "Retry payment" not in chat.labels
    assert len(paying.stack.pushes()) == pushes
