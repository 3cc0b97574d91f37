"""The whole booking → approval → M-Pesa payment in Kiswahili, on Telegram and on SMS.

Telegram: a client whose Telegram is in Kiswahili (language_code "sw") drives real PTB against
the Bot API stand-in; the practitioner's Telegram is in English and gets English. SMS: the
practice's DEFAULT_LANGUAGE is sw; the client texts MIADI, the SMS practitioner approves with
A<code>, the client pays with LIPA; every SMS the dispatcher renders is GSM-7, discreet and in
Kiswahili. Both against the Daraja simulator, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import func, select

from bot.sender import TelegramSender
from core.db.models import Booking, PaymentAttempt
from core.dialog.engine import DialogEngine
from core.domain.states import BookingStatus, PaymentStatus
from core.services.notifications.notify import Dispatcher
from core.templates.gsm import contains_forbidden, is_gsm7
from simulators.telegram_api import SimMessage, TelegramApiSimulator
from tests.e2e.test_telegram_booking import Recorder, _find, _press, dispatching
from tests.factories import make_session_type, make_therapist
from tests.integration.test_dialog_support import SMS_THERAPIST_PHONE, build_world
from tests.integration.test_sms_conversation import CLIENT as SMS_CLIENT
from tests.integration.test_sms_conversation import Phone, sms_webhook
from tests.support.payments import payment_stack
from tests.support.telegram import running_bot, running_telegram

CLIENT = 9201
THERAPIST = 9202


def _first_said(sim: TelegramApiSimulator, user: int, text: str) -> SimMessage | None:
    """The bot message to ``user`` whose first version said ``text`` (it may have been edited since)."""
    for message in sim.bot_messages(user):
        first = message.history[0]["text"] if message.history else message.text
        if text in (first or ""):
            return message
    return None


async def test_a_kiswahili_client_books_is_approved_and_pays_on_telegram(database_url: str) -> None:
    async with payment_stack(database_url) as stack, running_telegram() as telegram:
        async with stack.runtime.uow() as uow:
            await make_therapist(
                uow.session, name="Dr. Amani", telegram_user_id=THERAPIST, telegram_link_code=None,
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
            first_day = flow.button_labels()[0]
            assert first_day.split()[0] in {"Jumatatu", "Jumanne", "Jumatano", "Alhamisi", "Ijumaa"}
            await _press(sim, CLIENT, first_day, lambda: "Chagua saa ya kuanza" in flow.text)
            await _press(sim, CLIENT, flow.button_labels()[0], lambda: flow.button_labels() == ["Ruka"])
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
                lambda: _first_said(sim, CLIENT, "Angalia simu yako")
                or _first_said(sim, CLIENT, "tayari imelipwa"),
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


async def test_a_kiswahili_client_books_is_approved_and_pays_over_sms(database_url: str) -> None:
    async with payment_stack(database_url, DEFAULT_LANGUAGE="sw") as stack:
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
            await client.text("1")
            assert client.last.startswith("Chagua saa ya kuanza")
            await client.text("1")
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
            assert "Kimelipwa na kuthibitishwa" in await client.text("ZANGU")

            recorder = Recorder()
            dispatcher = Dispatcher(stack.runtime, {"sms": recorder, "telegram": recorder, "email": recorder})
            while await dispatcher.dispatch_once():
                pass
            texts = {m.template: m.text for _, m in recorder.sent if m.channel == "sms"}
            assert texts["booking_requested_therapist"].startswith(f"Miadi mpya {booking.reference}")
            assert "jibu LIPA" in texts["booking_approved_client"]
            assert texts["payment_confirmed_client"].startswith("[TEST MODE] Umelipa KES 2,500")
            assert texts["payment_received_therapist"].startswith("[TEST MODE] Imelipwa:")
            for _, message in recorder.sent:
                if message.channel == "sms":
                    assert is_gsm7(message.text) and not contains_forbidden(message.text), message.text
