"""The languages people are served in, and how dates and amounts read in each (Babel/CLDR).

Two languages: English (``en``) and Kiswahili (``sw``). The words live in the message
catalogues (:mod:`core.dialog.messages`, :mod:`core.dialog.messages_sw`) and the templates
(``core/templates/<kind>/…``, ``core/templates/sw/<kind>/…``); this module only formats:

* a day: ``Fri 04 Dec`` / ``Ijumaa 04 Des`` (CLDR's abbreviated names; Kiswahili weekday
  names have no shorter form people use, so CLDR keeps them whole);
* a time: ``11:00``, 24-hour, Nairobi time, in both languages. Kenyans read the 24-hour
  clock in writing; the Swahili clock ("saa tano asubuhi") is spoken, and writing it would
  make "11:00" mean 05:00 to half the readers, so it is not used;
* an amount: ``KES 2,500`` in both. CLDR's Kiswahili currency format is ``Ksh 2,500.00``;
  M-Pesa and Kenyan price lists write whole shillings, and the M-Pesa prompt says KES, so
  the code and CLDR's digit grouping are used without decimals.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.numbers import format_decimal

ENGLISH: Final = "en"
KISWAHILI: Final = "sw"
LANGUAGE_CODES: Final = (ENGLISH, KISWAHILI)
DEFAULT: Final = ENGLISH
NAIROBI = ZoneInfo("Africa/Nairobi")
# Babel locale per language ("en": "Sep", as the service always wrote; en_KE would say "Sept").
_LOCALES: Final = {ENGLISH: "en", KISWAHILI: "sw_KE"}
# The names people call each language by, as typed ("Kiswahili", "swahili", "english").
LANGUAGE_NAMES: Final = {ENGLISH: "English", KISWAHILI: "Kiswahili"}


def supported(lang: str | None) -> str:
    """``lang`` when it is one of ours, else the default (English)."""
    return lang if lang in LANGUAGE_CODES else DEFAULT


def from_telegram(language_code: str | None) -> str | None:
    """Telegram's ``language_code`` (IETF tag, e.g. ``sw``, ``sw-KE``, ``en-GB``): Kiswahili
    for ``sw…``, English for any other, None when Telegram sent none."""
    if not language_code:
        return None
    return KISWAHILI if language_code.lower().split("-")[0] == KISWAHILI else ENGLISH


def day(value: date, lang: str) -> str:
    """``Fri 04 Dec`` / ``Ijumaa 04 Des``."""
    return format_date(value, "EEE dd MMM", locale=_LOCALES[supported(lang)])


def day_with_year(value: date, lang: str) -> str:
    """``Fri 04 Dec 2026`` / ``Ijumaa 04 Des 2026``."""
    return format_date(value, "EEE dd MMM y", locale=_LOCALES[supported(lang)])


def moment(value: datetime, lang: str, *, year: bool = False, zone: bool = False) -> str:
    """A stored UTC time in Nairobi: ``Fri 04 Dec, 11:00`` (``year``: ``Fri 04 Dec 2026, 11:00``;
    ``zone``: `` EAT`` after it, the same abbreviation in both languages)."""
    local = value.astimezone(NAIROBI)
    shown = day_with_year(local.date(), lang) if year else day(local.date(), lang)
    text = f"{shown}, {local:%H:%M}"
    return f"{text} EAT" if zone else text


def amount(kes: int, lang: str) -> str:
    """``KES 2,500`` (whole shillings, CLDR digit grouping of the language)."""
    return f"KES {format_decimal(kes, locale=_LOCALES[supported(lang)])}"
