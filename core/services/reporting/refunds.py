"""Which refunds are still owed: the one rule the dashboard and the review queue both count by.

A paid booking that was cancelled leaves a ``booking.refund_due`` audit entry; it stays open
until an admin's ``review.resolved`` entry names it (subject ``refund_due``, id = its seq).
"""

from __future__ import annotations

from sqlalchemy import Select, String, and_, cast, select
from sqlalchemy.orm import aliased

from core.db.models import AuditEntry

REFUND_DUE = "booking.refund_due"
REVIEW_RESOLVED = "review.resolved"


def open_refunds_query() -> Select[AuditEntry]:
    """``booking.refund_due`` entries without a ``review.resolved`` entry naming them."""
    resolved = aliased(AuditEntry)
    return (
        select(AuditEntry)
        .outerjoin(
            resolved,
            and_(
                resolved.action == REVIEW_RESOLVED,
                resolved.subject_type == "refund_due",
                resolved.subject_id == cast(AuditEntry.seq, String),
            ),
        )
        .where(AuditEntry.action == REFUND_DUE, resolved.id.is_(None))
    )
