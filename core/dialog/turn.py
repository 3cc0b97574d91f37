"""One turn of the conversation: what came in, the state it found, and what to do about it.

Handlers are ``async def handler(turn, …) -> Outcome``. An Outcome names the replies and
the next step/data. When the turn has a side effect (send a booking request, push an
STK prompt, approve…), the handler returns ``Outcome(effect=…)`` instead: the engine first
*claims* the turn by saving ``step``/``data`` (compare-and-set on the state's version),
and runs the effect only if that save won, so two copies of one message (double tap,
two processes) can never both act. The effect returns the final Outcome.

A turn knows the runtime and a :class:`PaymentPort`, not the engine that made it, so the
flows and the engine depend on this module and it depends on neither.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from core.dialog import messages, values
from core.dialog.sms import TEL
from core.dialog.store import IDLE, Snapshot
from core.dialog.types import Inbound, Option, Reply
from core.runtime import Runtime
from core.services.booking.language import remember_first_language
from core.services.booking.lifecycle import find_or_create_client
from core.services.booking.queries import therapist_for_user
from core.services.booking.types import ClientRef, TherapistRef
from core.services.payments.initiate import PaymentView

# Conversation steps (dialog_states.step).
THERAPIST = "therapist"
SESSION_TYPE = "session_type"
DAY = "day"
TIME = "time"
EMAIL = "email"
CONFIRM = "confirm"
PHONE = "phone"
PAY_NUMBER = "pay_number"  # "pay from this number?" after a number typed while idle
CANCEL = "cancel_booking"
MOVE = "move_booking"  # confirm moving a booking to the chosen time (core/dialog/reschedule_flow.py)
AWAY = "away"  # a practitioner's time-off menu: block days, remove a block, or type a date
AWAY_CONFIRM = "away_confirm"  # blocking over booked sessions: keep them and block, or not
STEPS = (
    *(IDLE, THERAPIST, SESSION_TYPE, DAY, TIME, EMAIL, CONFIRM, PHONE, PAY_NUMBER, CANCEL, MOVE),
    *(AWAY, AWAY_CONFIRM),
)

# Keys of the state data that belong to the engine, not to a flow.
CHOICES = "choices"  # [[value, label], ...]: what a bare number picks (options, then phone suggestions)
PROMPT = "prompt"  # the text of the last menu, shown again after input that fits no choice
MENU = "menu"  # the current menu token

Effect = Callable[[], Awaitable["Outcome"]]


class PaymentPort(Protocol):
    """What the pay flow asks of payments (``core.services.payments.PaymentService`` is one)."""

    async def initiate_payment(self, booking_id: int, client_id: int, phone: str) -> PaymentView: ...

    async def latest_for_booking(self, booking_id: int) -> PaymentView | None: ...

    async def active_environment(self) -> str: ...


@dataclass
class Outcome:
    """Replies plus the next state; ``effect`` runs after the state was claimed."""

    replies: list[Reply]
    step: str = IDLE
    data: dict[str, Any] = field(default_factory=dict)
    effect: Effect | None = None
    keep_choices: bool = False  # the menu on screen is still the current one


@dataclass
class Turn:
    """One input being answered, with lazy look-ups of who is writing."""

    runtime: Runtime
    payments: PaymentPort
    inbound: Inbound
    snap: Snapshot
    lang: str = messages.DEFAULT_LANGUAGE
    lang_stored: bool = True  # False: ``lang`` was guessed; the client's first look-up stores it
    _client: ClientRef | None = None
    _therapist: TherapistRef | None = None
    _therapist_loaded: bool = False
    # The mode a payment started now would use (an admin may switch it on the settings page);
    # None: the mode the process booted in.
    active_test_mode: bool | None = None

    # -- context -----------------------------------------------------------------------------
    @property
    def channel(self) -> str:
        return self.inbound.channel

    @property
    def sms(self) -> bool:
        return self.inbound.channel == "sms"

    @property
    def step(self) -> str:
        return self.snap.step

    @property
    def data(self) -> dict[str, Any]:
        return self.snap.data

    @property
    def test_mode(self) -> bool:
        if self.active_test_mode is not None:
            return self.active_test_mode
        return bool(self.runtime.settings.test_mode)

    async def client(self) -> ClientRef:
        """The client behind this chat user (created on first use)."""
        if self._client is None:
            self._client = await find_or_create_client(
                self.runtime,
                self.inbound.channel,
                self.inbound.user_key,
                self.inbound.display_name,
                self.inbound.contact_phone,
            )
            if not self.lang_stored:
                await remember_first_language(self.runtime, self._client.id, self.lang)
                self.lang_stored = True
        return self._client

    async def therapist(self) -> TherapistRef | None:
        """The practitioner behind this chat user, if it is one."""
        if not self._therapist_loaded:
            self._therapist = await therapist_for_user(
                self.runtime, self.channel, self.inbound.user_key
            )
            self._therapist_loaded = True
            if self._therapist is not None and not self.lang_stored:
                await remember_first_language(self.runtime, self._therapist.id, self.lang, therapist=True)
                self.lang_stored = True
        return self._therapist

    # -- wording -----------------------------------------------------------------------------
    def say(self, key: str, **fields: object) -> str:
        return messages.say(key, self.channel, self.lang, **fields)

    def label(self, key: str) -> str:
        return messages.label(key, self.lang)

    def when(self, moment: datetime) -> str:
        return messages.when(moment, self.lang, channel=self.channel)

    def price(self, amount_kes: int) -> str:
        return messages.price(amount_kes, self.lang)

    def reply(self, key: str, **fields: object) -> Reply:
        return Reply(text=self.say(key, **fields))

    def paymark(self, text: str) -> str:
        """Property 78: every payment message carries TEST MODE in sandbox/simulator mode."""
        return self.say("test_mark") + text if self.test_mode else text

    # -- building outcomes -------------------------------------------------------------------
    def flow_data(self, **updates: Any) -> dict[str, Any]:
        """The flow's data (engine keys dropped) with ``updates``."""
        kept = {k: v for k, v in self.data.items() if k not in (CHOICES, PROMPT, MENU)}
        kept.update(updates)
        return kept

    def stay(self, *replies: Reply) -> Outcome:
        """Answer without moving: same step, same data, the menu on screen stays valid."""
        return Outcome(list(replies), self.step, dict(self.data), keep_choices=True)

    def choices(self) -> list[tuple[str, str]]:
        """The numbered choices on screen: ``(value, label)``."""
        raw = self.data.get(CHOICES)
        if not isinstance(raw, list):
            return []
        return [(str(i[0]), str(i[1])) for i in raw if isinstance(i, list | tuple) and len(i) == 2]

    def reprompt(self, lead: str, *, compact: bool = False, payment: bool = False) -> Outcome:
        """Say ``lead`` and show the current step's menu again, with the same numbers.

        ``compact``: one message (the lead text carrying the menu) instead of lead + prompt.
        """
        lead_reply = Reply(text=self.paymark(lead) if payment else lead)
        prompt = self.data.get(PROMPT)
        if self.step == IDLE:
            return self.main_menu(self.say("menu"), before=[lead_reply])
        if not prompt:
            return self.stay(lead_reply)
        choices = self.choices()
        options = tuple(Option(label, value) for value, label in choices if not value.startswith(TEL))
        phones = tuple(value[len(TEL) :] for value, _ in choices if value.startswith(TEL))
        again = Reply(
            text=lead_reply.text if compact else str(prompt),
            options=options,
            ask_phone=self.step == PHONE,
            phone_suggestions=phones,
            says_typing=self.step == PHONE and not compact,  # the phone step's own prompt says it
        )
        return self.stay(again) if compact else self.stay(lead_reply, again)

    def idle(self, *replies: Reply) -> Outcome:
        return Outcome(list(replies), IDLE, {})

    def menu(
        self,
        step: str,
        text: str,
        choices: Sequence[tuple[str, str, str | int]],
        *,
        data: dict[str, Any] | None = None,
        before: Sequence[Reply] = (),
        edit: bool = False,
    ) -> Outcome:
        """Move to ``step`` showing ``text`` with menu choices ``(label, kind, argument)``."""
        token = values.new_token()
        options = tuple(Option(label, values.menu(kind, token, arg)) for label, kind, arg in choices)
        new_data = dict(data if data is not None else self.flow_data())
        new_data[MENU] = token
        new_data[PROMPT] = text
        replies = [*before, Reply(text=text, options=options)]
        if edit and self.inbound.option is not None:
            replies[0] = replace(replies[0], edit_previous=True)
        return Outcome(replies, step, new_data)

    def main_menu(self, text: str, *, before: Sequence[Reply] = ()) -> Outcome:
        """Idle, offering Book / My sessions (/ Help on Telegram)."""
        options = [
            Option(self.label("book"), values.action(values.BOOK)),
            Option(self.label("my"), values.action(values.MY)),
        ]
        if not self.sms:
            options.append(Option(self.label("help"), values.action(values.HELP)))
        return Outcome([*before, Reply(text=text, options=tuple(options))], IDLE, {})
