"""Daraja's clock: ``YYYYMMDDHHmmss`` in Africa/Nairobi time, and the STK Password."""

from __future__ import annotations

import base64
from datetime import datetime
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")
_FORMAT = "%Y%m%d%H%M%S"


def nairobi_now() -> datetime:
    """Return the current time as an aware datetime in Africa/Nairobi (never the process TZ)."""
    return datetime.now(NAIROBI)


def daraja_timestamp(moment: datetime | None = None) -> str:
    """Format ``moment`` (default: now) as Daraja's ``YYYYMMDDHHmmss`` in Nairobi time."""
    moment = moment or nairobi_now()
    if moment.tzinfo is None:
        # A naive datetime is ambiguous; refuse rather than guess the process time zone.
        raise ValueError("daraja_timestamp needs an aware datetime")
    return moment.astimezone(NAIROBI).strftime(_FORMAT)


def stk_password(short_code: str, passkey: str, timestamp: str) -> str:
    """Return base64(shortcode + passkey + timestamp), the STK Push/Query Password."""
    return base64.b64encode(f"{short_code}{passkey}{timestamp}".encode()).decode("ascii")


def parse_daraja_datetime(value: int | str) -> datetime:
    """Parse a ``YYYYMMDDHHmmss`` number or string as an aware Africa/Nairobi datetime."""
    text = str(value)
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise ValueError("not a YYYYMMDDHHmmss value")
    # Slicing fourteen digits is what strptime(_FORMAT) does with them (each field at its
    # widest, or digits would be left over), and datetime() refuses the same out-of-range
    # fields; it is several times cheaper, and this runs for every callback.
    return datetime(
        int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14]),
        tzinfo=NAIROBI,
    )
