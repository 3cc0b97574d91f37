"""Chat that feels finished (DESIGN §4, Chat conventions), on Telegram end to end.

One failure message carrying "Retry payment" and "Use another number"; another number typed,
shared or chosen pays the booking; a used inline keyboard leaves its message; a stale button
still gets the safe answer. Real engine, PaymentService, settlement, outbox dispatcher and PTB,
over HTTP to the Bot API stand-in and the Daraja simulator (outcome by the phone's last digit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import select

from bot.sender import TelegramSender
from core.db.models import Booking, Outbox
from core.dialog import messages
from core.dialog.engine import DialogEngine
from core.dialog.messages import label
from core.domain.states import BookingStatus, PaymentStatus
from core.services.notifications import payment_failed
from simulators.telegram_api import SimMessage, TelegramApiSimulator
from tests.e2e.test_telegram_booking import dispatching
from tests.factories import make_booking, make_client, make_therapist
from tests.support.payments import PaymentStack, payment_stack
from tests.support.telegram import running_bot, running_telegram

CLIENT = 9201
THERAPIST = 9202
CANCEL_PHONE = "0712345672"  # the Daraja simulator: the customer cancels (1032)
PAYING_PHONE = "0708 374 149"  # succeeds
PAYING_MSISDN = "254708374149"
BOTH = [label("retry"), label("change_phone")]


@dataclass
class Chat:
    stack: PaymentStack
    sim: TelegramApiSimulator
    booking: Booking

    def find(self, text: str, *, ever: bool = False, user: int = CLIENT) -> SimMessage | None:
        """The newest bot message showing ``text`` (``ever``: now or in an earlier version)."""
        for m in reversed(self.sim.bot_messages(user)):
            shown = [m.text or ""] + ([str(v.get("text") or "") for v in m.history] if ever else [])
            if any(text in t for t in shown):
                return m
        return None

    async def wait(self, text: str, within: float = 5.0, *, after: int = 0) -> SimMessage:
        """The newest bot message showing ``text``, once there is one newer than ``after``."""

        def found() -> SimMessage | None:
            message = self.find(text)
            return message if message is not None and message.message_id > after else None

        return await self.sim.wait_for(found, within)

    def with_retry(self) -> list[SimMessage]:
        """Every bot message that offers "Retry payment" now."""
        return [m for m in self.sim.bot_messages(CLIENT) if label("retry") in m.button_labels()]

    async def fail_once(self) -> SimMessage:
        """Pay from a number whose prompt the customer cancels; the failure message."""
        self.sim.send_command(CLIENT, "pay")
        await self.wait("Which M-Pesa number")
        self.sim.send_text(CLIENT, CANCEL_PHONE)
        progress = await self.sim.wait_for(lambda: self.find("Check your phone", ever=True), within=5)
        await self.sim.wait_for(lambda: progress.button_labels() == BOTH, within=5)
        return progress


@asynccontextmanager
async def chat(database_url: str, *, booking_status: str = BookingStatus.APPROVED) -> AsyncIterator[Chat]:
    async with payment_stack(database_url) as stack, running_telegram() as telegram:
        async with stack.runtime.uow() as uow:
            therapist = await make_therapist(uow.session, telegram_user_id=THERAPIST, telegram_link_code=None)
            client = await make_client(uow.session, telegram_user_id=CLIENT, phone="254722000111")
            booking = await make_booking(
                uow.session, client=client, therapist=therapist, status=booking_status
            )
            await uow.commit()
        telegram.state.add_user(CLIENT, "Wanjiru", phone_number="254722000111")
        telegram.state.add_user(THERAPIST, "Amani", started=True)
        payments = stack.services.payments
        engine = DialogEngine(stack.runtime, payments)
        async with (
            running_bot(stack.runtime, engine, telegram, payments) as handle,
            dispatching(stack.runtime, TelegramSender(handle.bot)),
        ):
            yield Chat(stack, telegram.state, booking)


async def _notices(stack: PaymentStack) -> list[Outbox]:
    async with stack.runtime.uow() as uow:
        query = select(Outbox).where(Outbox.template == payment_failed.TEMPLATE)
        return list((await uow.session.scalars(query)).all())


# Feature: mpesa-payment-integration, Property 27: Cancelled Payment Shows Retry Option
async def test_a_cancelled_payment_gives_exactly_one_failure_message_with_both_choices(database_url: str):
    async with chat(database_url) as c:
        progress = await c.fail_once()
        assert "cancelled" in progress.text.lower() and progress.text.startswith("[TEST MODE]")
        # Long after the notice's hold the outbox has still sent nothing more: the chat took it over.
        c.stack.clock.advance(payment_failed.TELEGRAM_HOLD.total_seconds() + 5)
        c.stack.runtime.wake("outbox")
        await asyncio.sleep(0.8)
        assert c.with_retry() == [progress]
        assert not [m for m in c.sim.bot_messages(CLIENT) if "Payment not completed" in (m.text or "")]
        [notice] = await _notices(c.stack)
        assert notice.channel == "telegram" and notice.status == "CANCELLED"


# Feature: mpesa-payment-integration, Property 29: Failed Payment Allows Retry
async def test_use_another_number_asks_for_a_number_and_pays_from_it(database_url: str):
    async with chat(database_url) as c:
        failure = await c.fail_once()
        c.sim.press(CLIENT, failure.message_id, label=label("change_phone"))
        await c.wait("Which M-Pesa number", after=failure.message_id)
        assert failure.inline_keyboard == []  # the used keyboard left the failure message
        assert c.sim.keyboard_labels(CLIENT)[0] == label("share_phone")
        c.sim.send_text(CLIENT, PAYING_PHONE)  # typed, not one of the suggestions
        progress = await c.sim.wait_for(lambda: c.find("was sent to 0708 374 149", ever=True), within=5)
        await c.sim.wait_for(lambda: "Payment received" in progress.text, within=5)
        assert c.stack.pushes()[-1]["body"]["PhoneNumber"] == PAYING_MSISDN
        assert (await c.stack.booking(c.booking.id)).status == BookingStatus.CONFIRMED
        assert c.with_retry() == []  # nothing left to press


async def test_a_number_typed_while_idle_is_confirmed_when_it_differs_then_pays(database_url: str):
    async with chat(database_url) as c:
        await c.fail_once()
        c.sim.send_text(CLIENT, PAYING_PHONE)
        question = await c.wait("from 0708 374 149?")
        assert question.text.startswith("[TEST MODE]") and "0712 345 672" in question.text
        assert question.button_labels() == [
            messages.say("pay_from_number", phone="0708 374 149"), label("dont_pay"),
        ]
        assert len(c.stack.pushes()) == 1  # nothing pushed before the client says yes
        c.sim.press(CLIENT, question.message_id, label=question.button_labels()[0])
        await c.sim.wait_for(lambda: question.inline_keyboard == [], within=5)
        assert len(c.stack.pushes()) == 2
        assert c.stack.pushes()[-1]["body"]["PhoneNumber"] == PAYING_MSISDN
        await c.wait("Payment received")
        assert (await c.stack.booking(c.booking.id)).status == BookingStatus.CONFIRMED


async def test_a_shared_contact_while_idle_pays_the_one_booking_at_once_without_an_earlier_number(
    database_url: str,
):
    async with chat(database_url) as c:
        c.sim.share_contact(CLIENT, PAYING_MSISDN)  # their own contact, Safaricom's test number
        await c.wait("Payment received")
        assert [p["body"]["PhoneNumber"] for p in c.stack.pushes()] == [PAYING_MSISDN]


async def test_pressed_keyboards_leave_their_messages_and_a_stale_press_is_answered_safely(database_url: str):
    async with chat(database_url, booking_status=BookingStatus.PENDING_APPROVAL) as c:
        c.sim.send_command(CLIENT, "start")
        menu = await c.wait("What would you like to do?")
        c.sim.press(CLIENT, menu.message_id, label=label("my"))
        sessions = await c.sim.wait_for(lambda: c.find(c.booking.reference), within=5)
        assert menu.inline_keyboard == []

        # The practitioner approves from the dashboard's request card: the card becomes the answer.
        c.sim.send_command(THERAPIST, "start")
        card = await c.sim.wait_for(
            lambda: next(
                (m for m in c.sim.bot_messages(THERAPIST) if label("approve") in m.button_labels()), None
            )
        )
        c.sim.press(THERAPIST, card.message_id, label=label("approve"))
        await c.sim.wait_for(lambda: card.inline_keyboard == [], within=5)
        assert (await c.stack.booking(c.booking.id)).status == BookingStatus.APPROVED

        # The client's old list still offered "Cancel booking"; pressing it answers and clears it.
        assert label("cancel_booking") in sessions.button_labels()
        c.sim.press(CLIENT, sessions.message_id, label=label("cancel_booking"))
        question = await c.wait(f"Cancel {c.booking.reference}")
        assert question.message_id == sessions.message_id  # the list was replaced by the question
        assert question.button_labels() == [label("yes_cancel"), label("keep")]
        c.sim.press(CLIENT, question.message_id, label=label("keep"))
        kept = await c.wait(messages.say("cancel_kept"))
        assert question.inline_keyboard == []

        # A stale press on a message whose keyboard is gone still gets the safe answer.
        stale = c.sim.press(CLIENT, question.message_id, data="v1:cy:zzzz:1", forge=True)
        await c.wait(messages.say("stale_option"), after=kept.message_id)
        assert stale.answered_at is not None
        assert (await c.stack.booking(c.booking.id)).status == BookingStatus.APPROVED
        assert all(a.answered_at is not None for a in c.sim.callback_answers())


async def test_a_pressed_progress_message_keeps_its_keyboard_off_while_it_is_still_followed(
    database_url: str,
):
    async with chat(database_url) as c:
        failure = await c.fail_once()
        await c.stack.sim.control("/control/next-outcome", {"outcome": "success", "delay": 4})
        c.sim.press(CLIENT, failure.message_id, label=label("retry"))
        retry = await c.wait("Sending the M-Pesa prompt again", after=failure.message_id)
        assert failure.inline_keyboard == []
        assert retry.button_labels() == [label("change_phone")]

        c.sim.press(CLIENT, retry.message_id, label=label("change_phone"))  # the prompt is still open
        await c.wait("is still open", after=retry.message_id)
        assert retry.inline_keyboard == []
        edits = len(retry.history)
        await c.sim.wait_for(lambda: len(retry.history) > edits, within=4)  # the waiting line moves on
        assert retry.inline_keyboard == []
        await c.sim.wait_for(lambda: "Payment received" in retry.text, within=8)
        assert retry.inline_keyboard == [] and c.with_retry() == []


# Feature: mpesa-payment-integration, Property 63: Failed Payment Sends Notification With Reason
async def test_a_failure_the_chat_did_not_follow_arrives_as_the_notice_with_both_choices(database_url: str):
    """After a restart nobody follows the progress message: the outbox notice tells the failure."""
    async with chat(database_url) as c:
        c.sim.send_command(CLIENT, "start")  # the client has written to the bot before
        await c.wait("What would you like to do?")
        payments = c.stack.services.payments
        view = await payments.initiate_payment(c.booking.id, c.booking.client_id, "254712345672")
        await c.stack.wait_status(view.attempt_id, PaymentStatus.CANCELLED)
        await asyncio.sleep(0.5)
        assert c.find("Payment not completed") is None  # held for the chat's progress message
        c.stack.clock.advance(payment_failed.TELEGRAM_HOLD.total_seconds() + 1)
        c.stack.runtime.wake("outbox")
        notice = await c.wait("Payment not completed")
        assert notice.button_labels() == BOTH and notice.text.startswith("[TEST MODE]")
        assert c.with_retry() == [notice]


async def test_when_the_progress_message_cannot_be_edited_the_notice_is_given_back_and_sent(
    database_url: str,
):
    async with chat(database_url) as c:
        c.sim.fail_next("editMessageText", 1000, status=400)  # every edit is refused
        c.sim.send_command(CLIENT, "pay")
        await c.wait("Which M-Pesa number")
        c.sim.send_text(CLIENT, CANCEL_PHONE)
        progress = await c.wait("Check your phone")
        notice = await c.wait("Payment not completed", within=8)  # due at once, not after the hold
        assert notice.button_labels() == BOTH
        assert "Check your phone" in progress.text and progress.history == []
        assert c.with_retry() == [notice]
        for _ in range(50):  # the dispatcher records the send just after the stand-in has it
            [row] = await _notices(c.stack)
            if row.status == "SENT":
                break
            await asyncio.sleep(0.1)
        assert row.status == "SENT"
