"""A "Retry payment" button disappears once the booking is paid after all.

A CANCELLED attempt that later receives a success (a late success) confirms the booking; the
client must not be left with a Retry button that no longer applies — neither on the progress
message edited to the failure nor on the outbox's "payment not completed" notice. Driven over
real HTTP against the Telegram Bot API stand-in (and, end to end, the Daraja simulator).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot import progress_store
from bot.progress import mode_marker
from bot.sender import TelegramSender
from core.dialog.messages import label
from core.dialog.types import Inbound, Reply
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services.notifications import payment_failed
from core.services.notifications.notify import Dispatcher
from core.services.payments.initiate import PaymentService, PaymentView
from tests.factories import make_booking, make_client
from tests.integration.test_payments_callbacks import _body
from tests.integration.test_telegram_progress import AMINA, pay_engine
from tests.support.payments import payment_stack
from tests.support.telegram import (
    FakeEngine,
    FakePayments,
    RunningTelegram,
    payment_view,
    running_bot,
    running_telegram,
)

CANCEL_PHONE = "254712345672"  # the Daraja simulator: the customer cancels (1032)
CANCELLED = {
    "result_code": "1032", "client_message": "Payment cancelled. You can retry whenever you are ready.",
}
RETRY = [[
    {"text": label("retry"), "callback_data": "v1:pay:42"},
    {"text": label("change_phone"), "callback_data": "v1:chphone:42"},
]]


@pytest.fixture
async def telegram() -> AsyncIterator[RunningTelegram]:
    async with running_telegram() as running:
        running.state.add_user(AMINA, "Amina", phone_number="254708374149")
        yield running


async def test_a_late_success_turns_the_failed_progress_message_into_the_receipt_without_retry(
    runtime: Runtime, telegram
):
    payments = FakePayments(runtime)
    payments.add(payment_view(1, booking_id=42))
    async with running_bot(runtime, pay_engine(1), telegram, payments) as handle:
        telegram.state.send_text(AMINA, "pay")
        message = await telegram.state.wait_bot_message(AMINA, lambda m: "Check your phone" in m.text)
        payments.settle(1, PaymentStatus.CANCELLED, **CANCELLED)
        await telegram.state.wait_for(lambda: message.inline_keyboard == RETRY, within=2)
        offers = handle.progress.retry_offers
        await telegram.state.wait_for(lambda: [o.attempt_id for o in offers.offers] == [1], within=2)

        payments.settle(1, PaymentStatus.PAID, receipt="LATE000001")  # Safaricom's late success
        await telegram.state.wait_for(lambda: "Payment received" in message.text, within=2)
    assert message.inline_keyboard == []
    assert message.text == (
        f"{mode_marker()}\n✅ Payment received: KES 2,500.\nM-Pesa receipt: LATE000001\n"
        "Your session is confirmed."
    )
    assert handle.progress.retry_offers.offers == []


async def test_a_late_success_settled_while_the_offer_is_being_stored_still_takes_the_button_off(
    runtime: Runtime, telegram, monkeypatch: pytest.MonkeyPatch
):
    """The failure edit is out, the offer not yet in the database, and the late success settles:
    the check its wake-up starts finds no offer, and no wake-up follows. Storing the offer looks
    once more, so the client is not left with "Retry payment" on a paid booking."""
    real_offer, real_offers = progress_store.offer, progress_store.offers
    store_it, looked_after_paid = asyncio.Event(), asyncio.Event()
    paid = False

    async def offer_held_back(*args: Any, **kwargs: Any) -> None:
        await store_it.wait()
        await real_offer(*args, **kwargs)

    async def offers(*args: Any, **kwargs: Any) -> list[progress_store.ProgressRow]:
        standing = await real_offers(*args, **kwargs)
        if paid:
            looked_after_paid.set()
        return standing

    monkeypatch.setattr(progress_store, "offer", offer_held_back)
    monkeypatch.setattr(progress_store, "offers", offers)
    payments = FakePayments(runtime)
    payments.add(payment_view(1, booking_id=42))
    async with running_bot(runtime, pay_engine(1), telegram, payments) as handle:
        telegram.state.send_text(AMINA, "pay")
        message = await telegram.state.wait_bot_message(AMINA, lambda m: "Check your phone" in m.text)
        payments.settle(1, PaymentStatus.CANCELLED, **CANCELLED)
        await telegram.state.wait_for(lambda: message.inline_keyboard == RETRY, within=2)

        paid = True
        payments.settle(1, PaymentStatus.PAID, receipt="LATE000002")  # before the offer is stored
        await asyncio.wait_for(looked_after_paid.wait(), 2)  # that check saw no offer
        store_it.set()
        await telegram.state.wait_for(lambda: "Payment received" in message.text, within=2)
    assert message.inline_keyboard == []
    assert "LATE000002" in message.text
    assert handle.progress.retry_offers.offers == []


async def test_when_another_attempt_pays_the_booking_the_old_retry_button_is_removed(
    runtime: Runtime, telegram
):
    payments = FakePayments(runtime)
    payments.add(payment_view(1, booking_id=42))
    payments.add(payment_view(2, booking_id=42))
    attempts = iter([1, 2])

    def pay(inbound: Inbound) -> list[Reply]:
        attempt = next(attempts)
        return [Reply("[TEST MODE]\nCheck your phone.", tag=f"payment_progress:{attempt}")]

    async with running_bot(runtime, FakeEngine(pay), telegram, payments) as handle:
        telegram.state.send_text(AMINA, "pay")
        first = await telegram.state.wait_bot_message(AMINA, lambda m: "Check your phone" in m.text)
        payments.settle(1, PaymentStatus.CANCELLED, **CANCELLED)
        await telegram.state.wait_for(lambda: first.inline_keyboard == RETRY, within=2)
        await telegram.state.wait_for(lambda: bool(handle.progress.retry_offers.offers), within=2)
        failure_text = first.text

        telegram.state.send_text(AMINA, "retry")  # the client retries: attempt 2
        second = await telegram.state.wait_bot_message(AMINA, after=first.message_id)
        payments.settle(2, PaymentStatus.PAID, receipt="PAID000002")
        await telegram.state.wait_for(lambda: "Payment received" in second.text, within=2)
        await telegram.state.wait_for(lambda: first.inline_keyboard == [], within=2)
    assert first.text == failure_text  # what happened to attempt 1 stays readable


class GatedPayments:
    """The real PaymentService, but the chat's status reads wait until the test opens the gate."""

    def __init__(self, inner: PaymentService) -> None:
        self.inner, self.gate = inner, asyncio.Event()

    async def status(self, attempt_id: int) -> PaymentView:
        await self.gate.wait()
        return await self.inner.status(attempt_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_end_to_end_a_late_success_removes_the_buttons_from_the_progress_message_and_the_notice(
    database_url: str, telegram
):
    """PaymentService, the Daraja simulator, the callback route, settlement, the outbox, the bot.

    The chat is slow this time: the outbox's failure notice goes out first, so the progress
    message only points to it (one message with buttons), and a late success clears both.
    """
    async with payment_stack(database_url) as stack:
        async with stack.runtime.uow() as uow:
            client = await make_client(uow.session, telegram_user_id=AMINA)
            booking = await make_booking(uow.session, client=client)
            await uow.commit()
        started: list[int] = []

        async def pay(inbound: Inbound) -> list[Reply]:
            view = await stack.services.payments.initiate_payment(booking.id, client.id, CANCEL_PHONE)
            started.append(view.attempt_id)
            return [Reply(f"{mode_marker()}\nCheck your phone.", tag=f"payment_progress:{view.attempt_id}")]

        gated = GatedPayments(stack.services.payments)
        async with running_bot(stack.runtime, FakeEngine(pay), telegram, gated) as handle:  # type: ignore[arg-type]
            telegram.state.send_text(AMINA, "pay")
            progress = await telegram.state.wait_bot_message(AMINA, lambda m: "Check your phone" in m.text)
            attempt = await stack.wait_status(started[0], PaymentStatus.CANCELLED)
            # The outbox delivers the "payment not completed" notice once its hold has passed.
            stack.clock.advance(payment_failed.TELEGRAM_HOLD.total_seconds() + 1)
            outbox = Dispatcher(stack.runtime, {"telegram": TelegramSender(handle.application.bot)})
            assert await outbox.dispatch_once() >= 1
            notice = await telegram.state.wait_bot_message(AMINA, after=progress.message_id)
            assert notice.button_labels() == [label("retry"), label("change_phone")]

            gated.gate.set()  # now the chat sees the failure: the notice is out, so no second offer
            await telegram.state.wait_for(lambda: "message below" in progress.text, within=3)
            assert progress.inline_keyboard == []

            # Minutes later Safaricom reports that the customer paid after all.
            late = _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt="LATE123456")
            response = await stack.post_callback(stack.callback_secret_of(attempt.checkout_request_id), late)
            assert response.status_code == 200
            await stack.wait_status(attempt.id, PaymentStatus.PAID)
            await telegram.state.wait_for(lambda: "LATE123456" in progress.text, within=3)
            await telegram.state.wait_for(lambda: notice.inline_keyboard == [], within=3)
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED
