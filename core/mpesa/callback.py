"""Parse the body Safaricom POSTs to an STK Push CallBackURL into a typed ``StkCallback``.

Accepts every real-world shape we know (float Amount 1.00, Balance without Value,
non-numeric ResultCode, unknown extra keys) and rejects anything that is not a Daraja
STK result with ``InvalidCallback`` — never another exception type.

``parse_callback_fields`` is the intake's lean door: a typed msgspec decode of exactly the
Daraja layout (no dict tree, no depth scan, no pydantic model) yielding the plain
``CallbackFields`` settlement needs. It only ever *accepts* faster: any body it does not
recognise at once (an unknown key, a nested or odd value, a failed check) goes through
``parse_stk_callback``, so every body is accepted or refused, with the same reason and the
same values, exactly as the reference parser decides
(tests/unit/test_stk_callback_fast_parser.py checks both on the samples and generated bodies).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict

from core.mpesa.errors import InvalidCallback
from core.mpesa.result_codes import ResultInfo, describe_result, normalise_result_code
from core.mpesa.timestamps import parse_daraja_datetime

MAX_BODY_BYTES = 64 * 1024
# Body > stkCallback > CallbackMetadata > Item[] > {Name, Value}: six nested containers
# counting the outer object. Anything deeper is not a Daraja STK result.
MAX_DEPTH = 6
_MAX_ID_LENGTH = 100
_MAX_CODE_LENGTH = 64
_MAX_ITEMS = 50
# Far above any M-Pesa amount; also stops int() of "1e999999999" from eating memory.
_MAX_AMOUNT = Decimal(10**12)

Scalar = str | int | float | bool | None


class StkCallback(BaseModel):
    """One STK Push result as Safaricom reported it (values normalised, raw metadata kept)."""

    model_config = ConfigDict(frozen=True)

    merchant_request_id: str
    checkout_request_id: str
    result_code: int | str
    result_desc: str
    # Whole shillings; None when absent or not a whole positive number (see amount_raw).
    amount: int | None = None
    # The Amount Value exactly as sent (1.0, 1.5, "1"); None when there was no Amount.
    amount_raw: int | float | str | None = None
    receipt: str | None = None
    transaction_date: datetime | None = None
    phone: str | None = None
    metadata: dict[str, Any] = {}

    @property
    def is_success(self) -> bool:
        """True when ResultCode is 0 (the money moved)."""
        return self.result_code == 0

    @property
    def result(self) -> ResultInfo:
        """The catalogue entry for this ResultCode."""
        return describe_result(self.result_code)

    @property
    def amount_not_whole(self) -> bool:
        """True when an Amount was sent but is not a whole positive number (needs review)."""
        return self.amount_raw is not None and self.amount is None


def parse_stk_callback(body: bytes | str | dict[str, Any]) -> StkCallback:
    """Validate a callback body (raw bytes, text or decoded JSON) and return a StkCallback."""
    data = _decode(body) if isinstance(body, bytes | str) else body
    if not isinstance(data, dict):
        raise InvalidCallback("body is not a JSON object")
    if _depth(data) > MAX_DEPTH:
        raise InvalidCallback("body is nested deeper than a Daraja STK result")
    stk = _child(_child(data, "Body"), "stkCallback")

    code = stk.get("ResultCode")
    if isinstance(code, bool) or not isinstance(code, int | str):
        raise InvalidCallback("ResultCode is missing or not an integer/string")
    result_code = normalise_result_code(code)
    if result_code is None or result_code == "" or len(str(result_code)) > _MAX_CODE_LENGTH:
        raise InvalidCallback("ResultCode is empty or too long")

    result_desc = stk.get("ResultDesc")
    if not isinstance(result_desc, str):
        raise InvalidCallback("ResultDesc is missing or not a string")

    metadata = _metadata(stk.get("CallbackMetadata"))
    amount_raw = metadata.get("Amount")
    return StkCallback(
        merchant_request_id=_identifier(stk, "MerchantRequestID"),
        checkout_request_id=_identifier(stk, "CheckoutRequestID"),
        result_code=result_code,
        result_desc=result_desc,
        amount=_whole_amount(amount_raw),
        amount_raw=amount_raw,
        receipt=_receipt(metadata.get("MpesaReceiptNumber")),
        transaction_date=_transaction_date(metadata.get("TransactionDate")),
        phone=_phone(metadata.get("PhoneNumber")),
        metadata=metadata,
    )


def _decode(body: bytes | str) -> Any:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidCallback(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidCallback("body is nested deeper than a Daraja STK result") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise InvalidCallback(f"body is not valid JSON ({type(exc).__name__})") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _depth(root: Any) -> int:
    """Deepest container nesting, computed without recursion (a body may be hostile)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, level = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _child(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise InvalidCallback(f"{key} is missing or not an object")
    return value


def _identifier(stk: dict[str, Any], key: str) -> str:
    value = stk.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID_LENGTH:
        raise InvalidCallback(f"{key} is missing or not a short string")
    return value.strip()


def _metadata(block: Any) -> dict[str, Scalar]:
    """Name → Value of CallbackMetadata.Item; a Name without Value (Balance) maps to None."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise InvalidCallback("CallbackMetadata is not an object")
    items = block.get("Item", [])
    if not isinstance(items, list) or len(items) > _MAX_ITEMS:
        raise InvalidCallback("CallbackMetadata.Item is not a list of items")
    result: dict[str, Scalar] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
            raise InvalidCallback("CallbackMetadata.Item entry has no Name")
        value = item.get("Value")
        if isinstance(value, dict | list):
            raise InvalidCallback(f"CallbackMetadata item {item['Name']!r} has a nested Value")
        result.setdefault(item["Name"], value)  # first occurrence wins
    return result


def _whole_amount(value: Scalar) -> int | None:
    """Whole positive shillings from 1, 1.0 or "1"; None for 1.5, 0, "abc" (kept as raw)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidCallback("Amount is a boolean")
    try:
        number = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        return None
    if not number.is_finite() or not 0 < number <= _MAX_AMOUNT:
        return None
    if number != number.to_integral_value():
        return None
    return int(number)


def _receipt(value: Scalar) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidCallback("MpesaReceiptNumber is not a string")
    return value.strip() or None


def _transaction_date(value: Scalar) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return parse_daraja_datetime(value if isinstance(value, int | str) else str(value))
    except ValueError:
        return None  # informational only; the raw value stays in metadata


def _phone(value: Scalar) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidCallback("PhoneNumber is a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


# -- the lean door: typed decode of the known layout, the reference parser for the rest -------


@dataclass(frozen=True, slots=True)
class CallbackFields:
    """What the intake checks and settlement needs of one callback (as ``StkCallback`` has them)."""

    checkout_request_id: str
    result_code: int | str
    result_desc: str
    amount: int | None
    amount_raw: int | float | str | None
    receipt: str | None
    transaction_date: datetime | None
    phone: str | None

    @classmethod
    def of(cls, callback: StkCallback) -> CallbackFields:
        return cls(
            callback.checkout_request_id, callback.result_code, callback.result_desc, callback.amount,
            callback.amount_raw, callback.receipt, callback.transaction_date, callback.phone,
        )


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    Name: str
    Value: str | int | float | bool | None = None


class _Metadata(msgspec.Struct, forbid_unknown_fields=True):
    Item: list[_Item] = msgspec.field(default_factory=list)


class _Stk(msgspec.Struct, forbid_unknown_fields=True):
    MerchantRequestID: str
    CheckoutRequestID: str
    ResultCode: int | str
    ResultDesc: str
    CallbackMetadata: _Metadata | None = None


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    stkCallback: _Stk


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    Body: _Body


# Unknown keys are refused (forbid_unknown_fields), so a body the typed decoder accepts is at
# most five containers deep and needs no depth scan.
_DECODER = msgspec.json.Decoder(_Envelope)
_BIG = 10**18  # Python's json refuses ints of more than 4300 digits; msgspec does not: leave those


def parse_callback_fields(body: bytes) -> CallbackFields:
    """The fields of a callback body; raises ``InvalidCallback`` exactly as ``parse_stk_callback``."""
    fields = _fast_fields(body) if len(body) <= MAX_BODY_BYTES else None
    return fields if fields is not None else CallbackFields.of(parse_stk_callback(body))


def _fast_fields(body: bytes) -> CallbackFields | None:
    """The common layout, decoded in C; None: let the reference parser decide (and say why)."""
    try:
        stk = _DECODER.decode(body).Body.stkCallback
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    items = stk.CallbackMetadata.Item if stk.CallbackMetadata is not None else []
    metadata: dict[str, Scalar] = {}
    for item in items:
        value = item.Value
        if isinstance(value, int) and not isinstance(value, bool) and not -_BIG < value < _BIG:
            return None
        metadata.setdefault(item.Name, value)
    try:
        code = normalise_result_code(stk.ResultCode)
        if (
            len(items) > _MAX_ITEMS or code is None or code == "" or len(str(code)) > _MAX_CODE_LENGTH
        ):
            return None
        _identifier({"MerchantRequestID": stk.MerchantRequestID}, "MerchantRequestID")
        amount_raw = metadata.get("Amount")
        return CallbackFields(
            checkout_request_id=_identifier(
                {"CheckoutRequestID": stk.CheckoutRequestID}, "CheckoutRequestID"
            ),
            result_code=code,
            result_desc=stk.ResultDesc,
            amount=_whole_amount(amount_raw),
            amount_raw=amount_raw,
            receipt=_receipt(metadata.get("MpesaReceiptNumber")),
            transaction_date=_transaction_date(metadata.get("TransactionDate")),
            phone=_phone(metadata.get("PhoneNumber")),
        )
    except InvalidCallback:
        return None
