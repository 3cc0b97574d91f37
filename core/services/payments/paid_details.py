"""A callback after a query-settled payment: record its receipt, and flag a different amount.

The watchdog's STK Query settles an attempt as PAID without an amount or receipt (Daraja's
query answer has neither). The callback that arrives afterwards brings them: they are
recorded once. If its amount differs from the expected one, the attempt stays PAID and the
booking CONFIRMED (the client did pay: an admin decides whether to collect the difference or
accept it), but the attempt gets a review reason, a ``payment.flagged`` audit entry and a
warning in the log, which puts it in the admin review queue
(``core.services.reporting.paid_review``).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import PaymentAttempt
from core.domain.settlement_rules import StkResult
from core.domain.states import PaymentStatus
from core.services import audit

log = logging.getLogger(__name__)

PAYMENT_FLAGGED = "payment.flagged"  # the action core.services.reporting.paid_review counts by
REVIEW_REASON_MAX = 300  # PaymentAttempt.review_reason is String(300)


def amount_differs_reason(paid: int | None, expected: int) -> str:
    return f"callback amount {paid} differs from {expected}"


async def complete_paid_details(session: AsyncSession, attempt: PaymentAttempt, result: StkResult) -> None:
    """Record a late callback's receipt on a PAID attempt once; flag a different amount."""
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
    await audit.record(
        session,
        actor="system",
        action="payment.receipt_recorded",
        subject_type="payment",
        subject_id=attempt.id,
        details={"receipt": result.receipt, "amount_kes": result.amount},
    )
    if result.amount != attempt.amount_kes:
        await _flag_amount(session, attempt, result.amount)


async def _flag_amount(session: AsyncSession, attempt: PaymentAttempt, paid: int | None) -> None:
    reason = amount_differs_reason(paid, attempt.amount_kes)
    existing = attempt.review_reason
    if not existing:
        attempt.review_reason = reason
    elif reason not in existing:
        attempt.review_reason = f"{existing}; {reason}"[:REVIEW_REASON_MAX]
    await audit.record(
        session,
        actor="system",
        action=PAYMENT_FLAGGED,
        subject_type="payment",
        subject_id=attempt.id,
        details={
            "status": PaymentStatus(attempt.status).value,
            "reason": reason,
            "paid_kes": paid,
            "expected_kes": attempt.amount_kes,
            "receipt": attempt.mpesa_receipt,
        },
    )
    log.warning(
        "paid attempt's callback amount differs, review",
        extra={"attempt": attempt.id, "paid_kes": paid, "expected_kes": attempt.amount_kes},
    )
