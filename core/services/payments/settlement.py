"""Settle an STK result (from a callback or an STK Query) in one transaction.

The rules (DESIGN.md §2, "Decisions"): a success pays the attempt and confirms the
booking only when the amount and receipt check out and the booking is still unpaid;
anything doubtful goes to NEEDS_REVIEW, never PAID on trust and never dropped. A
failure ends a live attempt with the code stored, leaves the booking APPROVED and tells
the client how to retry. Every state change is a compare-and-set plus an audit entry;
losing a race rolls the whole transaction back and the caller re-reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.config import Settings, is_test_environment
from core.db.models import Booking, Client, PaymentAttempt, SessionType, Therapist
from core.db.uow import transition_booking, transition_payment
from core.domain.meeting import new_meeting_url
from core.domain.money import format_kes
from core.domain.phone import mask_phone
from core.domain.slots import format_nairobi
from core.domain.states import (
    BookingEvent,
    BookingStatus,
    PaymentEvent,
    PaymentStatus,
)
from core.mpesa.redact import redact_checkout_id
from core.mpesa.result_codes import describe_result
from core.services import audit
from core.services.notifications import notify as notifications

log = logging.getLogger(__name__)

FAILURE_EVENTS: dict[str, PaymentEvent] = {
    "cancelled": PaymentEvent.CANCEL,
    "timed_out": PaymentEvent.TIME_OUT,
    "failed": PaymentEvent.FAIL,
}
SETTLEABLE_FAILURE_SOURCES = frozenset({PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.UNCLEAR})


class Settled(StrEnum):
    PAID = "paid"
    FLAGGED = "flagged"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # nothing left to do: the attempt already has its result
    NOT_READY = "not_ready"  # the push is still being recorded; try again shortly
    UNKNOWN_ATTEMPT = "unknown_attempt"


@dataclass(frozen=True)
class StkResult:
    """A final STK answer from Safaricom, whichever way it came."""

    checkout_request_id: str
    result_code: int | str
    result_desc: str | None
    source: Literal["callback", "query", "admin"]  # admin: confirmed by hand after review
    amount: int | None = None
    amount_raw: Any = None
    receipt: str | None = None
    transaction_time: datetime | None = None
    phone: str | None = None
    query_disagrees: bool = False  # MPESA_CONFIRM_WITH_QUERY: STK Query did not confirm a success


async def settle_in_session(
    session: AsyncSession, result: StkResult, *, settings: Settings, now: datetime
) -> Settled:
    """Apply ``result`` inside the caller's transaction (the caller commits or retries)."""
    await audit.lock_chain(session)  # chain lock before any row lock: no deadlock on PostgreSQL
    attempt = await session.scalar(
        select(PaymentAttempt).where(PaymentAttempt.checkout_request_id == result.checkout_request_id)
    )
    if attempt is None:
        log.warning(
            "stk result for unknown CheckoutRequestID",
            extra={"checkout": redact_checkout_id(result.checkout_request_id)},  # it embeds the phone
        )
        return Settled.UNKNOWN_ATTEMPT
    if attempt.status == PaymentStatus.QUEUED:
        return Settled.NOT_READY
    info = describe_result(result.result_code)
    if info.is_success:
        return await _settle_success(session, attempt, result, settings=settings, now=now)
    return await _settle_failure(session, attempt, result, settings=settings, now=now)


async def _settle_success(
    session: AsyncSession, attempt: PaymentAttempt, result: StkResult, *, settings: Settings, now: datetime
) -> Settled:
    if attempt.status == PaymentStatus.PAID:
        await _complete_paid_details(session, attempt, result)
        return Settled.DUPLICATE
    booking = await session.get_one(Booking, attempt.booking_id)
    problems = await _success_problems(session, attempt, booking, result)
    receipt_is_free = not any(p.startswith("receipt") for p in problems)
    details = success_values(result, now=now, receipt_is_free=receipt_is_free)
    if problems:
        return await _flag(
            session, attempt, booking, "; ".join(problems), details, settings=settings, now=now
        )

    previous = attempt.status
    await transition_payment(session, attempt.id, PaymentEvent.SUCCEED, **details)
    await audit.record_payment_transition(
        session,
        attempt.id,
        previous=previous,
        new=PaymentStatus.PAID,
        reason=paid_reason(result, previous),
        receipt=result.receipt,
        amount_kes=result.amount,
    )
    await confirm_paid_booking(session, attempt, booking, result, settings=settings, now=now)
    log.info("payment settled", extra={"attempt": attempt.id, "booking": booking.id, "source": result.source})
    return Settled.PAID


async def confirm_paid_booking(
    session: AsyncSession,
    attempt: PaymentAttempt,
    booking: Booking,
    result: StkResult,
    *,
    settings: Settings,
    now: datetime,
    actor: str = "system",
) -> None:
    """The booking half of a payment, once its attempt is PAID: CONFIRMED with a meeting link
    (compare-and-set from APPROVED; TransitionConflict otherwise), audited, reminders armed
    and the client's, practitioner's and e-mail confirmations queued. Used by settlement and
    by an admin's review decision, so a resolved payment is announced like any other."""
    meeting_url = new_meeting_url(settings.meeting_url_template)
    await transition_booking(session, booking.id, BookingEvent.PAY, meeting_url=meeting_url)
    await audit.record_transition(
        session,
        actor=actor,
        subject_type="booking",
        subject_id=booking.id,
        previous=booking.status,
        new=BookingStatus.CONFIRMED,
        reason=booking_paid_reason(attempt.id),
    )
    # Keep the loaded object in step with the UPDATE without scheduling a second one.
    set_committed_value(booking, "meeting_url", meeting_url)
    set_committed_value(booking, "status", BookingStatus.CONFIRMED.value)
    await notifications.create_reminders(session, booking, now=now)
    await _notify_paid(session, attempt, booking, result, settings=settings)


async def _success_problems(
    session: AsyncSession, attempt: PaymentAttempt, booking: Booking, result: StkResult
) -> list[str]:
    problems: list[str] = []
    if result.source == "callback":
        if result.amount is None:
            problems.append(f"success without a whole Amount ({result.amount_raw!r})")
        elif result.amount != attempt.amount_kes:
            problems.append(f"amount {result.amount} differs from the expected {attempt.amount_kes}")
        if not result.receipt:
            problems.append("receipt missing from a success callback")
    if result.receipt:
        other = await session.scalar(
            select(PaymentAttempt.id).where(
                PaymentAttempt.mpesa_receipt == result.receipt, PaymentAttempt.id != attempt.id
            )
        )
        if other is not None:
            problems.append(f"receipt {result.receipt} already recorded on attempt {other}")
    if result.query_disagrees:
        problems.append("STK Query does not confirm the success the callback reported")
    if booking.status in (BookingStatus.CONFIRMED, BookingStatus.COMPLETED):
        problems.append("booking already paid: possible double payment, refund or credit")
    elif booking.status != BookingStatus.APPROVED:
        problems.append(f"money received for a booking in status {booking.status}: refund or rebook")
    return problems


async def _flag(
    session: AsyncSession,
    attempt: PaymentAttempt,
    booking: Booking,
    reason: str,
    details: dict[str, Any],
    *,
    settings: Settings,
    now: datetime,
) -> Settled:
    if attempt.status == PaymentStatus.NEEDS_REVIEW:
        attempt.review_reason = (f"{attempt.review_reason}; {reason}" if attempt.review_reason else reason)[
            :300
        ]
        if details.get("mpesa_receipt") and not attempt.mpesa_receipt:
            # Flagged earlier without a receipt (by a query, or "unknown for too long"): the
            # callback's receipt and amount are what the admin refunds or reconciles by.
            attempt.mpesa_receipt = details["mpesa_receipt"]
            attempt.paid_amount_kes = details["paid_amount_kes"]
            attempt.paid_phone = details["paid_phone"]
            attempt.transaction_time = details["transaction_time"]
            await audit.record(
                session,
                actor="system",
                action="payment.receipt_recorded",
                subject_type="payment",
                subject_id=attempt.id,
                details={"receipt": attempt.mpesa_receipt, "amount_kes": attempt.paid_amount_kes},
            )
        return Settled.FLAGGED
    previous = attempt.status
    await transition_payment(session, attempt.id, PaymentEvent.FLAG, review_reason=reason[:300], **details)
    await audit.record_payment_transition(
        session,
        attempt.id,
        previous=previous,
        new=PaymentStatus.NEEDS_REVIEW,
        reason=reason,
    )
    client = await session.get_one(Client, attempt.client_id)
    await notifications.notify_client(
        session,
        client,
        template="payment_review_client",
        data={
            "reference": booking.reference,
            "amount_kes": attempt.amount_kes,
            "receipt": details.get("mpesa_receipt"),
            "test_mode": is_test_environment(attempt.environment),
        },
        dedupe_key=f"payment:{attempt.id}:review:client",
    )
    log.warning("payment flagged for review", extra={"attempt": attempt.id, "reason": reason})
    return Settled.FLAGGED


async def _complete_paid_details(session: AsyncSession, attempt: PaymentAttempt, result: StkResult) -> None:
    """A callback after a query-settled payment brings the receipt: record it once."""
    if attempt.mpesa_receipt or not result.receipt or result.source != "callback":
        return
    taken = await session.scalar(
        select(PaymentAttempt.id).where(PaymentAttempt.mpesa_receipt == result.receipt)
    )
    if taken is not None:
        return
    attempt.mpesa_receipt = result.receipt
    attempt.paid_amount_kes = result.amount
    attempt.paid_phone = result.phone
    attempt.transaction_time = result.transaction_time
    if result.amount != attempt.amount_kes:
        attempt.review_reason = f"callback amount {result.amount} differs from {attempt.amount_kes}"
    await audit.record(
        session,
        actor="system",
        action="payment.receipt_recorded",
        subject_type="payment",
        subject_id=attempt.id,
        details={"receipt": result.receipt, "amount_kes": result.amount},
    )


async def _settle_failure(
    session: AsyncSession, attempt: PaymentAttempt, result: StkResult, *, settings: Settings, now: datetime
) -> Settled:
    if attempt.status not in SETTLEABLE_FAILURE_SOURCES:
        return Settled.DUPLICATE  # already ended; a failure never overrides a result
    info = describe_result(result.result_code)
    event = FAILURE_EVENTS[info.outcome]
    previous = attempt.status
    new = await transition_payment(
        session,
        attempt.id,
        event,
        result_code=str(result.result_code)[:20],
        result_desc=(result.result_desc or "")[:300],
        settled_at=now,
    )
    booking = await session.get_one(Booking, attempt.booking_id)
    await audit.record_payment_transition(
        session,
        attempt.id,
        previous=previous,
        new=new,
        reason=f"{result.source} ResultCode {result.result_code}: {info.title}",
    )
    log.info(
        "payment failed",
        extra={
            "attempt": attempt.id,
            "result_code": str(result.result_code),
            "reason": info.title,
            "known_code": info.known,
            "phone": mask_phone(attempt.phone),
        },
    )
    if not info.known:
        log.warning(
            "unknown M-Pesa ResultCode, review",
            extra={"attempt": attempt.id, "result_code": str(result.result_code)},
        )
    await notify_payment_failed(
        session, attempt, booking, reason=info.message, test_mode=is_test_environment(attempt.environment)
    )
    return Settled.FAILED


async def _notify_paid(
    session: AsyncSession, attempt: PaymentAttempt, booking: Booking, result: StkResult, *, settings: Settings
) -> None:
    client = await session.get_one(Client, booking.client_id)
    therapist = await session.get_one(Therapist, booking.therapist_id)
    session_type = await session.get_one(SessionType, booking.session_type_id)
    data = paid_message_data(
        attempt_id=attempt.id,
        amount_kes=attempt.amount_kes,
        booking=booking,
        client_name=client.name,
        therapist_name=therapist.name,
        session_type_name=session_type.name,
        minutes=session_type.minutes,
        result=result,
        test_mode=is_test_environment(attempt.environment),  # the attempt's mode, not the boot mode
    )
    key = paid_dedupe_key(attempt.id)
    await notifications.notify_client(
        session, client, template=PAID_CLIENT_TEMPLATE, data=data, dedupe_key=f"{key}:client"
    )
    await notifications.notify_therapist(
        session, therapist, template=PAID_THERAPIST_TEMPLATE, data=data, dedupe_key=f"{key}:therapist"
    )
    await notifications.email_client(
        session,
        client,
        email=booking.email or client.email,
        template=PAID_EMAIL_TEMPLATE,
        data=data,
        dedupe_key=f"{key}:email",
    )


# -- what a paid settlement writes (shared with core.services.payments.settlement_batch) -------------

PAID_CLIENT_TEMPLATE = "payment_confirmed_client"
PAID_THERAPIST_TEMPLATE = "payment_received_therapist"
PAID_EMAIL_TEMPLATE = "payment_confirmed_email"


class PaidBooking(Protocol):
    """The booking fields the confirmation messages quote (an ORM row or a plain result row)."""

    @property
    def id(self) -> int: ...
    @property
    def reference(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...
    @property
    def meeting_url(self) -> str | None: ...


def success_values(result: StkResult, *, now: datetime, receipt_is_free: bool = True) -> dict[str, Any]:
    """The attempt columns a success writes (with PAID, or with NEEDS_REVIEW when doubtful)."""
    return {
        "mpesa_receipt": result.receipt if receipt_is_free else None,
        "paid_amount_kes": result.amount,
        "paid_phone": result.phone,
        "transaction_time": result.transaction_time,
        "result_code": str(result.result_code),
        "result_desc": (result.result_desc or "")[:300],
        "settled_at": now,
    }


def paid_reason(result: StkResult, previous: str) -> str:
    """The audit reason of an attempt's move to PAID (a late success names the status it left)."""
    late = previous != PaymentStatus.AWAITING_CUSTOMER and previous != PaymentStatus.UNCLEAR
    return f"{result.source} ResultCode 0" + (" (late success after " + previous + ")" if late else "")


def booking_paid_reason(attempt_id: int) -> str:
    """The audit reason of a booking's move to CONFIRMED."""
    return f"paid by attempt {attempt_id}"


def paid_dedupe_key(attempt_id: int) -> str:
    """Prefix of the confirmation messages' dedupe keys (``:client``, ``:therapist``, ``:email``)."""
    return f"payment:{attempt_id}:confirmed"


def paid_message_data(
    *,
    attempt_id: int,
    amount_kes: int,
    booking: PaidBooking,
    client_name: str | None,
    therapist_name: str,
    session_type_name: str,
    minutes: int,
    result: StkResult,
    test_mode: bool,
) -> dict[str, Any]:
    """The template data of the three confirmation messages (client, practitioner, e-mail)."""
    return {
        "reference": booking.reference,
        "booking_id": booking.id,
        "attempt_id": attempt_id,
        "therapist_name": therapist_name,
        "client_name": client_name or "Client",
        "session_type": session_type_name,
        "minutes": minutes,
        "starts_at_local": format_nairobi(booking.starts_at),
        "starts_at_iso": booking.starts_at.isoformat(),
        "ends_at_iso": booking.ends_at.isoformat(),
        "amount_kes": amount_kes,
        "amount_text": format_kes(amount_kes),
        "receipt": result.receipt or "(pending)",
        "paid_at_local": format_nairobi(result.transaction_time) if result.transaction_time else "",
        "meeting_url": booking.meeting_url,
        "test_mode": test_mode,
    }


async def notify_payment_failed(
    session: AsyncSession, attempt: PaymentAttempt, booking: Booking, *, reason: str, test_mode: bool
) -> None:
    """Queue the client's "payment not completed" notice with its Retry button (Properties 27, 31, 63)."""
    client = await session.get_one(Client, attempt.client_id)
    await notifications.notify_client(
        session,
        client,
        template="payment_failed_client",
        data={
            "reference": booking.reference,
            "amount_kes": attempt.amount_kes,
            "reason": reason,
            "booking_id": booking.id,
            "attempt_id": attempt.id,
            "test_mode": test_mode,
        },
        dedupe_key=f"payment:{attempt.id}:failed:client",
    )
