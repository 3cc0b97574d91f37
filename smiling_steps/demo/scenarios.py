"""The scenarios: one small function each, acting and checking through the service's HTTP interfaces."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from core.services.notifications.reminders import plan_reminders
from smiling_steps.demo.sms_steps import book_by_sms, new_sms_number, text
from smiling_steps.demo.sms_steps import reply as sms_reply
from smiling_steps.demo.stage import Stage
from smiling_steps.demo.telegram_steps import Person, approve, request_booking, start_payment
from smiling_steps.demo.transcript import StepFailed, Transcript

PRACTITIONER_CHAT_ID = 2001  # the chat persona linked to the top name of the booking list
NAIROBI = ZoneInfo("Africa/Nairobi")
RECEIPT = "Payment received - your session is confirmed"


@dataclass
class Play:
    """One scenario's run: the stage it watches, its transcript and the people in it."""

    stage: Stage
    transcript: Transcript
    client: Person
    practitioner: Person
    email: str
    reference: str = ""  # the booking's, once requested


def new_play(stage: Stage, transcript: Transcript) -> Play:
    """A fresh client (own number, chat and bookings) so that scenarios can share one service.

    Its Telegram id is 3000000000 + the number's last 8 digits, the phone page's rule for a
    client typed in by number, so the page lists it among clients, not practitioners.
    """
    phone = new_sms_number()
    client = Person(3_000_000_000 + int(phone[4:]), "client", phone)
    practitioner = Person(PRACTITIONER_CHAT_ID, "practitioner", "254712000111")
    stage.service.add_chat_user(client.user_id, "Wanjiru", phone)
    stage.watch_chat(client.user_id, client.who)
    stage.watch_chat(practitioner.user_id, practitioner.who)
    return Play(stage, transcript, client, practitioner, f"client{phone[-6:]}@demo.smilingsteps.org")


def book_and_approve(play: Play) -> None:
    with play.transcript.step("client books the top practitioner"):
        name, play.reference = request_booking(play.stage, play.client, play.email)
        play.transcript.line("demo", f"{play.reference} asks {name}, the first name of the list")
    with play.transcript.step("practitioner approves in the chat"):
        approve(play.stage, play.practitioner, play.reference)
        approved = f"Your booking is approved ({play.reference})"
        play.stage.wait("the client's Pay button", lambda: play.stage.find(play.client.user_id, approved))


def expect_paid(play: Play, within: float = 20.0) -> None:
    stage, client = play.stage, play.client
    with play.transcript.step("client gets the receipt"):
        stage.wait("the receipt in the client's chat", lambda: stage.find(client.user_id, RECEIPT), within)
    with play.transcript.step("practitioner is told it is paid"):
        stage.wait(f"'Booking paid ({play.reference})' for the practitioner",
                   lambda: stage.find(play.practitioner.user_id, f"Booking paid ({play.reference})"))
    with play.transcript.step("receipt e-mail captured"):
        stage.wait(f"receipt e-mail to {play.email}", lambda: _receipt_mail(play))
    with play.transcript.step("reminders scheduled"):
        show_reminder_schedule(play)


def _receipt_mail(play: Play) -> list[dict[str, object]]:
    return [m for m in play.stage.mails
            if play.email in str(m.get("to")) and f"booking {play.reference}" in str(m.get("subject"))
            and "Payment received" in str(m.get("subject"))]


def show_reminder_schedule(play: Play, receipt: str | None = None) -> None:
    """The reminder plan is on no HTTP page: apply the service's own rule to the receipt's session time."""
    if receipt is None:
        receipt = str((play.stage.find(play.client.user_id, RECEIPT) or {}).get("text"))
    found = re.search(r"Session:? \w{3} (\d{2} \w{3} \d{4}), (\d{2}:\d{2}) EAT", receipt)
    if not found:
        raise StepFailed("no session time in the receipt")
    local = datetime.strptime(" ".join(found.groups()), "%d %b %Y %H:%M").replace(tzinfo=NAIROBI)
    plan = plan_reminders(local.astimezone(UTC), datetime.now(UTC))
    due = ", ".join(f"{kind} before at {when.astimezone(NAIROBI):%a %d %b %H:%M} EAT" for kind, when in plan)
    play.transcript.line("reminders", f"session {local:%a %d %b %H:%M} EAT: "
                         f"{due or 'less than 1 h ahead, so no reminder'} (rule of reminders.plan_reminders)")


def expect_failed(play: Play, reason: str, words: str) -> None:
    """One failure notice saying ``words`` (the reason from M-Pesa's result code), with Retry payment."""
    stage, client = play.stage, play.client
    with play.transcript.step(f"client is told the payment failed ({reason})"):
        stage.wait(f"a failure saying '{words}' with 'Retry payment'",
                   lambda: next((m for m in reversed(stage.messages[client.user_id])
                                 if m["from_bot"] and words in (m.get("text") or "")
                                 and "Retry payment" in str(m.get("reply_markup"))), None))
    with play.transcript.step("nothing was recorded as paid"):
        stage.refresh()
        if stage.find(client.user_id, "Payment received"):
            raise StepFailed("the client was told the payment was received")


def happy(play: Play) -> None:
    book_and_approve(play)
    with play.transcript.step("client pays with M-Pesa"):
        start_payment(play.stage, play.client)
    expect_paid(play)


def _failing(outcome: str, reason: str, words: str) -> Callable[[Play], None]:
    def scenario(play: Play) -> None:
        book_and_approve(play)
        with play.transcript.step(f"client pays; the phone answers '{outcome}'"):
            play.stage.service.next_outcome(outcome)
            play.transcript.line("demo", f"Daraja simulator: next push ends as '{outcome}'")
            start_payment(play.stage, play.client)
        expect_failed(play, reason, words)

    return scenario


def timeout(play: Play) -> None:
    book_and_approve(play)
    with play.transcript.step("client pays; no callback ever arrives"):
        play.stage.service.next_outcome("no_callback")
        play.transcript.line("demo", "Daraja simulator: the customer pays but no callback is sent")
        start_payment(play.stage, play.client)
    with play.transcript.step("the watchdog's STK Query settles it"):
        play.stage.wait("an STK Query", lambda: any("STK Query" in s for s in _daraja_lines(play)), 150.0)
    expect_paid(play, within=30.0)


def duplicate(play: Play) -> None:
    book_and_approve(play)
    with play.transcript.step("client pays; M-Pesa sends the callback twice"):
        play.stage.service.next_outcome("duplicate_callback")
        start_payment(play.stage, play.client)
    expect_paid(play)
    with play.transcript.step("both callbacks arrived, one receipt was sent"):
        play.stage.wait("two callbacks",
                        lambda: len([s for s in _daraja_lines(play) if "callback" in s]) >= 2)
        time.sleep(1.0)  # a second receipt, if any, would follow the first within the outbox's poll
        play.stage.refresh()
        receipts = play.stage.count(play.client.user_id, RECEIPT)
        if receipts != 1 or len(_receipt_mail(play)) != 1:
            raise StepFailed(f"{receipts} receipts in the chat and {len(_receipt_mail(play))} by e-mail, "
                             "expected 1 and 1")


def outage(play: Play) -> None:
    book_and_approve(play)
    service = play.stage.service
    with play.transcript.step("Daraja answers 503; the payment is queued"):
        service.daraja_faults(push_503=True)
        play.transcript.line("demo", "Daraja simulator: STK Push answers 503 Service Unavailable")
        start_payment(play.stage, play.client)
        play.stage.wait("a 503 in the Daraja log", lambda: any("HTTP 503" in s for s in _daraja_lines(play)))
        play.stage.wait("'not answering' for the client",
                        lambda: play.stage.find(play.client.user_id, "not answering"))
    with play.transcript.step("Daraja is back; the queued push is retried"):
        service.daraja_faults(push_503=False)
        play.transcript.line("demo", "Daraja simulator: STK Push works again (the retry waits "
                             "MPESA_UNAVAILABLE_RETRY_SECONDS, 30 s unless set)")
        play.stage.wait("the retried STK Push",
                        lambda: any("accepted" in s for s in _daraja_lines(play)), 60.0)
    expect_paid(play)


def sms(play: Play) -> None:
    stage, client = play.stage, Person(0, "SMS client", new_sms_number())
    stage.watch_sms(client.phone, client.who)
    with play.transcript.step("client books by SMS"):
        play.reference = book_by_sms(stage, client, play.email)
    with play.transcript.step("practitioner approves in the chat"):
        seen = len(stage.sms)
        approve(stage, play.practitioner, play.reference)
        stage.wait("approval SMS", lambda: sms_reply(stage, client, "reply PAY", seen))
    with play.transcript.step("client replies PAY and picks their own number"):
        text(stage, client, "PAY", "Which M-Pesa number")
        text(stage, client, "1", "Check your phone")
    with play.transcript.step("client gets the receipt by SMS"):
        stage.wait("receipt SMS", lambda: sms_reply(stage, client, "Paid KES"))
    with play.transcript.step("receipt e-mail captured"):
        stage.wait(f"receipt e-mail to {play.email}", lambda: _receipt_mail(play))
    with play.transcript.step("reminders scheduled"):
        show_reminder_schedule(play, str((sms_reply(stage, client, "Paid KES") or {}).get("message")))


def _daraja_lines(play: Play) -> list[str]:
    return play.stage.daraja_seen


SCENARIOS: dict[str, Callable[[Play], None]] = {
    "happy": happy,
    "cancelled": _failing("cancelled", "cancelled on the phone", "cancelled"),
    "insufficient": _failing("insufficient", "insufficient funds", "balance was not enough"),
    "timeout": timeout,
    "duplicate": duplicate,
    "outage": outage,
    "sms": sms,
}
