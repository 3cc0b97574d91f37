"""Option values: short ASCII strings, ``v1:`` first, at most 64 bytes (Telegram callback data).

Two kinds:

* **Actions** stand on their own and are re-checked against the database whenever they
  arrive, however old the message: ``v1:book``, ``v1:my``, ``v1:help``,
  ``v1:pay:<booking id>``, ``v1:chphone:<booking id>``, ``v1:cxl:<booking id>``,
  ``v1:approve:<booking id>``, ``v1:decline:<booking id>``, ``v1:ts:<today|upcoming|all>``,
  ``v1:lang:<en|sw>``, ``v1:rs:<booking id>`` (reschedule), ``v1:rsok:<request id>`` /
  ``v1:rsno:<request id>`` (the practitioner approves / declines a move).
* **Menu choices** belong to one menu of one conversation and carry that menu's random
  token: ``v1:<kind>:<token>:<argument>``, e.g. ``v1:tm:k3Qz:202406030700`` (``pn`` confirms a
  number typed outside the phone step: ``yes`` / ``no``; ``aw``/``ar``/``ak`` are a practitioner's
  time-off menu). A choice whose
  token is not the conversation's current one is stale and does nothing.

The unprefixed ``pay:<id>``, ``approve:<id>`` and ``decline:<id>`` (the notification
templates' default buttons) are read as their ``v1:`` forms.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from core.dialog.types import OPTION_VALUE_MAX_BYTES

PREFIX = "v1"

# Actions.
BOOK, MY, HELP = "book", "my", "help"
PAY, CHANGE_PHONE, CANCEL_BOOKING = "pay", "chphone", "cxl"
APPROVE, DECLINE, SESSIONS = "approve", "decline", "ts"
LANGUAGE = "lang"  # v1:lang:<en|sw>: write to me in this language from now on
# Rescheduling: the client's "Reschedule" (booking id); the practitioner's answer (request id).
RESCHEDULE, RESCHEDULE_APPROVE, RESCHEDULE_DECLINE = "rs", "rsok", "rsno"
ACTIONS = frozenset(
    {BOOK, MY, HELP, PAY, CHANGE_PHONE, CANCEL_BOOKING, APPROVE, DECLINE, SESSIONS, LANGUAGE,
     RESCHEDULE, RESCHEDULE_APPROVE, RESCHEDULE_DECLINE}
)
LEGACY_ACTIONS = frozenset({PAY, APPROVE, DECLINE})

# Menu choices.
THERAPIST, SESSION_TYPE, DAY, TIME, PAGE = "th", "st", "dy", "tm", "pg"
EMAIL, SUMMARY, PHONE, CANCEL_YES, CANCEL_NO = "em", "ok", "ph", "cy", "cn"
PAY_NUMBER = "pn"  # pay from a number typed outside the phone step: yes / no
MOVE = "mv"  # confirm a reschedule: yes / no
# A practitioner's time off: block days (``20261224`` or ``20261224-20261226``), remove a block
# (its id), and keep the booked sessions when blocking over them (``yes`` / ``no``).
AWAY_DAYS, AWAY_REMOVE, AWAY_KEEP = "aw", "ar", "ak"
MENU_KINDS = frozenset(
    {THERAPIST, SESSION_TYPE, DAY, TIME, PAGE, EMAIL, SUMMARY, PHONE, CANCEL_YES, CANCEL_NO, PAY_NUMBER, MOVE}
    | {AWAY_DAYS, AWAY_REMOVE, AWAY_KEEP}
)

_TOKEN_ALPHABET = string.ascii_letters + string.digits
_ARG_CHARS = frozenset(string.ascii_letters + string.digits + "-_.+@")


@dataclass(frozen=True)
class Choice:
    """A parsed option value; ``token`` is None for actions."""

    kind: str
    arg: str = ""
    token: str | None = None

    @property
    def is_action(self) -> bool:
        return self.token is None

    def int_arg(self) -> int | None:
        """The argument as a positive id, or None."""
        return int(self.arg) if self.arg.isdigit() and len(self.arg) < 12 else None


def new_token() -> str:
    """A fresh menu token (4 characters)."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(4))


def action(kind: str, arg: str | int = "") -> str:
    """``v1:<kind>[:<arg>]``."""
    if kind not in ACTIONS:
        raise ValueError(f"unknown action {kind!r}")
    return _fit(f"{PREFIX}:{kind}" + (f":{arg}" if arg != "" else ""))


def pay_value(booking_id: int) -> str:
    """``v1:pay:<booking id>``: the "Pay with M-Pesa" / "Retry payment" button of a booking
    (built here only; the chat, the progress messages and the notifications use it)."""
    return action(PAY, booking_id)


def menu(kind: str, token: str, arg: str | int) -> str:
    """``v1:<kind>:<token>:<arg>``."""
    if kind not in MENU_KINDS:
        raise ValueError(f"unknown menu choice {kind!r}")
    return _fit(f"{PREFIX}:{kind}:{token}:{arg}")


def _fit(value: str) -> str:
    if len(value.encode()) > OPTION_VALUE_MAX_BYTES:
        raise ValueError(f"option value too long: {value!r}")
    return value


def parse(value: object) -> Choice | None:
    """The Choice an option value stands for, or None when it is not one of ours."""
    if not isinstance(value, str) or not value or len(value.encode()) > OPTION_VALUE_MAX_BYTES:
        return None
    parts = value.strip().split(":")
    if parts[0] != PREFIX:
        if len(parts) == 2 and parts[0] in LEGACY_ACTIONS and parts[1].isdigit():
            return Choice(parts[0], parts[1])
        return None
    parts = parts[1:]
    if not parts or any(not p or not set(p) <= _ARG_CHARS for p in parts):
        return None
    kind = parts[0]
    if kind in ACTIONS and len(parts) <= 2:
        return Choice(kind, parts[1] if len(parts) == 2 else "")
    if kind in MENU_KINDS and len(parts) == 3:
        return Choice(kind, parts[2], parts[1])
    return None
