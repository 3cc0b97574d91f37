"""Choosing the language: ``/language`` (Telegram buttons), ``LUGHA`` / ``LANGUAGE`` (SMS), at any step.

``/language sw``, ``LUGHA EN``, ``SWAHILI``, ``KISWAHILI`` and ``ENGLISH`` set it at once.
A bare ``/language`` on Telegram shows both languages as buttons (each named in itself); a
bare ``LUGHA`` / ``LANGUAGE`` on SMS switches to the other language (there are two, and a
numbered menu would replace the numbers of the step the client is at).

The choice is stored for the practitioner or client (every later message uses it) and
answered in the new language. Mid-conversation the step and its choices stay as they were:
the earlier buttons and numbers still work, so nobody loses a half-made booking.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core import i18n
from core.dialog import therapist_flow, values
from core.dialog.store import IDLE
from core.dialog.turn import Outcome, Turn
from core.dialog.types import Inbound, Option, Reply
from core.runtime import Runtime
from core.services.booking.language import set_language, stored_language

# What people type after LUGHA / LANGUAGE / /language, or on its own.
_NAMES = {
    "en": i18n.ENGLISH, "eng": i18n.ENGLISH, "english": i18n.ENGLISH, "kiingereza": i18n.ENGLISH,
    "sw": i18n.KISWAHILI, "swa": i18n.KISWAHILI, "swahili": i18n.KISWAHILI, "kiswahili": i18n.KISWAHILI,
}


async def resolve(runtime: Runtime, inbound: Inbound) -> tuple[str, bool]:
    """The language to answer in, and whether it is the person's stored choice.

    Stored choice first; else Telegram's ``language_code`` (sw → Kiswahili, any other →
    English); else (SMS) the practice's DEFAULT_LANGUAGE.
    """
    stored = await stored_language(runtime, inbound.channel, inbound.user_key)
    if stored is not None:
        return stored, True
    telegram = inbound.channel == "telegram"
    guessed = i18n.from_telegram(inbound.extras.get("language_code")) if telegram else None
    default = getattr(runtime.settings, "default_language", i18n.DEFAULT)
    return i18n.supported(guessed or default), False


def language_named(text: str) -> str | None:
    """The language code ``text`` names ("SW", "Kiswahili", "english"), or None."""
    return _NAMES.get(text.strip(" .!?").casefold())


async def command(turn: Turn, arg: str) -> Outcome:
    """``/language [name]``, ``LUGHA [name]``, ``LANGUAGE [name]``."""
    wanted = language_named(arg) if arg else None
    if wanted is not None:
        return await switch(turn, wanted)
    if turn.sms:
        other = i18n.KISWAHILI if turn.lang == i18n.ENGLISH else i18n.ENGLISH
        return await switch(turn, other)
    options = tuple(
        Option(turn.label(f"lang_{code}"), values.action(values.LANGUAGE, code))
        for code in i18n.LANGUAGE_CODES
    )
    return turn.stay(Reply(text=turn.say("language_menu"), options=options))


def named(code: str) -> Callable[[Turn, str], Awaitable[Outcome]]:
    """``SWAHILI`` / ``ENGLISH`` typed alone."""

    async def run(turn: Turn, _arg: str) -> Outcome:
        return await switch(turn, code)

    return run


async def switch(turn: Turn, code: str) -> Outcome:
    """Store ``code`` for whoever is writing and answer in it."""
    if code not in i18n.LANGUAGE_CODES:
        return turn.reprompt(turn.say("stale_option"))
    await set_language(
        turn.runtime, turn.channel, turn.inbound.user_key, code, display_name=turn.inbound.display_name
    )
    turn.lang, turn.lang_stored = code, True
    done = turn.reply("language_set")
    if turn.step != IDLE:
        return turn.stay(done, turn.reply("help_step"))
    therapist = await turn.therapist()
    if therapist is not None:
        return await therapist_flow.dashboard(turn, therapist, before=[done])
    return turn.main_menu(turn.say("menu"), before=[done])

