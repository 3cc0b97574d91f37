"""What goes into and comes out of the conversation engine, whatever the channel.

Adapters (Telegram, SMS) turn their updates into ``Inbound`` and render ``Reply``
objects: options become inline buttons on Telegram and numbered lines on SMS.
Option values are short ASCII strings (<= 64 bytes with a ``v1:`` version prefix) so
they fit Telegram's callback data; the engine re-checks every value against the
database, so a stale or forged button can do no harm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Channel = Literal["telegram", "sms"]
OPTION_VALUE_MAX_BYTES = 64


@dataclass(frozen=True)
class Option:
    """A choice offered to the user: what they see and what comes back when chosen."""

    label: str
    value: str

    def __post_init__(self) -> None:
        if len(self.value.encode()) > OPTION_VALUE_MAX_BYTES:
            raise ValueError(f"option value longer than {OPTION_VALUE_MAX_BYTES} bytes: {self.value!r}")


@dataclass(frozen=True)
class Reply:
    """One message to the user.

    ``text`` is plain text (adapters escape it for HTML); ``options`` are choices;
    ``ask_phone`` asks for a phone number (Telegram: a reply keyboard with a
    "Share my phone number" button) with ``phone_suggestions`` as one-tap choices;
    ``remove_keyboard`` clears a reply keyboard; ``edit_previous`` replaces the
    message whose buttons were pressed instead of sending a new one; ``tag`` names
    the message kind (e.g. "payment_progress:<attempt id>") so adapters can find and
    edit it later; ``says_typing``: the text already tells the user they may type their
    number (Telegram then adds no "you can also type the number" note); ``lang``: the
    language the text is in (adapters write their own few words in it too).
    """

    text: str
    options: tuple[Option, ...] = ()
    ask_phone: bool = False
    phone_suggestions: tuple[str, ...] = ()
    remove_keyboard: bool = False
    edit_previous: bool = False
    tag: str | None = None
    says_typing: bool = False
    lang: str = "en"


@dataclass(frozen=True)
class Inbound:
    """One thing the user did: typed text, chose an option, or shared their contact."""

    channel: Channel
    user_key: str  # Telegram user id, or the MSISDN (2547XXXXXXXX) on SMS
    text: str | None = None
    option: str | None = None
    contact_phone: str | None = None  # only the sender's own contact (the adapter checks)
    display_name: str | None = None
    extras: dict[str, str] = field(default_factory=dict)
