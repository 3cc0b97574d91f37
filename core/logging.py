"""Structured (JSON lines) logging with phone numbers masked wherever they appear (Property 47)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# Kenyan mobile numbers in every spelling normalise_phone accepts: +254 7.., 2547.., 07.., 01..,
# 7.. with spaces/dashes anywhere between the digits, and glued to words ("tel0712345678").
_PHONE = re.compile(
    r"(?<![\d+])(?:\+?2[ \-]{0,3}5[ \-]{0,3}4[ \-]{0,3}|0[ \-]{0,3})?"  # optional +254, 254 or 0
    r"[17](?:[ \-]{0,3}\d){8}(?!\d)"
)
_INTERNATIONAL = re.compile(r"\+\d{8,15}(?!\d)")  # any other E.164 number


def mask_phones(text: str) -> str:
    """Replace every phone-like number in ``text`` with stars and its last four digits."""

    def _mask(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return "*" * (len(digits) - 4) + digits[-4:]

    return _INTERNATIONAL.sub(_mask, _PHONE.sub(_mask, text))


class PhoneMaskingFilter(logging.Filter):
    """Masks phone numbers in the formatted message and in any extra string fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = mask_phones(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, mask_phones(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = _masked_value(value)
        if record.exc_info:
            payload["exception"] = mask_phones(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False)


def _masked_value(value: object) -> object:
    """A JSON-ready extra field with phone numbers masked, also in numbers and nested values."""
    if value is None or isinstance(value, (bool, float)):
        return value
    text = mask_phones(str(value))
    if isinstance(value, int) and text == str(value):
        return value
    return text


def configure_logging(level: str = "INFO") -> None:
    """Send JSON logs to stderr, masking phone numbers; idempotent."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_smiling_steps", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(PhoneMaskingFilter())
    handler._smiling_steps = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Drivers log SQL parameters at DEBUG (callback bodies, CheckoutRequestIDs that end with
    # the payer's number): they stay at WARNING whatever LOG_LEVEL says.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "apscheduler", "alembic", "aiosqlite", "asyncpg",
                  "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)
