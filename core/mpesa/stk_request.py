"""Build and validate STK Push / Query request bodies before anything is sent.

Every rule Daraja enforces that we know of is checked here, so a bad request fails
fast with ``StkRequestInvalid(field=...)`` instead of a round trip (and so nothing
unexpected ever reaches a client's phone).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from core.domain.phone import InvalidPhoneNumber, normalise_phone
from core.mpesa.errors import StkRequestInvalid
from core.mpesa.timestamps import stk_password

DEFAULT_ACCOUNT_REFERENCE = "SmilingSteps"
ACCOUNT_REFERENCE_MAX = 12
TRANSACTION_DESC_MAX = 13
MIN_AMOUNT = 1
# M-Pesa's per-transaction ceiling in KES; Daraja answers "Invalid Amount" above it.
MAX_AMOUNT = 250_000
PAY_BILL = "CustomerPayBillOnline"
BUY_GOODS = "CustomerBuyGoodsOnline"
# Nothing on the phone prompt may name the kind of care (DESIGN.md §4).
FORBIDDEN_WORDS = ("therapy", "therapist", "counselling", "counseling", "mental", "psych")

_ACCOUNT_REFERENCE = re.compile(r"[A-Za-z0-9]{1,12}")
_DESC = re.compile(r"[A-Za-z0-9 ._#/:-]{1,13}")
_DESC_STRIP = re.compile(r"[^A-Za-z0-9 ._#/:-]+")
_SHORT_CODE = re.compile(r"\d{5,7}")
_TIMESTAMP = re.compile(r"\d{14}")


def validate_amount(amount: object) -> int:
    """Return the amount if it is an int of whole shillings within M-Pesa's limits."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise StkRequestInvalid("Amount", "must be a whole number of shillings (int)")
    if not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise StkRequestInvalid("Amount", f"must be between {MIN_AMOUNT} and {MAX_AMOUNT:,}")
    return amount


def validate_phone(phone: object) -> str:
    """Return the number normalised to 2547XXXXXXXX / 2541XXXXXXXX."""
    try:
        return normalise_phone(phone)
    except InvalidPhoneNumber:
        raise StkRequestInvalid("PhoneNumber", "must be a Kenyan mobile number") from None


def validate_callback_url(url: object) -> str:
    """Return the URL stripped of whitespace; http(s), with a host, without "mpesa"."""
    if not isinstance(url, str):
        raise StkRequestInvalid("CallBackURL", "must be a string")
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        raise StkRequestInvalid("CallBackURL", "is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StkRequestInvalid("CallBackURL", "must be an http(s) URL with a host")
    if any(ch.isspace() for ch in url) or not url.isascii():
        raise StkRequestInvalid("CallBackURL", "must not contain spaces or non-ASCII characters")
    if "mpesa" in url.lower().replace("-", ""):
        # Safaricom silently refuses callback URLs containing the word.
        raise StkRequestInvalid("CallBackURL", 'must not contain "mpesa"')
    return url


def validate_account_reference(reference: object) -> str:
    """Return the AccountReference: 1-12 letters/digits, not naming the kind of care."""
    if not isinstance(reference, str) or not _ACCOUNT_REFERENCE.fullmatch(reference):
        raise StkRequestInvalid("AccountReference", f"must be 1-{ACCOUNT_REFERENCE_MAX} letters or digits")
    _refuse_forbidden_words("AccountReference", reference)
    return reference


def validate_transaction_desc(description: object) -> str:
    """Return the TransactionDesc: 1-13 plain characters, not naming the kind of care."""
    if not isinstance(description, str) or not _DESC.fullmatch(description):
        raise StkRequestInvalid(
            "TransactionDesc",
            f"must be 1-{TRANSACTION_DESC_MAX} characters of letters, digits, space or ._#/:-",
        )
    if not description.strip():
        raise StkRequestInvalid("TransactionDesc", "must not be blank")
    _refuse_forbidden_words("TransactionDesc", description)
    return description


def safe_account_reference(text: str, default: str = DEFAULT_ACCOUNT_REFERENCE) -> str:
    """Squeeze any text into a valid AccountReference (letters/digits, <= 12), else default."""
    candidate = re.sub(r"[^A-Za-z0-9]+", "", text)[:ACCOUNT_REFERENCE_MAX]
    if not candidate or _names_care(candidate):
        return default
    return candidate


def safe_transaction_desc(text: str, default: str = "Session") -> str:
    """Squeeze any text (e.g. a booking reference) into a valid TransactionDesc, else default."""
    candidate = _DESC_STRIP.sub("", text).strip()[:TRANSACTION_DESC_MAX].strip()
    if not candidate or _names_care(candidate):
        return default
    return candidate


def build_stk_push_payload(
    *,
    short_code: str,
    passkey: str,
    timestamp: str,
    phone: object,
    amount: object,
    callback_url: object,
    account_reference: object,
    transaction_desc: object,
    till_number: str | None = None,
) -> dict[str, Any]:
    """Validate every field and return the processrequest body (Password from ``timestamp``)."""
    _check_credentials(short_code, timestamp)
    msisdn = validate_phone(phone)
    if till_number is not None and not _SHORT_CODE.fullmatch(till_number):
        raise StkRequestInvalid("PartyB", "till number must be 5-7 digits")
    return {
        "BusinessShortCode": short_code,
        "Password": stk_password(short_code, passkey, timestamp),
        "Timestamp": timestamp,
        "TransactionType": BUY_GOODS if till_number else PAY_BILL,
        "Amount": validate_amount(amount),
        "PartyA": msisdn,
        "PartyB": till_number or short_code,
        "PhoneNumber": msisdn,
        "CallBackURL": validate_callback_url(callback_url),
        "AccountReference": validate_account_reference(account_reference),
        "TransactionDesc": validate_transaction_desc(transaction_desc),
    }


def build_stk_query_payload(
    *, short_code: str, passkey: str, timestamp: str, checkout_request_id: object
) -> dict[str, Any]:
    """Validate and return the stkpushquery body."""
    _check_credentials(short_code, timestamp)
    if (
        not isinstance(checkout_request_id, str)
        or not checkout_request_id.strip()
        or len(checkout_request_id) > 100
    ):
        raise StkRequestInvalid("CheckoutRequestID", "must be a non-empty string")
    return {
        "BusinessShortCode": short_code,
        "Password": stk_password(short_code, passkey, timestamp),
        "Timestamp": timestamp,
        "CheckoutRequestID": checkout_request_id.strip(),
    }


def _check_credentials(short_code: str, timestamp: str) -> None:
    if not isinstance(short_code, str) or not _SHORT_CODE.fullmatch(short_code):
        raise StkRequestInvalid("BusinessShortCode", "must be 5-7 digits")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise StkRequestInvalid("Timestamp", "must be YYYYMMDDHHmmss")


def _names_care(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in FORBIDDEN_WORDS)


def _refuse_forbidden_words(field: str, text: str) -> None:
    if _names_care(text):
        raise StkRequestInvalid(field, "must not name the kind of care (shown on the phone)")
