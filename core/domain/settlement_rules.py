"""The one decision on a reported M-Pesa success: pay, flag for review, ignore, or wait.

Both settlement paths ask this function — the one-by-one path
(``core.services...settlement``) and the batch path (``...settlement_batch``) — so a rule
added here holds for both: nothing the one path flags can be marked PAID by the other.
Pure: plain frozen values in, a verdict out, no database.

The rules (DESIGN.md §2, "Decisions"): a success pays the attempt and confirms the booking
only when the amount and receipt check out and the booking is still unpaid; anything
doubtful goes to NEEDS_REVIEW, never PAID on trust and never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from core.domain.states import BookingStatus, PaymentEvent, PaymentStatus, payment_sources

# Statuses a success may settle as PAID, straight from the transition table.
SUCCESS_SOURCES: frozenset[PaymentStatus] = payment_sources(PaymentEvent.SUCCEED)
LIVE_SOURCES: frozenset[PaymentStatus] = frozenset({PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.UNCLEAR})


@dataclass(frozen=True)
class StkResult:
    """A final STK answer from Safaricom, whichever way it came."""

    checkout_request_id: str
    result_code: int | str
    result_desc: str | None
    source: Literal["callback", "query", "admin"]  # admin: confirmed by hand after review
    amount: int | None = None
    amount_raw: object = None
    receipt: str | None = None
    transaction_time: datetime | None = None
    phone: str | None = None
    query_disagrees: bool = False  # MPESA_CONFIRM_WITH_QUERY: STK Query did not confirm a success


@dataclass(frozen=True)
class AttemptFacts:
    """What the decision needs to know of a payment attempt."""

    id: int
    status: str
    amount_kes: int


@dataclass(frozen=True)
class BookingFacts:
    """What the decision needs to know of the attempt's booking."""

    status: str


@dataclass(frozen=True)
class Paid:
    """Settle as PAID and confirm the booking; ``previous`` is the attempt's status before."""

    previous: PaymentStatus

    @property
    def late(self) -> bool:
        """A success after the attempt had already ended (failed, cancelled, flagged…)."""
        return self.previous not in LIVE_SOURCES


@dataclass(frozen=True)
class Flag:
    """Needs a human: the reasons, and whether the reported receipt may be stored."""

    reasons: tuple[str, ...]
    receipt_is_free: bool

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class Duplicate:
    """The attempt is PAID already (no success may move it): at most record the receipt."""


@dataclass(frozen=True)
class NotReady:
    """The push is still being recorded (QUEUED): try again shortly."""


SuccessVerdict = Paid | Flag | Duplicate | NotReady


def judge_success(
    attempt: AttemptFacts, booking: BookingFacts, result: StkResult, receipt_owner: int | None
) -> SuccessVerdict:
    """Decide what a reported success does to ``attempt``.

    ``receipt_owner`` is the id of an attempt that already holds ``result.receipt`` (None
    when no attempt does, or when it is this one).
    """
    status = PaymentStatus(attempt.status)
    if status is PaymentStatus.QUEUED:
        return NotReady()
    if status not in SUCCESS_SOURCES:  # PAID: the attempt already has its result
        return Duplicate()
    reasons = success_problems(attempt, booking, result, receipt_owner)
    if reasons:
        receipt_missing = result.source == "callback" and not result.receipt
        receipt_taken = bool(result.receipt) and _other(receipt_owner, attempt.id)
        return Flag(tuple(reasons), receipt_is_free=not (receipt_missing or receipt_taken))
    return Paid(previous=status)


def success_problems(
    attempt: AttemptFacts, booking: BookingFacts, result: StkResult, receipt_owner: int | None
) -> list[str]:
    """Every reason a reported success is doubtful, in the order the review reason lists them."""
    problems: list[str] = []
    if result.source == "callback":
        if result.amount is None:
            problems.append(f"success without a whole Amount ({result.amount_raw!r})")
        elif result.amount != attempt.amount_kes:
            problems.append(f"amount {result.amount} differs from the expected {attempt.amount_kes}")
        if not result.receipt:
            problems.append("receipt missing from a success callback")
    if result.receipt and _other(receipt_owner, attempt.id):
        problems.append(f"receipt {result.receipt} already recorded on attempt {receipt_owner}")
    if result.query_disagrees:
        problems.append("STK Query does not confirm the success the callback reported")
    if booking.status in (BookingStatus.CONFIRMED, BookingStatus.COMPLETED):
        problems.append("booking already paid: possible double payment, refund or credit")
    elif booking.status != BookingStatus.APPROVED:
        problems.append(f"money received for a booking in status {booking.status}: refund or rebook")
    return problems


def paid_reason(result: StkResult, previous: str) -> str:
    """The audit reason of an attempt's move to PAID (a late success names the status it left)."""
    late = previous != PaymentStatus.AWAITING_CUSTOMER and previous != PaymentStatus.UNCLEAR
    return f"{result.source} ResultCode 0" + (" (late success after " + previous + ")" if late else "")


def booking_paid_reason(attempt_id: int) -> str:
    """The audit reason of a booking's move to CONFIRMED."""
    return f"paid by attempt {attempt_id}"


def _other(owner: int | None, attempt_id: int) -> bool:
    return owner is not None and owner != attempt_id
