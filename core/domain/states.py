"""Booking and payment-attempt state machines as transition tables (DESIGN.md §2).

The tables are data: ``(from_status, event) -> to_status``. Services apply a transition
with a conditional ``UPDATE ... WHERE status IN (sources(event))`` so the same table
drives both validation here and the database's compare-and-set.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class BookingStatus(StrEnum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    CONFIRMED = "CONFIRMED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


class BookingEvent(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"
    PAY = "pay"
    CANCEL = "cancel"
    EXPIRE = "expire"
    COMPLETE = "complete"


class PaymentStatus(StrEnum):
    QUEUED = "QUEUED"
    AWAITING_CUSTOMER = "AWAITING_CUSTOMER"
    UNCLEAR = "UNCLEAR"
    PAID = "PAID"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    NEEDS_REVIEW = "NEEDS_REVIEW"


class PaymentEvent(StrEnum):
    SENT = "sent"  # Daraja accepted the push
    PUSH_OUTCOME_UNKNOWN = "push_outcome_unknown"  # read time-out after sending
    REFUSED = "refused"  # Daraja rejected the request itself
    SUCCEED = "succeed"  # ResultCode 0 from callback or query
    FAIL = "fail"
    CANCEL = "cancel"  # 1032
    TIME_OUT = "time_out"  # 1037 / 1019
    DEADLINE_PASSED = "deadline_passed"  # no answer by the 120 s deadline
    FLAG = "flag"  # needs a human: double payment, mismatch, unknown for too long
    RESOLVE_PAID = "resolve_paid"  # admin decision after review
    RESOLVE_FAILED = "resolve_failed"  # admin: no money to act on (dismissed)
    RESOLVE_REFUNDED = "resolve_refunded"  # admin: the money was sent back to the payer


B, BE = BookingStatus, BookingEvent
P, PE = PaymentStatus, PaymentEvent

BOOKING_TRANSITIONS: Mapping[tuple[BookingStatus, BookingEvent], BookingStatus] = {
    (B.PENDING_APPROVAL, BE.APPROVE): B.APPROVED,
    (B.PENDING_APPROVAL, BE.DECLINE): B.DECLINED,
    (B.PENDING_APPROVAL, BE.CANCEL): B.CANCELLED,
    (B.PENDING_APPROVAL, BE.EXPIRE): B.EXPIRED,
    (B.APPROVED, BE.PAY): B.CONFIRMED,
    (B.APPROVED, BE.CANCEL): B.CANCELLED,
    (B.APPROVED, BE.EXPIRE): B.EXPIRED,
    (B.CONFIRMED, BE.COMPLETE): B.COMPLETED,
    (B.CONFIRMED, BE.CANCEL): B.CANCELLED,  # admin, or the client within the policy window
}

class RescheduleStatus(StrEnum):
    """A move of a booking (``booking_reschedules``): made at once (APPLIED), or PENDING the
    practitioner's approval (RESCHEDULE_NEEDS_APPROVAL) while it holds the new slot."""

    PENDING = "PENDING"
    APPLIED = "APPLIED"
    DECLINED = "DECLINED"
    WITHDRAWN = "WITHDRAWN"  # the booking was cancelled, moved or started before a decision


class RescheduleEvent(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"
    WITHDRAW = "withdraw"


RS, RSE = RescheduleStatus, RescheduleEvent

RESCHEDULE_TRANSITIONS: Mapping[tuple[RescheduleStatus, RescheduleEvent], RescheduleStatus] = {
    (RS.PENDING, RSE.APPROVE): RS.APPLIED,
    (RS.PENDING, RSE.DECLINE): RS.DECLINED,
    (RS.PENDING, RSE.WITHDRAW): RS.WITHDRAWN,
}


_FAILURES = (P.FAILED, P.CANCELLED, P.TIMED_OUT)
_LIVE = (P.AWAITING_CUSTOMER, P.UNCLEAR)

PAYMENT_TRANSITIONS: Mapping[tuple[PaymentStatus, PaymentEvent], PaymentStatus] = {
    (P.QUEUED, PE.SENT): P.AWAITING_CUSTOMER,
    (P.QUEUED, PE.PUSH_OUTCOME_UNKNOWN): P.UNCLEAR,
    (P.QUEUED, PE.REFUSED): P.FAILED,
    # Money Safaricom reports is never dropped: a late success settles a failed attempt too.
    **{(s, PE.SUCCEED): P.PAID for s in (*_LIVE, *_FAILURES, P.NEEDS_REVIEW)},
    **{(s, PE.FAIL): P.FAILED for s in _LIVE},
    **{(s, PE.CANCEL): P.CANCELLED for s in _LIVE},
    **{(s, PE.TIME_OUT): P.TIMED_OUT for s in _LIVE},
    (P.AWAITING_CUSTOMER, PE.DEADLINE_PASSED): P.UNCLEAR,
    **{(s, PE.FLAG): P.NEEDS_REVIEW for s in (*_LIVE, *_FAILURES)},
    (P.NEEDS_REVIEW, PE.RESOLVE_PAID): P.PAID,
    (P.NEEDS_REVIEW, PE.RESOLVE_FAILED): P.FAILED,
    (P.NEEDS_REVIEW, PE.RESOLVE_REFUNDED): P.FAILED,
}

LIVE_BOOKING_STATUSES = frozenset({B.PENDING_APPROVAL, B.APPROVED, B.CONFIRMED})
# A client may move an approved (unpaid) or confirmed (paid) booking; its status stays as it is.
RESCHEDULABLE_BOOKING_STATUSES = frozenset({B.APPROVED, B.CONFIRMED})
LIVE_PAYMENT_STATUSES = frozenset({P.QUEUED, P.AWAITING_CUSTOMER, P.UNCLEAR})
FAILED_PAYMENT_STATUSES = frozenset(_FAILURES)


class InvalidTransition(ValueError):
    """Raised when an event is not allowed from the current status."""

    def __init__(self, machine: str, current: str, event: str) -> None:
        self.machine, self.current, self.event = machine, current, event
        super().__init__(f"{machine}: cannot '{event}' from {current}")


def next_booking_status(current: BookingStatus, event: BookingEvent) -> BookingStatus:
    """Return the booking status after ``event`` or raise InvalidTransition."""
    try:
        return BOOKING_TRANSITIONS[(BookingStatus(current), event)]
    except KeyError:
        raise InvalidTransition("booking", str(current), str(event)) from None


def next_reschedule_status(current: RescheduleStatus, event: RescheduleEvent) -> RescheduleStatus:
    """Return the reschedule status after ``event`` or raise InvalidTransition."""
    try:
        return RESCHEDULE_TRANSITIONS[(RescheduleStatus(current), event)]
    except KeyError:
        raise InvalidTransition("reschedule", str(current), str(event)) from None


def next_payment_status(current: PaymentStatus, event: PaymentEvent) -> PaymentStatus:
    """Return the payment-attempt status after ``event`` or raise InvalidTransition."""
    try:
        return PAYMENT_TRANSITIONS[(PaymentStatus(current), event)]
    except KeyError:
        raise InvalidTransition("payment", str(current), str(event)) from None


def booking_sources(event: BookingEvent) -> frozenset[BookingStatus]:
    """Statuses from which ``event`` is allowed (the WHERE clause of the CAS update)."""
    return frozenset(src for (src, ev) in BOOKING_TRANSITIONS if ev == event)


def payment_sources(event: PaymentEvent) -> frozenset[PaymentStatus]:
    """Statuses from which ``event`` is allowed (the WHERE clause of the CAS update)."""
    return frozenset(src for (src, ev) in PAYMENT_TRANSITIONS if ev == event)


def booking_terminal_statuses() -> frozenset[BookingStatus]:
    """Booking statuses with no outgoing transition."""
    sources = {src for (src, _ev) in BOOKING_TRANSITIONS}
    return frozenset(s for s in BookingStatus if s not in sources)


def payment_terminal_statuses() -> frozenset[PaymentStatus]:
    """Payment statuses with no outgoing transition (PAID only)."""
    sources = {src for (src, _ev) in PAYMENT_TRANSITIONS}
    return frozenset(s for s in PaymentStatus if s not in sources)


def can_start_payment(booking_status: BookingStatus) -> bool:
    """Only an APPROVED booking may be paid (Property 5)."""
    return BookingStatus(booking_status) is BookingStatus.APPROVED


def booking_status_after_payment_event(
    booking_status: BookingStatus, payment_event: PaymentEvent
) -> BookingStatus:
    """What a payment event does to its booking: only a success confirms it (Property 28)."""
    booking_status = BookingStatus(booking_status)  # rows hold plain strings
    if PaymentEvent(payment_event) is PaymentEvent.SUCCEED and booking_status is BookingStatus.APPROVED:
        return BookingStatus.CONFIRMED
    return booking_status
