"""Details hygiene: no raw phone number ever reaches the audit trail (Property 70).

Phone fields are masked, a raw MSISDN anywhere else is refused (or, in free text such as a
reason quoting M-Pesa, masked), and the fields of an entry are checked before it is hashed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

from core.domain.phone import mask_phone
from core.services.audit.chain import format_at

_ACTOR = re.compile(r"^(system(:[A-Za-z0-9_.\-]{1,50})?|(client|therapist|admin):[A-Za-z0-9_.\-]{1,48})$")
_PHONE_KEYS = frozenset({"phone", "msisdn", "phone_number", "phonenumber", "mobile", "partya", "partyb"})
# A raw Kenyan MSISDN (254 + 9 digits, optionally +, spaces or dashes) anywhere in a string.
_RAW_MSISDN = re.compile(r"(?<!\d)\+?254[\s\-]?\d{3}[\s\-]?\d{3}[\s\-]?\d{3}(?!\d)")
_LIMITS = {"actor": 60, "action": 60, "subject_type": 30, "subject_id": 40}


# -- details hygiene: no raw phone numbers ------------------------------------------------


def sanitize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """JSON-normalised details with phone fields masked; ValueError on a raw MSISDN elsewhere."""
    masked = _mask_phone_fields(dict(details or {}))
    # A JSON round trip makes what we hash identical to what the JSON column hands back.
    normalised: dict[str, Any] = json.loads(canonical_json_default(masked))
    _reject_raw_phones(normalised, "details")
    return normalised


def redact_phones(value: str) -> str:
    """Replace every raw ``254…`` number in a string with its masked form."""
    return _RAW_MSISDN.sub(lambda m: mask_phone(m.group(0)), value)


def canonical_json_default(value: Any) -> str:
    """Canonical JSON that also accepts datetimes, dates and enums (as their ISO/str values)."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_at(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"audit details cannot hold {type(value).__name__}")


def _is_phone_key(key: str) -> bool:
    k = key.lower()
    return k in _PHONE_KEYS or k.endswith(("_phone", "_msisdn", "_phone_number"))


def _mask_phone_fields(value: Any) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("audit details keys must be strings")
            out[key] = _mask_value(item) if _is_phone_key(key) else _mask_phone_fields(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_mask_phone_fields(item) for item in value]
    return value


def _mask_value(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (str, int)):
        text_value = str(value)
        return text_value if "*" in text_value else mask_phone(text_value)  # already masked
    if isinstance(value, (list, tuple)):
        return [_mask_value(item) for item in value]
    return _mask_phone_fields(value)


def _reject_raw_phones(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_raw_phones(key, where)
            _reject_raw_phones(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_raw_phones(item, f"{where}[{index}]")
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        text_value = str(value)
        if "\x00" in text_value:
            raise ValueError(f"audit {where} contains a NUL character")
        if _RAW_MSISDN.search(text_value):
            raise ValueError(f"audit {where} contains a raw phone number; pass mask_phone(...) instead")


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return redact_phones(value)
    if isinstance(value, Mapping):
        return {k: _redact_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_strings(v) for v in value]
    return value


def _check_text(name: str, value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > _LIMITS[name] or "\x00" in value:
        raise ValueError(f"audit {name} must be 1-{_LIMITS[name]} characters")
    if _RAW_MSISDN.search(value):
        raise ValueError(f"audit {name} contains a raw phone number")
