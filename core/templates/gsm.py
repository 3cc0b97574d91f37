"""SMS text rules: GSM-7 only, segment counting, and discretion (no words naming the kind of care).

GSM 03.38 is the 7-bit alphabet every phone shows; a text that leaves it is sent as UCS-2,
which cuts a segment from 160 to 70 characters. Text that goes into an SMS is therefore
transliterated to GSM-7 (``é`` stays, ``ũ`` becomes ``u``, emoji become ``?``).

Discretion (DESIGN.md §4, §5): an SMS may be read by anyone holding the phone, so it never
contains "therapy", "therapist", "counselling", "mental" or "psych…" (nor, in Kiswahili,
"tiba" or "ushauri"). Our own wording never
does; :func:`discreet` also rewrites any word of user data (a name, a session-type name)
that contains one of those stems, so the rule holds whatever people type.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = "^{}\\[~]|€\f"  # each costs two septets (escape + character)
_BASIC = frozenset(GSM7_BASIC)
_EXTENDED = frozenset(GSM7_EXTENDED)

SINGLE_SEGMENT = 160
MULTIPART_SEGMENT = 153  # concatenated SMS lose 7 septets per part to the UDH

# English, then Kiswahili ("tiba": therapy/treatment, "ushauri" as in "ushauri nasaha":
# counselling). "akili" (mind) is not rewritten in user data: it is also a given name in
# Kenya; our own Kiswahili never uses it (tests/unit/test_languages.py).
FORBIDDEN_STEMS = ("therap", "counsel", "mental", "psych", "tiba", "ushauri")
_FORBIDDEN = re.compile("|".join(FORBIDDEN_STEMS), re.IGNORECASE)
_PERSON_SUFFIX = re.compile(r"(ist|ists|or|ors|er|ers)\W*$", re.IGNORECASE)

_REPLACEMENTS = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2026": "...", "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\t": " ",
    "\u2022": "-", "\u00b7": "-",
}


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM-7 basic or extension table."""
    return all(ch in _BASIC or ch in _EXTENDED for ch in text)


def septets(text: str) -> int:
    """Length of a GSM-7 text in septets (extension characters count twice)."""
    return sum(2 if ch in _EXTENDED else 1 for ch in text)


def segments(text: str) -> int:
    """How many SMS parts a GSM-7 text needs (1 up to 160 septets, then 153 per part)."""
    length = septets(text)
    if length <= SINGLE_SEGMENT:
        return 1
    return -(-length // MULTIPART_SEGMENT)


def to_gsm7(text: str) -> str:
    """Transliterate ``text`` into GSM-7: keep what fits, strip accents, replace the rest with ``?``."""
    out: list[str] = []
    for ch in text:
        if ch in _BASIC or ch in _EXTENDED:
            out.append(ch)
            continue
        if ch in _REPLACEMENTS:
            out.append(_REPLACEMENTS[ch])
            continue
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(" " if unicodedata.category(ch) in ("Zl", "Zp") else "")
            continue
        stripped = "".join(
            c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
        )
        if stripped and all(c in _BASIC or c in _EXTENDED for c in stripped):
            out.append(stripped)
        elif unicodedata.category(ch).startswith("Z"):
            out.append(" ")
        else:
            out.append("?")
    return "".join(out)


def discreet(text: str, *, keep: Iterable[str] = ()) -> str:
    """Rewrite every word containing a forbidden stem to a neutral one.

    A "word" is a maximal run of non-space characters, so the replacement can never join
    with its neighbours into a new forbidden word. Words listed in ``keep`` (the join link,
    which must stay clickable) are left alone.
    """
    protected = {k for k in keep if k}

    def _neutral(match: re.Match[str]) -> str:
        word = match.group(0)
        if word in protected or not _FORBIDDEN.search(word):
            return word
        return "practitioner" if _PERSON_SUFFIX.search(word) else "session"

    return re.sub(r"\S+", _neutral, text)


def contains_forbidden(text: str) -> bool:
    """True when ``text`` contains any forbidden stem (case-insensitive, anywhere)."""
    return _FORBIDDEN.search(text) is not None


def sms_safe(text: str, *, keep: Iterable[str] = ()) -> str:
    """GSM-7, discreet, tidy whitespace: what every SMS body goes through before sending."""
    text = to_gsm7(text)
    text = discreet(text, keep=keep)
    lines = [" ".join(line.split()) for line in text.replace("\r", "").split("\n")]
    return "\n".join(line for line in lines if line).strip()
