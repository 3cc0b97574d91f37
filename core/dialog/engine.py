"""The conversation engine: one ``Inbound`` in, a list of ``Reply`` out, whatever the channel.

State per (channel, user) lives in ``dialog_states`` (:mod:`core.dialog.store`), so a
conversation survives restarts and may continue on another process. Each turn:

1. load the state (a step idle for 30 minutes has expired and starts over);
2. decide what the input means: an option value, a bare number picking one of the last
   numbered choices, a keyword or /command, a button label typed out, or free text for the
   current step;
3. save the new state with a compare-and-set on its version; if another turn won, re-read
   and decide again once, else answer "please try again";
4. a turn with a side effect (booking request, STK push, approval, cancellation) claims
   the state first and acts only if the claim won.

Any unexpected error is logged with ids only and answered with a generic apology: the
engine never raises and always replies. Wording comes from :mod:`core.dialog.messages`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from core import i18n
from core.config import is_test_environment
from core.dialog import (
    booking_flow,
    calendar_flow,
    client_flow,
    language_flow,
    messages,
    pay_flow,
    reschedule_flow,
    therapist_flow,
    values,
)
from core.dialog.sms import TEL, numbered_choices
from core.dialog.store import IDLE, IDLE_TIMEOUT, DialogStore, Snapshot
from core.dialog.turn import CHOICES, MENU, PAY_NUMBER, PHONE, PROMPT, Outcome, PaymentPort, Turn
from core.dialog.types import Inbound, Option, Reply
from core.runtime import Runtime
from core.templates.gsm import discreet

log = logging.getLogger(__name__)

TRIES = 2  # a turn that loses the compare-and-set is decided once more on fresh state
_NUMBER = re.compile(r"^[1-9]\d{0,2}$")  # "07…" is the start of a phone number, not a choice
_CODE_REPLY = re.compile(r"^([ad])[\s\-]*([2-9a-z]{4,8})$", re.IGNORECASE)


# (turn, argument); an answer of None means "not a command for this user": the input is read as text.
Command = Callable[[Turn, str], Awaitable[Outcome | None]]
Action = Callable[[Turn, values.Choice], Awaitable[Outcome]]


@dataclass(frozen=True)
class _Word:
    """What a command word does, and whether it works as "/word", as the bare word, or both."""

    run: Command
    slash: bool = True
    typed: bool = True
    typed_with_arg: bool = False  # typed "AWAY 24 DEC" too, not only the bare word (SMS)


class DialogEngine:
    """Handles chat input for Telegram and SMS alike."""

    def __init__(
        self, runtime: Runtime, payments: PaymentPort, *, idle_timeout: timedelta = IDLE_TIMEOUT
    ) -> None:
        self.runtime = runtime
        self.payments = payments
        self.store = DialogStore(runtime, idle_timeout=idle_timeout)

    async def handle(self, inbound: Inbound) -> list[Reply]:
        """Answer one message, button press or shared contact; never raises, never silent."""
        channel = getattr(inbound, "channel", "telegram")
        lang, stored = i18n.DEFAULT, True
        try:
            lang, stored = await language_flow.resolve(self.runtime, inbound)
            replies = await self._handle(inbound, lang, stored)
        except Exception as exc:
            log.error(
                "dialog turn failed",
                extra={"channel": channel, "error_type": type(exc).__name__},
                exc_info=True,
            )
            replies = [Reply(text=messages.say("error", channel, lang), lang=lang)]
        if not replies:
            replies = [Reply(text=messages.say("help", channel, lang), lang=lang)]
        return replies

    # -- the turn loop -----------------------------------------------------------------------

    async def _handle(self, inbound: Inbound, lang: str, stored: bool) -> list[Reply]:
        for _ in range(TRIES):
            snap = await self.store.load(inbound.channel, inbound.user_key)
            # TEST MODE marks and the sandbox test number follow the mode payments use now.
            test_mode = is_test_environment(await self.payments.active_environment())
            turn = Turn(
                self.runtime,
                self.payments,
                inbound,
                snap,
                lang=lang,
                lang_stored=stored,
                active_test_mode=test_mode,
            )
            outcome = await self._decide(turn)
            claimed = await self.store.save(
                snap, outcome.step, _state_data(snap, outcome, [] if outcome.effect else outcome.replies)
            )
            if claimed is None:
                continue  # another turn changed the conversation first: decide again
            if outcome.effect is None:
                return self._finish(turn, outcome.replies, outcome.step)
            final = await outcome.effect()
            saved = await self.store.save(claimed, final.step, _state_data(claimed, final, final.replies))
            if saved is None:
                log.info("dialog state moved on during an effect", extra={"dialog": claimed.row_id})
            return self._finish(turn, final.replies, final.step)
        return [Reply(text=messages.say("try_again", inbound.channel, lang), lang=lang)]

    def _finish(self, turn: Turn, replies: list[Reply], step: str) -> list[Reply]:
        if turn.step == PHONE and step != PHONE and replies and not turn.sms:
            # Leaving the phone step: the "Share my phone number" keyboard goes away.
            plain = next((i for i, r in enumerate(replies) if not r.options), 0)
            replies = list(replies)
            replies[plain] = replace(replies[plain], remove_keyboard=True)
        if turn.sms:  # user data (names) must not name the kind of care either
            replies = [
                replace(
                    r,
                    text=discreet(r.text),
                    options=tuple(Option(discreet(o.label), o.value) for o in r.options),
                )
                for r in replies
            ]
        return [replace(r, lang=turn.lang) for r in replies]

    # -- what the input means ------------------------------------------------------------------

    async def _decide(self, turn: Turn) -> Outcome:
        inbound = turn.inbound
        text = " ".join((inbound.text or "").split())
        if inbound.option is not None:
            return await _on_value(turn, inbound.option)
        if inbound.contact_phone:
            return await _on_contact(turn, inbound.contact_phone)
        choices = turn.choices()
        if _NUMBER.match(text):
            if choices:
                number = int(text)
                if 1 <= number <= len(choices):
                    return await _on_value(turn, choices[number - 1][0])
                return turn.stay(turn.reply("choose_number", count=len(choices)))
            if turn.snap.expired:
                return await _restart(turn)
        command = _command(text)
        if command is not None:
            run, arg = command
            outcome = await run(turn, arg)
            if outcome is not None:
                return outcome
        code = _CODE_REPLY.match(text)
        if code and await turn.therapist() is not None:
            return await therapist_flow.decide_by_code(
                turn, code.group(2), approve=code.group(1).lower() == "a"
            )
        folded = text.casefold()
        for value, label in choices:
            if folded and label.casefold() == folded:
                return await _on_value(turn, value)
        return await _on_text(turn, text)


# -- what an option value, a shared contact or free text means ---------------------------------------


async def _on_value(turn: Turn, value: str) -> Outcome:
    if value.startswith(TEL):
        if turn.step == PHONE:
            return await pay_flow.on_phone(turn, value[len(TEL) :])
        return _stale(turn)
    choice = values.parse(value)
    if choice is None:
        return _stale(turn)
    if choice.is_action:
        action = _ACTIONS.get(choice.kind, _therapist_sessions)
        return await action(turn, choice)
    if choice.token != turn.data.get(MENU):
        if turn.snap.expired:
            return await _restart(turn)
        return _stale(turn)
    outcome = (
        await reschedule_flow.on_choice(turn, choice)  # before the booking flow: a move's time
        or await booking_flow.on_choice(turn, choice)
        or client_flow.on_choice(turn, choice)
        or await pay_flow.on_choice(turn, choice)
        or await calendar_flow.on_choice(turn, choice)
    )
    return outcome or _stale(turn)


async def _on_contact(turn: Turn, phone: str) -> Outcome:
    if turn.step == PHONE:
        return await pay_flow.on_phone(turn, phone)
    if turn.step in (IDLE, PAY_NUMBER):  # one booking to pay: "pay with this number"
        paying = await pay_flow.typed_number(turn, phone)
        if paying is not None:
            return paying
    await turn.client()  # fills the client's phone if it was unknown
    return turn.stay(turn.reply("phone_noted"))


async def _on_text(turn: Turn, text: str) -> Outcome:
    if turn.step == PHONE:
        return await pay_flow.on_phone(turn, text)
    outcome = await booking_flow.on_text(turn, text) or await calendar_flow.on_text(turn, text)
    if outcome is not None:
        return outcome
    if turn.step in (IDLE, PAY_NUMBER):  # a number typed with one booking to pay: pay with it
        outcome = await pay_flow.typed_number(turn, text)
        if outcome is not None:
            return outcome
    if turn.step != IDLE:
        return _reprompt(turn, "help_step")
    if turn.snap.expired:
        return await _restart(turn)
    therapist = await turn.therapist()
    if therapist is not None:  # on SMS the numbered choices and request cards say it all
        before = [] if turn.sms else [therapist_flow.help_reply(turn)]
        return await therapist_flow.dashboard(turn, therapist, before=before)
    if turn.sms and turn.snap.row_id is None:  # an SMS user's first message starts booking
        return await booking_flow.start(turn, before=[turn.reply("welcome")])
    return turn.main_menu(turn.say("menu"), before=[turn.reply("help")])


# -- actions (buttons that stand on their own) ----------------------------------------------------------


async def _decide_request(turn: Turn, choice: values.Choice) -> Outcome:
    return await therapist_flow.decide(turn, choice.int_arg(), approve=choice.kind == values.APPROVE)


async def _decide_move(turn: Turn, choice: values.Choice) -> Outcome:
    approve = choice.kind == values.RESCHEDULE_APPROVE
    return await reschedule_flow.decide(turn, choice.int_arg(), approve=approve)


async def _therapist_sessions(turn: Turn, choice: values.Choice) -> Outcome:
    """``v1:ts:<scope>`` from a practitioner; from anyone else it is stale (so is an unknown action)."""
    therapist = await turn.therapist()
    if choice.kind == values.SESSIONS and therapist is not None:
        return await therapist_flow.sessions(turn, therapist, choice.arg)
    return _stale(turn)


_ACTIONS: dict[str, Action] = {
    values.BOOK: lambda turn, _: booking_flow.start(turn),
    values.MY: lambda turn, _: client_flow.my_sessions(turn),
    values.HELP: lambda turn, _: _help(turn),
    values.PAY: lambda turn, choice: pay_flow.start(turn, choice.int_arg()),
    values.CHANGE_PHONE: lambda turn, choice: pay_flow.change_phone(turn, choice.int_arg()),
    values.CANCEL_BOOKING: lambda turn, choice: client_flow.ask_cancel(turn, choice.int_arg()),
    values.APPROVE: _decide_request,
    values.DECLINE: _decide_request,
    values.SESSIONS: _therapist_sessions,
    values.LANGUAGE: lambda turn, choice: language_flow.switch(turn, choice.arg),
    values.RESCHEDULE: lambda turn, choice: reschedule_flow.start(turn, choice.int_arg()),
    values.RESCHEDULE_APPROVE: _decide_move,
    values.RESCHEDULE_DECLINE: _decide_move,
}


# -- commands and keywords ("/book", "BOOK", "my sessions") ---------------------------------------------


async def _start(turn: Turn, arg: str) -> Outcome:
    if arg.lower() == "book":
        return await booking_flow.start(turn)
    if arg and turn.channel == "telegram":
        linked = await therapist_flow.link(turn, arg)
        if linked is not None:
            return linked
    therapist = await turn.therapist()
    if therapist is not None:
        return await therapist_flow.dashboard(turn, therapist)
    if arg:
        return turn.main_menu(turn.say("menu"), before=[turn.reply("link_invalid")])
    if turn.sms:
        return await booking_flow.start(turn, before=[turn.reply("welcome")])
    return turn.main_menu(turn.say("menu"), before=[turn.reply("welcome")])


async def _stop(turn: Turn, _arg: str) -> Outcome:
    return turn.idle(turn.reply("stopped"))


def _sessions(scope: str, *, for_clients: bool) -> Command:
    """A practitioner's sessions in ``scope``; a client gets their own sessions or (None) nothing."""

    async def command(turn: Turn, _arg: str) -> Outcome | None:
        therapist = await turn.therapist()
        if therapist is not None:
            return await therapist_flow.sessions(turn, therapist, scope)
        if for_clients:
            return await client_flow.my_sessions(turn)
        return None  # a practitioner-only word from a client: treat as text

    return command


async def _reschedule_word(turn: Turn, _arg: str) -> Outcome | None:
    """SMS "R": move the session the client's last numbered choice was about (MY, then a number
    on its card: pay, cancel); else their one movable session; with several (or none) "my
    sessions", where "Reschedule" has a number. Not a command on Telegram or for practitioners."""
    if not turn.sms or await turn.therapist() is not None:
        return None
    focus = turn.data.get("booking_id")  # the pay and cancel steps keep the session they are about
    if focus:
        return await reschedule_flow.start(turn, int(focus))
    movable = await reschedule_flow.movable(turn)
    if len(movable) == 1:
        return await reschedule_flow.start(turn, movable[0])
    return await client_flow.my_sessions(turn)


_BOOK = _Word(lambda turn, _: booking_flow.start(turn))
_MY = _Word(lambda turn, _: client_flow.my_sessions(turn))
_HELP = _Word(lambda turn, _: _help(turn))
_STOP = _Word(_stop)
_PAY = _Word(lambda turn, _: pay_flow.start(turn, None, offer_choice=True))
_WORDS: dict[str, _Word] = {
    "start": _Word(_start),
    "dashboard": _Word(_start, typed=False),
    "book": _BOOK,
    "my": _MY,
    "r": _Word(_reschedule_word, slash=False),  # SMS: reschedule (core/dialog/reschedule_flow.py)
    "mysessions": _MY,
    "my sessions": _MY,  # typed only in effect: "/my sessions" is /my with an argument
    "pay": _PAY,
    "help": _HELP,
    "menu": _HELP,
    "stop": _STOP,
    "cancel": _STOP,
    "quit": _Word(_stop, slash=False),
    "exit": _Word(_stop, slash=False),
    "today": _Word(_sessions("today", for_clients=False)),
    "upcoming": _Word(_sessions("upcoming", for_clients=False)),
    "all": _Word(_sessions("all", for_clients=False)),
    "sessions": _Word(_sessions("all", for_clients=True)),
    # Kiswahili keywords: the same actions, whatever language the person is written to in.
    "miadi": _BOOK,
    "lipa": _PAY,
    "zangu": _MY,
    "msaada": _HELP,
    "acha": _STOP,
    # The language: /language, LUGHA, LANGUAGE (with or without a name), or the name alone.
    "language": _Word(language_flow.command, typed_with_arg=True),
    "lugha": _Word(language_flow.command, typed_with_arg=True),
    "english": _Word(language_flow.named(i18n.ENGLISH)),
    "swahili": _Word(language_flow.named(i18n.KISWAHILI)),
    "kiswahili": _Word(language_flow.named(i18n.KISWAHILI)),
    "hours": _Word(calendar_flow.hours_command, typed_with_arg=True),
    "away": _Word(calendar_flow.away_command, typed_with_arg=True),
}


def _command(text: str) -> tuple[Command, str] | None:
    """What "/book", "BOOK", " book\\n" or "/start <code>" asks for, with the argument.

    An unknown "/word" is a request for help; an unknown bare word is not a command. A few words
    (HOURS, AWAY) also take their argument when typed.
    """
    if text.startswith("/"):
        head, _, arg = text[1:].partition(" ")
        word = _WORDS.get(head.split("@", 1)[0].lower())
        return ((word.run if word and word.slash else _HELP.run), arg.strip())
    word = _WORDS.get(text.lower().strip(" .!?"))
    if word and word.typed:
        return word.run, ""
    head, _, arg = text.partition(" ")
    word = _WORDS.get(head.lower())
    return (word.run, arg.strip()) if word and word.typed_with_arg else None


# -- common answers ------------------------------------------------------------------------------------


async def _help(turn: Turn) -> Outcome:
    therapist = await turn.therapist()
    if turn.step != IDLE:
        return _reprompt(turn, "help")
    if therapist is not None:
        return await therapist_flow.dashboard(turn, therapist, before=[therapist_flow.help_reply(turn)])
    return turn.main_menu(turn.say("menu"), before=[turn.reply("help")])


async def _restart(turn: Turn) -> Outcome:
    expired = turn.reply("expired")
    if turn.sms:
        return await booking_flow.start(turn, before=[expired])
    return turn.main_menu(turn.say("menu"), before=[expired])


def _stale(turn: Turn) -> Outcome:
    return _reprompt(turn, "stale_option")


def _reprompt(turn: Turn, lead_key: str) -> Outcome:
    """Say ``lead_key`` and show the current step's menu again (same numbers)."""
    return turn.reprompt(turn.say(lead_key))


# -- helpers ------------------------------------------------------------------------------------------


def _state_data(before: Snapshot, outcome: Outcome, replies: list[Reply]) -> dict[str, Any]:
    """The data to store: the flow's data plus the numbered choices now on screen."""
    data = dict(outcome.data)
    shown = numbered_choices(replies)
    if shown:
        data[CHOICES] = [list(item) for item in shown]
    elif outcome.keep_choices and before.data.get(CHOICES):
        for key in (CHOICES, PROMPT, MENU):
            if key in before.data:
                data[key] = before.data[key]
    else:
        data.pop(CHOICES, None)
    return data
