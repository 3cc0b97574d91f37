"""Kenyan mobile numbers: parse what people type, normalise to ``2547XXXXXXXX``/``2541XXXXXXXX``."""

from __future__ import annotations

import re

ACCEPTED_FORMATS = "07XXXXXXXX, 01XXXXXXXX, 2547XXXXXXXX, 2541XXXXXXXX or +2547XXXXXXXX"

_SEPARATORS = re.compile(r"[\s\-]+")
_PATTERNS = (
    re.compile(r"^\+?254([17]\d{8})$"),
    re.compile(r"^0([17]\d{8})$"),
    re.compile(r"^([17]\d{8})$"),
)

# Safaricom's mobile prefixes (after 254). Numbers are portable, so this is a hint only.
_SAFARICOM_PREFIXES = (
    tuple(f"7{n:02d}" for n in range(0, 30))
    + ("740", "741", "742", "743", "745", "746", "748", "757", "758", "759", "768", "769")
    + tuple(f"79{n}" for n in range(10))
    + ("110", "111", "112", "113", "114", "115")
)


class InvalidPhoneNumber(ValueError):
    """A phone number that is not a Kenyan mobile number; the message names the formats."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        super().__init__(f"That is not a Kenyan mobile number. Use one of: {ACCEPTED_FORMATS}.")


def normalise_phone(raw: object) -> str:
    """Return ``254`` + 9 digits for a Kenyan mobile number, or raise InvalidPhoneNumber."""
    if not isinstance(raw, str):
        raise InvalidPhoneNumber(repr(raw))
    compact = _SEPARATORS.sub("", raw.strip())
    for pattern in _PATTERNS:
        match = pattern.match(compact)
        if match and match.group(1).isascii():
            return "254" + match.group(1)
    raise InvalidPhoneNumber(raw)


def is_valid_phone(raw: str) -> bool:
    """True when ``raw`` parses as a Kenyan mobile number."""
    try:
        normalise_phone(raw)
    except InvalidPhoneNumber:
        return False
    return True


def is_probably_safaricom(msisdn: str) -> bool:
    """True when a normalised number has a Safaricom prefix (M-Pesa works on Safaricom lines)."""
    return msisdn.startswith("254") and msisdn[3:6] in _SAFARICOM_PREFIXES


def mask_phone(msisdn: str) -> str:
    """Show only the last four digits: ``********4149``."""
    digits = "".join(ch for ch in str(msisdn) if ch.isdigit())
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]
