"""Steps of a booking by SMS: texts POSTed to the SMS hook as Africa's Talking would, replies read
from its stand-in."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from smiling_steps.demo.stage import Stage
from smiling_steps.demo.telegram_steps import WAIT_S, Person, booking_reference

_ids = itertools.count(1)


def new_sms_number() -> str:
    """A fresh Safaricom-looking number ending in 0, which pays in the Daraja simulator (unless a
    scenario queues another outcome)."""
    return f"25471{secrets.randbelow(1_000_000):06d}0"


def text(stage: Stage, person: Person, body: str, expect: str, within: float = WAIT_S) -> dict[str, Any]:
    """``person`` texts ``body`` to the shortcode; wait for a reply SMS containing ``expect``."""
    seen = len(stage.sms)
    stage.say(f"{person.who} SMS ->", body)
    stage.service.sms_in(person.phone, body, f"demo-{secrets.token_hex(4)}-{next(_ids)}")
    what = f"SMS with '{expect}' to {person.who}"
    return stage.wait(what, lambda: reply(stage, person, expect, seen), within)


def reply(stage: Stage, person: Person, expect: str, after: int = 0) -> dict[str, Any] | None:
    """The newest SMS to ``person`` after the first ``after`` seen, containing ``expect``."""
    for sms in reversed(stage.sms[after:]):
        if str(sms.get("to", "")).lstrip("+") == person.phone and expect in str(sms.get("message", "")):
            return sms
    return None


def book_by_sms(stage: Stage, client: Person, email: str) -> str:
    """BOOK, then the first choice at every step, the e-mail address and Confirm; the reference."""
    text(stage, client, "BOOK", "Who would you like to see?")
    text(stage, client, "1", "Which kind of session?")
    text(stage, client, "1", "Pick a day")
    text(stage, client, "1", "Pick a start time")
    text(stage, client, "1", "e-mail")
    text(stage, client, email, "Confirm?")
    sent = text(stage, client, "1", "sent")
    return booking_reference(str(sent.get("message")))
