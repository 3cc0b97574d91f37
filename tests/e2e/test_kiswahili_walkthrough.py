"""The whole booking → approval → M-Pesa payment → reschedule in Kiswahili, on Telegram and SMS.

Telegram: a client whose Telegram is in Kiswahili (language_code "sw") drives real PTB against
the Bot API stand-in; the practitioner's Telegram is in English and gets English. After paying,
the client moves the session from "Vikao vyangu" ("Badilisha muda" → a day → a time → confirm).
SMS: the practice's DEFAULT_LANGUAGE is sw; the client texts MIADI, the SMS practitioner approves
with A<code>, the client pays with LIPA, then moves it with ZANGU and the numbers; every SMS the
dispatcher renders is GSM-7, discreet and in Kiswahili (the practitioner's too). Both against the
Daraja simulator, on SQLite and PostgreSQL. The runtime's clock starts at a fixed Nairobi Monday
morning, so the days and times offered never depend on when the test runs. A move keeps the
payment: one STK push in all.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from bot.sender import TelegramSender
from core.db.models import Booking, PaymentAttempt
from core.dialog import messages
from core.dialog.engine import DialogEngine
from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus, PaymentStatus
from core.services.notifications.notify import Dispatcher
from core.templates.gsm import contains_forbidden, is_gsm7
from simulators.telegram_api import SimMessage, TelegramApiSimulator
from tests.e2e.test_telegram_booking import Recorder, _find, _press, dispatching
from tests.factories import make_session_type, make_therapist
from tests.integration.test_dialog_support import SMS_THERAPIST_PHONE, build_world
from tests.integration.test_reschedule_channels import _number_of
from tests.integration.test_sms_conversation import CLIENT as SMS_CLIENT
from tests.integration.test_sms_conversation import Phone, sms_webhook
from tests.support.payments import payment_stack
from tests.support.telegram import running_bot, running_telegram

CLIENT = 9201
THERAPIST = 9202
START = datetime(2031, 3, 10, 8, 0, tzinfo=NAIROBI)  # a Monday morning in Nairobi
BOOKED = datetime(2031, 3, 12, 10, 0, tzinfo=NAIROBI)  # Wednesday 10:00, 50 hours ahead
NEW = datetime(2031, 3, 13, 11, 0, tzinfo=NAIROBI)  # Thursday 11:00


def _first_said(sim: TelegramApiSimulator, user: int, text: str) -> SimMessage | None:
    """The bot message to ``user`` whose first version said ``text`` (it may have been edited since)."""
    for message in sim.bot_messages(user):
        first = message.history[0]["text"] if message.history else message.text
        if text in (first or ""):
            return message
    return None


async def test_a_kiswahili_client_books_is_approved_pays_and_moves_the_session_on_telegram(
    database_url: str,
) -> None:
    async with payment_stack(database_url, start=START) as stack, running_telegram() as telegram:
        async with stack.runtime.uow() as uow:
            await make_therapist(
                uow.session,
                name="Dr. Amani",
                telegram_user_id=THERAPIST,
                telegram_link_code=None,
                phone="254712000111",
            )
            await make_session_type(uow.session, name="Individual", minutes=50, price_kes=2500)
            await uow.commit()
        sim = telegram.state
        sim.add_user(CLIENT, "Wanjiru", phone_number="254708374149", language_code="sw")
        sim.add_user(THERAPIST, "Amani", started=True)  # English Telegram
        payments = stack.services.payments
        engine = DialogEngine(stack.runtime, payments)
        async with (
            running_bot(stack.runtime, engine, telegram, payments) as handle,
            dispatching(stack.runtime, TelegramSender(handle.bot)),
        ):
            sim.send_command(CLIENT, "start")
            menu = await sim.wait_for(lambda: _find(sim, CLIENT, "Ungependa kufanya nini?"))
            assert menu.button_labels() == ["Panga kikao", "Vikao vyangu", "Msaada"]
            flow = await _press(
                sim, CLIENT, "Panga kikao", lambda: _find(sim, CLIENT, "Ungependa kuonana na nani?")
            )
            await _press(sim, CLIENT, "Dr. Amani", lambda: "Kikao cha aina gani?" in flow.text)
            assert flow.button_labels() == ["Individual · dakika 50 · KES 2,500"]
            await _press(sim, CLIENT, flow.button_labels()[0], lambda: "Chagua siku" in flow.text)
            day = messages.day_label(BOOKED.date(), "sw")
            assert day == "Jumatano 12 Mac" and day in flow.button_labels()
            await _press(sim, CLIENT, day, lambda: "Chagua saa ya kuanza" in flow.text)
            await _press(sim, CLIENT, "10:00", lambda: flow.button_labels() == ["Ruka"])
            await _press(sim, CLIENT, "Ruka", lambda: "Tafadhali kagua ombi lako" in flow.text)
            assert flow.button_labels() == ["Thibitisha", "Ghairi"]
            sent = await _press(sim, CLIENT, "Thibitisha", lambda: _find(sim, CLIENT, "Ombi limetumwa"))
            async with stack.runtime.uow() as uow:
                booking = (await uow.session.scalars(select(Booking))).one()
            assert booking.reference in sent.text

            # The practitioner reads English (their Telegram is in English).
            request = await sim.wait_for(lambda: _find(sim, THERAPIST, "New booking request"))
            await _press(sim, THERAPIST, "Approve", lambda: request.text.startswith("Approved"))
            approved = await sim.wait_for(lambda: _find(sim, CLIENT, "Miadi yako imekubaliwa"))
            assert approved.button_labels() == ["Lipa kwa M-Pesa"] and "KES 2,500" in approved.text

            ask = await _press(
                sim, CLIENT, "Lipa kwa M-Pesa", lambda: _find(sim, CLIENT, "Namba gani ya M-Pesa")
            )
            assert ask.text.startswith("[TEST MODE]")
            assert sim.keyboard_labels(CLIENT) == ["Tuma namba yangu ya simu", "254708374149"]
            sim.tap(CLIENT, "Tuma namba yangu ya simu")
            # The prompt's message ("check your phone"), edited in place to the result. On a loaded
            # machine the simulator's callback may settle the payment before the push's answer is
            # written; that answer then says "already paid" (pay_flow._progress), and is edited alike.
            progress = await sim.wait_for(
                lambda: (
                    _first_said(sim, CLIENT, "Angalia simu yako")
                    or _first_said(sim, CLIENT, "tayari imelipwa")
                ),
                within=5,
            )
            await sim.wait_for(lambda: "Malipo yamepokelewa" in progress.text, within=5)
            receipt = await sim.wait_for(
                lambda: _find(sim, CLIENT, "Malipo yamepokelewa - kikao chako kimethibitishwa")
            )
            async with stack.runtime.uow() as uow:
                attempt = (await uow.session.scalars(select(PaymentAttempt))).one()
            assert attempt.status == PaymentStatus.PAID and attempt.mpesa_receipt in receipt.text
            assert await sim.wait_for(lambda: _find(sim, THERAPIST, "Booking paid"))
            assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED

            await _reschedule_on_telegram(sim, booking.reference)
            # The practitioner is told in English (the client had the chat's Kiswahili answer).
            moved = await sim.wait_for(lambda: _find(sim, THERAPIST, "Session moved"), within=5)
            assert "New time: Thu 13 Mar 2031, 11:00 EAT" in moved.text
            assert "Was: Wed 12 Mar 2031, 10:00 EAT" in moved.text
            assert "The payment stays with the booking" in moved.text
        after = await stack.booking(booking.id)
        assert (after.starts_at, after.status) == (NEW, BookingStatus.CONFIRMED)
        async with stack.runtime.uow() as uow:
            attempts = (await uow.session.scalars(select(PaymentAttempt))).all()
        assert [(a.booking_id, a.status) for a in attempts] == [(booking.id, PaymentStatus.PAID)]
        assert len(stack.pushes()) == 1  # the move asked the Daraja simulator for nothing


def _with_button(sim: TelegramApiSimulator, label: str) -> SimMessage | None:
    """The latest bot message to the client that (still) offers a button ``label``."""
    return next((m for m in reversed(sim.bot_messages(CLIENT)) if label in m.button_labels()), None)


async def _reschedule_on_telegram(sim: TelegramApiSimulator, reference: str) -> None:
    """From "Vikao vyangu": Badilisha muda → Thursday → 11:00 → Ndiyo, hamisha; all in Kiswahili."""
    sim.send_command(CLIENT, "my")
    card = await sim.wait_for(lambda: _with_button(sim, "Badilisha muda"), within=5)
    assert card.text.startswith(f"{reference}: Individual na Dr. Amani, Jumatano 12 Mac, 10:00 EAT.")
    day = messages.day_label(NEW.date(), "sw")
    days = await _press(sim, CLIENT, "Badilisha muda", lambda: _with_button(sim, day))
    intro = _find(sim, CLIENT, "Tuhamishe")
    assert intro and "sasa ni Jumatano 12 Mac, 10:00 EAT" in intro.text and "Chagua siku" in days.text
    await _press(sim, CLIENT, day, lambda: _find(sim, CLIENT, "Chagua saa ya kuanza"))
    confirm = await _press(sim, CLIENT, "11:00", lambda: _find(sim, CLIENT, f"Hamisha {reference}"))
    assert confirm.button_labels()[0] == "Ndiyo, hamisha"
    done = await _press(sim, CLIENT, "Ndiyo, hamisha", lambda: _find(sim, CLIENT, "Imekamilika"))
    assert done.text.startswith(f"Imekamilika: {reference} sasa ni Alhamisi 13 Mac, 11:00 EAT.")
    assert "Malipo yako yanabaki nacho" in done.text


async def test_a_kiswahili_client_books_is_approved_pays_and_moves_the_session_over_sms(
    database_url: str,
) -> None:
    async with payment_stack(database_url, start=START, DEFAULT_LANGUAGE="sw") as stack:
        world = await build_world(stack.runtime, stack.services.payments)
        async with sms_webhook(stack.runtime, world.engine) as base_url:
            client = Phone(base_url, stack.runtime, SMS_CLIENT)
            therapist = Phone(base_url, stack.runtime, SMS_THERAPIST_PHONE)
            await client.text("MIADI")
            assert client.last.startswith("Ungependa kuonana na nani?") and "1 Brian Otieno" in client.last
            assert client.last.endswith("Jibu 1-2")
            await client.text("1")  # Brian Otieno, who uses SMS
            assert client.last.startswith("Kikao cha aina gani?")
            assert "1 Individual dak 50 KES 2,500" in client.last
            await client.text("1")
            assert client.last.startswith("Chagua siku:")
            await client.text(_number_of(client.last, messages.day_label(BOOKED.date(), "sw")))
            assert client.last.startswith("Chagua saa ya kuanza")
            await client.text(_number_of(client.last, "10:00"))
            assert "barua pepe" in client.last and "1 Ruka" in client.last
            await client.text("1")  # Ruka
            assert "Thibitisha?" in client.last and "1 Thibitisha\n2 Ghairi" in client.last
            await client.text("1")
            [booking] = await world.bookings()
            assert booking.status == BookingStatus.PENDING_APPROVAL and booking.reference in client.last
            assert client.last.startswith(f"Ombi {booking.reference} limetumwa.")

            await therapist.text(f"A{booking.approval_code}")
            assert therapist.last.startswith(f"Umekubali {booking.reference}.")
            await client.text("LIPA")
            assert client.last.startswith("[TEST MODE] Namba gani ya M-Pesa ilipe KES 2,500")
            await client.text("2")  # Safaricom's test number
            assert "Angalia simu" in client.last
            async with stack.runtime.uow() as uow:
                attempt_id = int(await uow.session.scalar(select(func.max(PaymentAttempt.id))) or 0)
            await stack.wait_status(attempt_id, PaymentStatus.PAID)
            listing = await client.text("ZANGU")
            assert "Kimelipwa na kuthibitishwa" in listing
            await _reschedule_over_sms(client, listing, booking.reference)
            moved = await stack.booking(booking.id)
            assert (moved.starts_at, moved.status) == (NEW, BookingStatus.CONFIRMED)
            async with stack.runtime.uow() as uow:
                attempts = (await uow.session.scalars(select(PaymentAttempt))).all()
            assert [(a.booking_id, a.status) for a in attempts] == [(booking.id, PaymentStatus.PAID)]
            assert len(stack.pushes()) == 1  # the move asked the Daraja simulator for nothing

            recorder = Recorder()
            dispatcher = Dispatcher(stack.runtime, {"sms": recorder, "telegram": recorder, "email": recorder})
            while await dispatcher.dispatch_once():
                pass
            texts = {m.template: m.text for _, m in recorder.sent if m.channel == "sms"}
            assert texts["booking_requested_therapist"].startswith(f"Miadi mpya {booking.reference}")
            assert "jibu LIPA" in texts["booking_approved_client"]
            assert texts["payment_confirmed_client"].startswith("[TEST MODE] Umelipa KES 2,500")
            assert texts["payment_received_therapist"].startswith("[TEST MODE] Imelipwa:")
            told = texts["booking_rescheduled_therapist"]  # the SMS practitioner, in Kiswahili
            assert told.startswith(f"Kikao {booking.reference} na ")
            assert told.endswith("kimehamishwa hadi Alhamisi 13 Mac, 11:00 (awali Jumatano 12 Mac, 10:00).")
            for _, message in recorder.sent:
                if message.channel == "sms":
                    assert is_gsm7(message.text) and not contains_forbidden(message.text), message.text


async def _reschedule_over_sms(client: Phone, listing: str, reference: str) -> None:
    """ZANGU → the number next to "Badilisha muda" → Thursday → 11:00 → "Ndiyo, hamisha"."""
    days = await client.text(_number_of(listing, "Badilisha muda"))
    assert days.startswith(f"Kuhamisha {reference} (sasa Jumatano 12 Mac, 10:00).")
    times = await client.text(_number_of(days, messages.day_label(NEW.date(), "sw")))
    assert times.startswith("Chagua saa ya kuanza")
    confirm = await client.text(_number_of(times, "11:00"))
    assert confirm.startswith(f"Hamisha {reference} hadi Alhamisi 13 Mac, 11:00?")
    done = await client.text(_number_of(confirm, "Ndiyo, hamisha"))
    assert done.startswith(f"Imekamilika: {reference} sasa ni Alhamisi 13 Mac, 11:00.")
    assert "Malipo yako yanabaki nacho" in done
