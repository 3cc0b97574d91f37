"""Paying from another number over SMS, through the real webhook (DESIGN §4, Chat conventions).

After an earlier attempt, PAY offers the same number or another one as numbered choices; a
number texted while idle pays the client's one payable booking, confirmed when it is not the
number used last. Replies are read from the outbox as the SMS that would be sent.
"""

from __future__ import annotations

from sqlalchemy import func, select

from core.db.models import PaymentAttempt
from core.dialog.engine import DialogEngine
from core.domain.states import BookingStatus, PaymentStatus
from core.templates.gsm import contains_forbidden, is_gsm7
from tests.factories import make_booking, make_client
from tests.integration.test_sms_conversation import Phone, sms_webhook
from tests.support.payments import PaymentStack, payment_stack

CLIENT = "254711082301"
CANCEL_PHONE = "0712345672"  # the Daraja simulator: the customer cancels (1032)
PAYING_MSISDN = "254708374149"  # succeeds


async def _latest_attempt(stack: PaymentStack) -> int:
    async with stack.runtime.uow() as uow:
        return int(await uow.session.scalar(select(func.max(PaymentAttempt.id))) or 0)


async def _approved_sms_client(stack: PaymentStack) -> int:
    async with stack.runtime.uow() as uow:
        client = await make_client(uow.session, phone=CLIENT)
        booking = await make_booking(uow.session, client=client)
        await uow.commit()
        return booking.id


def _one_discreet_segment(sms: str) -> None:
    assert is_gsm7(sms) and len(sms) <= 160 and not contains_forbidden(sms), sms


async def _fail_once(stack: PaymentStack, phone: Phone) -> None:
    await phone.text("PAY")
    assert "Which M-Pesa number" in phone.last
    await phone.text(CANCEL_PHONE)
    assert "Check your phone" in phone.last
    await stack.wait_status(await _latest_attempt(stack), PaymentStatus.CANCELLED)


# Feature: mpesa-payment-integration, Property 29: Failed Payment Allows Retry
# Feature: mpesa-payment-integration, Property 78: Sandbox Mode Indicates Test Mode
async def test_pay_after_a_failure_offers_the_same_number_or_another_one(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking_id = await _approved_sms_client(stack)
        engine = DialogEngine(stack.runtime, stack.services.payments)
        async with sms_webhook(stack.runtime, engine) as base_url:
            phone = Phone(base_url, stack.runtime, CLIENT)
            await _fail_once(stack, phone)

            await phone.text("pay")
            assert "from which number?" in phone.last and phone.last.startswith("[TEST MODE]")
            assert "1 Same number (0712 345 672)" in phone.last
            assert "2 Use another number" in phone.last and phone.last.endswith("Reply 1-2")
            _one_discreet_segment(phone.last)

            await phone.text("1")  # the same number: pushed again at once
            assert "Sending the M-Pesa prompt again to 0712 345 672" in phone.last
            assert [p["body"]["PhoneNumber"] for p in stack.pushes()] == ["254712345672"] * 2
            await stack.wait_status(await _latest_attempt(stack), PaymentStatus.CANCELLED)

            await phone.text("PAY")
            await phone.text("2")  # another number: the phone step
            assert "Which M-Pesa number" in phone.last
            await phone.text("0708 374 149")
            assert "Check your phone" in phone.last
            await stack.wait_status(await _latest_attempt(stack), PaymentStatus.PAID)
            assert stack.pushes()[-1]["body"]["PhoneNumber"] == PAYING_MSISDN
            assert (await stack.booking(booking_id)).status == BookingStatus.CONFIRMED


async def test_a_number_texted_while_idle_is_confirmed_then_pays_the_one_booking(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking_id = await _approved_sms_client(stack)
        engine = DialogEngine(stack.runtime, stack.services.payments)
        async with sms_webhook(stack.runtime, engine) as base_url:
            phone = Phone(base_url, stack.runtime, CLIENT)
            await _fail_once(stack, phone)

            await phone.text("0708374149")
            assert "from 0708 374 149?" in phone.last and "0712 345 672" in phone.last
            assert "1 Yes, pay from 0708 374 149" in phone.last and "2 No, do not pay" in phone.last
            _one_discreet_segment(phone.last)
            assert len(stack.pushes()) == 1  # nothing sent before the client says yes

            await phone.text("2")
            assert "no payment prompt was sent" in phone.last and len(stack.pushes()) == 1

            await phone.text("+254 708 374 149")
            await phone.text("1")
            assert "Check your phone" in phone.last
            await stack.wait_status(await _latest_attempt(stack), PaymentStatus.PAID)
            assert stack.pushes()[-1]["body"]["PhoneNumber"] == PAYING_MSISDN
            assert (await stack.booking(booking_id)).status == BookingStatus.CONFIRMED
