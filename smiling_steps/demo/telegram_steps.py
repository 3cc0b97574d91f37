"""Steps of a Telegram booking, acted through the stand-in's driver API and checked in the chats."""

from __future__ import annotations

import re
from dataclasses import dataclass

from smiling_steps.demo.stage import Message, Stage, buttons
from smiling_steps.demo.transcript import StepFailed

WAIT_S = 15.0
REFERENCE = re.compile(r"SS-[A-Z0-9]{4,}")


@dataclass(frozen=True)
class Person:
    """Someone with a phone in the simulation: a Telegram user id and an M-Pesa number."""

    user_id: int
    who: str
    phone: str


def send(stage: Stage, person: Person, text: str, expect: str, within: float = WAIT_S) -> Message:
    """``person`` sends ``text`` (a /command or a message); wait for a reply containing ``expect``."""
    since = stage.snapshot(person.user_id)
    stage.say(f"{person.who} -> bot", text)
    if text.startswith("/"):
        stage.service.command(person.user_id, text[1:])
    else:
        stage.service.text(person.user_id, text)
    return _reply(stage, person, expect, since, within)


def press(stage: Stage, person: Person, label: str, expect: str, within: float = WAIT_S) -> Message:
    """``person`` presses the inline button ``label`` (newest offering it); wait for ``expect``."""
    since = stage.snapshot(person.user_id)
    stage.say(f"{person.who} -> bot", f"[presses {label}]")
    stage.service.press(person.user_id, label)
    return _reply(stage, person, expect, since, within)


def tap(stage: Stage, person: Person, label: str, expect: str, within: float = WAIT_S) -> Message:
    """``person`` taps the reply-keyboard button ``label``; wait for ``expect``."""
    since = stage.snapshot(person.user_id)
    stage.say(f"{person.who} -> bot", f"[taps {label}]")
    stage.service.tap(person.user_id, label)
    return _reply(stage, person, expect, since, within)


def _reply(stage: Stage, person: Person, expect: str, since: set[tuple[int, str]], within: float) -> Message:
    what = f"'{expect}' for {person.who}"
    return stage.wait(what, lambda: stage.find(person.user_id, expect, since), within)


def first_button(message: Message, what: str) -> str:
    labels = buttons(message)
    if not labels:
        raise StepFailed(f"no {what} offered")
    return labels[0]


def request_booking(stage: Stage, client: Person, email: str) -> tuple[str, str]:
    """/book, the top practitioner, the first type, day and time, e-mail, Confirm; (name, reference)."""
    ask = send(stage, client, "/book", "Who would you like to see?")
    practitioner = first_button(ask, "practitioner")
    kinds = press(stage, client, practitioner, "Which kind of session")
    days = press(stage, client, first_button(kinds, "session type"), "Pick a day")
    times = press(stage, client, first_button(days, "day"), "Pick a start time")
    press(stage, client, first_button(times, "start time"), "e-mail")
    send(stage, client, email, "Please check your request")
    sent = press(stage, client, "Confirm", "Request sent")
    return practitioner, booking_reference(sent.get("text") or "")


def booking_reference(text: str) -> str:
    found = REFERENCE.search(text)
    if not found:
        raise StepFailed(f"no booking reference in {text[:80]!r}")
    return found.group(0)


def approve(stage: Stage, practitioner: Person, reference: str) -> None:
    """The practitioner sees this booking's request in their chat and approves it."""
    request = stage.wait(f"request {reference} in {practitioner.who}'s chat",
                         lambda: stage.find(practitioner.user_id, f"New booking request ({reference})"))
    stage.say(f"{practitioner.who} -> bot", "[presses Approve]")
    stage.service.press(practitioner.user_id, "Approve", request["message_id"])
    stage.wait(f"'Approved {reference}'", lambda: stage.find(practitioner.user_id, f"Approved {reference}"))


def start_payment(stage: Stage, client: Person) -> None:
    """Pay with M-Pesa, then share the Telegram number as the M-Pesa number."""
    press(stage, client, "Pay with M-Pesa", "M-Pesa number")
    tap(stage, client, "Share my phone number", "M-Pesa")
