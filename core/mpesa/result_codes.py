"""The STK result-code catalogue: what a ResultCode means and what to tell the client.

Branch on the code, never on ResultDesc (the text varies: "canceled." vs "cancelled").
Any code not listed here — numeric (1031) or not ("SFC_IC0003") — is a generic failure
with ``known=False`` so the caller logs it for review (DESIGN.md §4).
Client messages are channel-neutral, short, and never name the kind of care.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Category = Literal["paid", "user_can_retry", "system_retry_later"]
Outcome = Literal["paid", "cancelled", "timed_out", "failed"]

SUCCESS = 0
# Query answers "The transaction is still under processing" with this code: not a result yet.
STILL_PROCESSING = 4999

_NUMERIC = re.compile(r"-?\d{1,18}")


@dataclass(frozen=True, slots=True)
class ResultInfo:
    """What one ResultCode means for the payment and for the client."""

    code: int | str
    category: Category
    outcome: Outcome
    title: str  # short description for admins and logs
    message: str  # plain-language text for the client
    known: bool = True

    @property
    def is_success(self) -> bool:
        """True only for ResultCode 0."""
        return self.outcome == "paid"


_SYSTEM_MESSAGE = "M-Pesa could not complete the payment just now. Please retry in a few minutes."
_TIMEOUT_MESSAGE = (
    "We did not get an answer from your phone in time. Check your M-Pesa messages; "
    "if no money left your account, retry."
)
_GENERIC_MESSAGE = (
    "The payment did not go through. Check your M-Pesa messages; if no money left your "
    "account, retry. Contact us if it keeps happening."
)

_ENTRIES: tuple[ResultInfo, ...] = (
    ResultInfo(0, "paid", "paid", "Paid", "Payment received. Thank you!"),
    ResultInfo(
        1,
        "user_can_retry",
        "failed",
        "Insufficient balance",
        "Your M-Pesa balance was not enough for this payment. Please top up M-Pesa, then retry.",
    ),
    ResultInfo(
        1032,
        "user_can_retry",
        "cancelled",
        "Cancelled by user",
        "Payment cancelled. You can retry whenever you are ready.",
    ),
    ResultInfo(
        1037,
        "user_can_retry",
        "timed_out",
        "Phone unreachable or no response (DS timeout)",
        _TIMEOUT_MESSAGE,
    ),
    ResultInfo(1019, "user_can_retry", "timed_out", "Transaction expired", _TIMEOUT_MESSAGE),
    ResultInfo(
        2001,
        "user_can_retry",
        "failed",
        "Wrong PIN (initiator information invalid)",
        "The M-Pesa PIN entered was not correct. Please retry and enter the right PIN.",
    ),
    ResultInfo(
        1001,
        "user_can_retry",
        "failed",
        "Another transaction in progress for this subscriber",
        "Another M-Pesa request is already open on your phone. Please finish or close "
        "it, wait a minute, then retry.",
    ),
    ResultInfo(17, "system_retry_later", "failed", "M-Pesa system error", _SYSTEM_MESSAGE),
    ResultInfo(26, "system_retry_later", "failed", "M-Pesa system busy", _SYSTEM_MESSAGE),
    ResultInfo(1025, "system_retry_later", "failed", "Error sending the prompt", _SYSTEM_MESSAGE),
    ResultInfo(1036, "system_retry_later", "failed", "M-Pesa internal error", _SYSTEM_MESSAGE),
    ResultInfo(9999, "system_retry_later", "failed", "Error sending the prompt", _SYSTEM_MESSAGE),
)
_CATALOGUE: dict[int, ResultInfo] = {int(info.code): info for info in _ENTRIES}

KNOWN_CODES: frozenset[int] = frozenset(_CATALOGUE)


def normalise_result_code(value: object) -> int | str | None:
    """Codes arrive as strings in API answers ("0") and as ints in callbacks: make them ints.

    A non-numeric code ("SFC_IC0003") stays a (stripped) string; None stays None.
    """
    if value is None:
        return None
    if isinstance(value, bool):  # bool is an int subclass; True is not ResultCode 1
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if _NUMERIC.fullmatch(text):
        return int(text)
    return text


def describe_result(code: int | str) -> ResultInfo:
    """Return the catalogue entry for a ResultCode (int or string); unknown → generic failure."""
    normalised = normalise_result_code(code)
    if isinstance(normalised, int) and normalised in _CATALOGUE:
        return _CATALOGUE[normalised]
    return ResultInfo(
        code=normalised if normalised is not None else "",
        category="user_can_retry",
        outcome="failed",
        title="Unrecognised result code",
        message=_GENERIC_MESSAGE,
        known=False,
    )
