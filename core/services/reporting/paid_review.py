"""Which PAID attempts still need an admin's look: the one rule the review queue, its actions
and the dashboard count by.

An attempt stays PAID once paid (the client did pay), but settlement or reconciliation may
still find something wrong with it — e.g. the callback that arrives after an STK Query
settled the payment reports a different amount (``payments.paid_details``), or a statement
disagrees (``reconciliation``). Either writes ``review_reason`` and a ``payment.flagged``
audit entry. Such an attempt is open until a ``review.resolved`` entry names it (subject
``payment``, id = attempt id) written after its last flag. A NEEDS_REVIEW attempt an admin
confirmed (PAID with its old review reason, closed by that decision) is not open.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, String, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditEntry, PaymentAttempt
from core.domain.states import PaymentStatus
from core.services.reporting.refunds import REVIEW_RESOLVED

PAYMENT_FLAGGED = "payment.flagged"


def _last_seq(action: str) -> ColumnElement[int | None]:
    return (
        select(func.max(AuditEntry.seq))
        .where(
            AuditEntry.action == action,
            AuditEntry.subject_type == "payment",
            AuditEntry.subject_id == cast(PaymentAttempt.id, String),
        )
        .correlate(PaymentAttempt)
        .scalar_subquery()
    )


def paid_review_open() -> ColumnElement[bool]:
    """PaymentAttempt rows that are PAID, carry a review reason and no later resolution."""
    resolved, flagged = _last_seq(REVIEW_RESOLVED), _last_seq(PAYMENT_FLAGGED)
    return and_(
        PaymentAttempt.status == PaymentStatus.PAID.value,
        PaymentAttempt.review_reason.is_not(None),
        or_(resolved.is_(None), and_(flagged.is_not(None), flagged > resolved)),
    )


async def payment_review_counts(session: AsyncSession) -> tuple[int, int]:
    """(attempts in NEEDS_REVIEW, PAID attempts still to be looked at)."""
    needs_review = await session.scalar(
        select(func.count())
        .select_from(PaymentAttempt)
        .where(PaymentAttempt.status == PaymentStatus.NEEDS_REVIEW.value)
    )
    paid = await session.scalar(select(func.count()).select_from(PaymentAttempt).where(paid_review_open()))
    return needs_review or 0, paid or 0
