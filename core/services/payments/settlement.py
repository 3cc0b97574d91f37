"""Settle an STK result (from a callback or an STK Query) in one transaction.

Whether a success pays, is flagged or is a duplicate is decided by
:func:`core.domain.settlement_rules.judge_success` (the batch path asks the same function);
this module carries the verdict out. A
failure ends a live attempt with the code stored, leaves the booking APPROVED and tells
the client how to retry. Every state change is a compare-and-set plus an audit entry;
losing a race rolls the whole transaction back and the caller re-reads.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core.config import Settings, is_test_environment
from core.db.models import Booking, Client, PaymentAttempt, SessionType, Therapist
from core.domain.meeting import new_meeting_url
from core.domain.money import format_kes
from core.domain.phone import mask_phone
from core.domain.settlement_rules import (
    AttemptFacts,
    BookingFacts,
    Duplicate,
    Flag,
    NotReady,
    Paid,
    StkResult,
    booking_paid_reason,
    judge_success,
    paid_reason,
)
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
from core.services.notifications.payment_notices import notify_payment_failed
from core.services.payments.paid_details import complete_paid_details

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
    booking = await session.get_one(Booking, attempt.booking_id)
    verdict = judge_success(
        attempt_facts(attempt),
        BookingFacts(status=booking.status),
        result,
        await receipt_owner(session, result.receipt, attempt.id),
    )
    if isinstance(verdict, NotReady):
        return Settled.NOT_READY
    if isinstance(verdict, Duplicate):
        await complete_paid_details(session, attempt, result)  # a late callback's receipt
        return Settled.DUPLICATE
    if isinstance(verdict, Flag):
        details = success_values(result, now=now, receipt_is_free=verdict.receipt_is_free)
        return await _flag(session, attempt, booking, verdict.reason, details, settings=settings, now=now)
    return await _settle_paid(session, attempt, booking, result, verdict, settings=settings, now=now)


async def _settle_paid(
    session: AsyncSession,
    attempt: PaymentAttempt,
    booking: Booking,
    result: StkResult,
    verdict: Paid,
    *,
    settings: Settings,
    now: datetime,
) -> Settled:
    previous = verdict.previous
    await audit.apply_transition(
        session, "payment", attempt.id, PaymentEvent.SUCCEED,
        previous=previous, actor="system", reason=paid_reason(result, previous),
        audit_details={"receipt": result.receipt, "amount_kes": result.amount},
        **success_values(result, now=now),
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
    await audit.apply_transition(
        session, "booking", booking.id, BookingEvent.PAY,
        previous=booking.status, actor=actor, reason=booking_paid_reason(attempt.id),
        meeting_url=meeting_url,
    )
    # Keep the loaded object in step with the UPDATE without scheduling a second one.
    set_committed_value(booking, "meeting_url", meeting_url)
    set_committed_value(booking, "status", BookingStatus.CONFIRMED.value)
    await notifications.create_reminders(session, booking, now=now)
    await _notify_paid(session, attempt, booking, result, settings=settings)


def attempt_facts(attempt: PaymentAttempt) -> AttemptFacts:
    """The attempt as the success decision sees it."""
    return AttemptFacts(id=attempt.id, status=attempt.status, amount_kes=attempt.amount_kes)


async def receipt_owner(session: AsyncSession, receipt: str | None, attempt_id: int) -> int | None:
    """The other attempt that already holds ``receipt``, if any."""
    if not receipt:
        return None
    return await session.scalar(
        select(PaymentAttempt.id).where(
            PaymentAttempt.mpesa_receipt == receipt, PaymentAttempt.id != attempt_id
        )
    )


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
    await audit.apply_transition(
        session, "payment", attempt.id, PaymentEvent.FLAG,
        previous=attempt.status, actor="system", reason=reason, review_reason=reason[:300], **details,
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


async def _settle_failure(
    session: AsyncSession, attempt: PaymentAttempt, result: StkResult, *, settings: Settings, now: datetime
) -> Settled:
    if attempt.status not in SETTLEABLE_FAILURE_SOURCES:
        return Settled.DUPLICATE  # already ended; a failure never overrides a result
    info = describe_result(result.result_code)
    event = FAILURE_EVENTS[info.outcome]
    await audit.apply_transition(
        session, "payment", attempt.id, event,
        previous=attempt.status, actor="system",
        reason=f"{result.source} ResultCode {result.result_code}: {info.title}",
        result_code=str(result.result_code)[:20],
        result_desc=(result.result_desc or "")[:300],
        settled_at=now,
    )
    booking = await session.get_one(Booking, attempt.booking_id)
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
        session,
        attempt,
        booking,
        reason=info.message,
        test_mode=is_test_environment(attempt.environment),
        now=now,
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
