"""End to end on Telegram: a client books, the practitioner approves, the client pays by M-Pesa.

Everything real except the outside systems: the DialogEngine, PaymentService, settlement
and the outbox dispatcher (with the TelegramSender) on a migrated database; real PTB
talking HTTP to the Bot API stand-in; the Daraja simulator answering the STK Push and
posting the callback to our aiohttp app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import select

from bot.sender import TelegramSender
from core.db.models import Booking, PaymentAttempt
from core.dialog.engine import DialogEngine
from core.dialog.types import OPTION_VALUE_MAX_BYTES
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services.notifications.notify import Dispatcher
from core.services.notifications.outbox_types import RenderedMessage, SendResult
from simulators.telegram_api import SimMessage, TelegramApiSimulator
from tests.factories import make_session_type, make_therapist
from tests.support.payments import payment_stack
from tests.support.telegram import running_bot, running_telegram

CLIENT = 9101
THERAPIST = 9102
PRACTITIONER = "Dr. Amani <b>Wanjiku</b>"  # hostile-looking name: must reach chats literally


@dataclass
class Recorder:
    """A Sender that keeps what it was given (SMS and e-mail are not under test here)."""

    sent: list[tuple[str, RenderedMessage]] = field(default_factory=list)

    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        self.sent.append((recipient, message))
        return SendResult.sent(f"rec-{len(self.sent)}")


@asynccontextmanager
async def dispatching(runtime: Runtime, telegram_sender: TelegramSender) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    dispatcher = Dispatcher(
        runtime, {"telegram": telegram_sender, "sms": recorder, "email": recorder}, poll_interval=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield recorder
    finally:
        stop.set()
        runtime.wake("outbox")
        await asyncio.wait_for(task, 5)


def _button_values(sim: TelegramApiSimulator, user: int) -> list[str]:
    values = [b["callback_data"] for m in sim.messages(user, include_deleted=True) for b in m.buttons()]
    values += [
        b["callback_data"]
        for m in sim.messages(user, include_deleted=True)
        for v in m.history
        for row in ((v["reply_markup"] or {}).get("inline_keyboard") or [])
        for b in row
    ]
    return values


async def _press(sim: TelegramApiSimulator, user: int, label: str, until, within: float = 5.0) -> SimMessage:
    sim.press(user, label=label)
    return await sim.wait_for(until, within)


def _find(sim: TelegramApiSimulator, user: int, text: str) -> SimMessage | None:
    return next((m for m in reversed(sim.bot_messages(user)) if text in (m.text or "")), None)


# Feature: mpesa-payment-integration, Property 3: Therapist Approval Updates Session Status
# Feature: mpesa-payment-integration, Property 4: Approval Triggers Payment Notification
# Feature: mpesa-payment-integration, Property 6: Approved Sessions Show Payment Option
# Feature: mpesa-payment-integration, Property 16: Status Change Updates UI
# Feature: mpesa-payment-integration, Property 50: Payment Endpoints Require Authentication
async def test_a_client_books_the_practitioner_approves_and_the_client_pays_on_telegram(database_url: str):
    async with payment_stack(database_url) as stack, running_telegram() as telegram:
        async with stack.runtime.uow() as uow:
            await make_therapist(
                uow.session,
                name=PRACTITIONER,
                telegram_user_id=THERAPIST,
                telegram_link_code=None,
                phone="254712000111",
            )
            await make_session_type(uow.session, name="Individual", minutes=50, price_kes=2500)
            await uow.commit()
        sim = telegram.state
        sim.add_user(CLIENT, "Wanjiru", phone_number="254708374149")
        sim.add_user(THERAPIST, "Amani", started=True)  # the practitioner linked the bot earlier
        payments = stack.services.payments
        engine = DialogEngine(stack.runtime, payments)

        async with (
            running_bot(stack.runtime, engine, telegram, payments) as handle,
            dispatching(stack.runtime, TelegramSender(handle.bot)),
        ):
            # -- the client books ------------------------------------------------------------
            sim.send_command(CLIENT, "start")
            menu = await sim.wait_for(lambda: _find(sim, CLIENT, "What would you like to do?"))
            assert menu.button_labels() == ["Book a session", "My sessions", "Help"]
            flow = await _press(
                sim, CLIENT, "Book a session", lambda: _find(sim, CLIENT, "Who would you like")
            )
            assert flow.button_labels() == [PRACTITIONER]
            await _press(sim, CLIENT, PRACTITIONER, lambda: "Which kind of session" in flow.text)
            assert flow.button_labels() == ["Individual · 50 min · KES 2,500"]
            await _press(sim, CLIENT, flow.button_labels()[0], lambda: "Pick a day" in flow.text)
            await _press(sim, CLIENT, flow.button_labels()[0], lambda: "Pick a start time" in flow.text)
            await _press(sim, CLIENT, flow.button_labels()[0], lambda: flow.button_labels() == ["Skip"])
            await _press(sim, CLIENT, "Skip", lambda: "Please check your request" in flow.text)
            assert PRACTITIONER in flow.text  # escaped on the way, literal on the phone
            assert flow.button_labels() == ["Confirm", "Cancel"]
            sent = await _press(sim, CLIENT, "Confirm", lambda: _find(sim, CLIENT, "Request sent"))
            async with stack.runtime.uow() as uow:
                booking = (await uow.session.scalars(select(Booking))).one()
            assert booking.status == BookingStatus.PENDING_APPROVAL and booking.reference in sent.text

            # -- the practitioner is asked; the client cannot approve their own booking -----------
            request = await sim.wait_for(lambda: _find(sim, THERAPIST, "New booking request"))
            assert request.button_labels() == ["Approve", "Decline"]
            assert [b["callback_data"] for b in request.buttons()] == [
                f"v1:approve:{booking.id}",
                f"v1:decline:{booking.id}",
            ]
            forged = sim.press(CLIENT, data=f"v1:approve:{booking.id}", forge=True)
            [refusal] = await sim.wait_for(
                lambda: forged.answered_at and answered_after(sim, CLIENT, forged.at)
            )
            assert refusal.text == "I could not find that request."
            assert (await stack.booking(booking.id)).status == BookingStatus.PENDING_APPROVAL

            # -- approval -------------------------------------------------------------------------
            await _press(sim, THERAPIST, "Approve", lambda: request.text.startswith("Approved"))
            assert request.inline_keyboard == []  # the request card lost its buttons
            assert (await stack.booking(booking.id)).status == BookingStatus.APPROVED
            approved = await sim.wait_for(lambda: _find(sim, CLIENT, "Your booking is approved"))
            assert approved.text.startswith("[TEST MODE]")
            assert approved.button_labels() == ["Pay with M-Pesa"]

            # -- payment ------------------------------------------------------------------------------
            ask = await _press(
                sim, CLIENT, "Pay with M-Pesa", lambda: _find(sim, CLIENT, "Which M-Pesa number")
            )
            assert ask.text.startswith("[TEST MODE]")
            assert sim.keyboard_labels(CLIENT) == ["Share my phone number", "254708374149"]
            sim.tap(CLIENT, "Share my phone number")
            progress = await sim.wait_for(
                lambda: _find(sim, CLIENT, "Payment received") or _find(sim, CLIENT, "Check your phone"),
                within=5,
            )
            await sim.wait_for(lambda: "Payment received" in progress.text, within=5)
            attempt = await _attempt(stack.runtime, booking.id)
            assert attempt.status == PaymentStatus.PAID
            first_version = progress.history[0]["text"] if progress.history else progress.text
            assert first_version.startswith("[TEST MODE]") and "Check your phone" in first_version
            assert progress.text.startswith("[TEST MODE]") and attempt.mpesa_receipt in progress.text
            assert _wall(progress.edited_at) - attempt.settled_at.timestamp() < 1.0  # type: ignore[union-attr, arg-type]
            receipt = await sim.wait_for(
                lambda: _find(sim, CLIENT, "Payment received - your session is confirmed")
            )
            assert attempt.mpesa_receipt in receipt.text and PRACTITIONER in receipt.text
            paid_note = await sim.wait_for(lambda: _find(sim, THERAPIST, "Booking paid"))
            assert attempt.mpesa_receipt in paid_note.text
            assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED

            # -- an old Pay button now does nothing harmful ----------------------------------------
            again = await _press(
                sim, CLIENT, "Pay with M-Pesa", lambda: _find(sim, CLIENT, "is already paid")
            )
            assert again is not None
            assert len(stack.pushes()) == 1

        answers = sim.callback_answers()
        assert answers and all(a.answered_at is not None for a in answers)
        assert all(
            v.startswith("v1:") and len(v.encode()) <= OPTION_VALUE_MAX_BYTES
            for v in _button_values(sim, CLIENT) + _button_values(sim, THERAPIST)
        )


def answered_after(sim: TelegramApiSimulator, user: int, at: float) -> list[SimMessage]:
    """Bot messages to ``user`` sent or edited after the monotonic instant ``at``."""
    return [m for m in sim.bot_messages(user) if m.at > at or (m.edited_at or 0) > at]


async def _attempt(runtime: Runtime, booking_id: int) -> PaymentAttempt:
    async with runtime.uow() as uow:
        return (
            await uow.session.scalars(select(PaymentAttempt).where(PaymentAttempt.booking_id == booking_id))
        ).one()


def _wall(monotonic_at: float | None) -> float:
    assert monotonic_at is not None
    return time.time() - (time.monotonic() - monotonic_at)
