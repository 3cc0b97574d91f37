"""One payment attempt for the admin detail page: the row, its booking and its timeline.

The timeline is the audit trail of the attempt and of its booking in chain order: every
transition with its previous and new status, reason and time (Property 68), plus the other
entries about them (initiation, receipt recorded, refund due, review decisions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditEntry, Booking, PaymentAttempt, SessionType
from core.db.uow import UnitOfWork
from core.domain.phone import mask_phone
from core.domain.slots import NAIROBI
from core.mpesa.redact import redact_checkout_id
from core.services.reporting.transactions import ROW_COLUMNS, TransactionRow, joined_attempts, row_of

TIMELINE_LIMIT = 500  # an attempt has a handful of entries; the cap only guards the page


@dataclass(frozen=True)
class TimelineEntry:
    """One audit entry about the attempt or its booking."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str  # "payment 12" / "booking 7"
    previous: str | None
    new: str | None
    reason: str | None
    details: dict[str, Any]

    @property
    def at_local(self) -> datetime:
        return self.at.astimezone(NAIROBI)


@dataclass(frozen=True)
class TransactionDetail:
    """The attempt, its booking's facts and the timeline (oldest first)."""

    row: TransactionRow
    checkout_request_id: str | None  # redacted: the raw id ends with the payer's number
    phone_masked: str
    paid_phone_masked: str | None
    transaction_time: datetime | None
    booking_status: str
    booking_starts_at: datetime
    session_type: str
    price_kes: int
    timeline: tuple[TimelineEntry, ...]


async def transaction_detail(session: AsyncSession, attempt_id: int) -> TransactionDetail | None:
    """The attempt ``attempt_id`` with its booking and timeline, or None when there is none."""
    extra = (
        PaymentAttempt.checkout_request_id,
        PaymentAttempt.phone,
        PaymentAttempt.paid_phone,
        PaymentAttempt.transaction_time,
        Booking.status,
        Booking.starts_at,
        SessionType.name,
        Booking.price_kes,
    )
    query = (
        joined_attempts(select(*ROW_COLUMNS, *extra))
        .join(SessionType, SessionType.id == Booking.session_type_id)
        .where(PaymentAttempt.id == attempt_id)
    )
    found = (await session.execute(query)).first()
    if found is None:
        return None
    row = row_of(found[: len(ROW_COLUMNS)])
    checkout, phone, paid_phone, tx_time, b_status, starts_at, st_name, price = found[len(ROW_COLUMNS) :]
    return TransactionDetail(
        row=row,
        checkout_request_id=redact_checkout_id(checkout) if checkout else None,
        phone_masked=mask_phone(phone),
        paid_phone_masked=mask_phone(paid_phone) if paid_phone else None,
        transaction_time=tx_time.astimezone(NAIROBI) if tx_time else None,
        booking_status=b_status,
        booking_starts_at=starts_at.astimezone(NAIROBI),
        session_type=st_name,
        price_kes=price,
        timeline=await timeline(session, attempt_id=row.id, booking_id=row.booking_id),
    )


async def timeline(session: AsyncSession, *, attempt_id: int, booking_id: int) -> tuple[TimelineEntry, ...]:
    """Audit entries about the attempt or the booking, in chain order."""
    query = (
        select(
            AuditEntry.seq,
            AuditEntry.at,
            AuditEntry.actor,
            AuditEntry.action,
            AuditEntry.subject_type,
            AuditEntry.subject_id,
            AuditEntry.details,
        )
        .where(
            or_(
                and_(AuditEntry.subject_type == "payment", AuditEntry.subject_id == str(attempt_id)),
                and_(AuditEntry.subject_type == "booking", AuditEntry.subject_id == str(booking_id)),
            )
        )
        .order_by(AuditEntry.seq)
        .limit(TIMELINE_LIMIT)
    )
    entries = []
    for seq, at, actor, action, s_type, s_id, details in (await session.execute(query)).all():
        d = dict(details or {})
        entries.append(
            TimelineEntry(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                subject=f"{s_type} {s_id}",
                previous=d.get("previous"),
                new=d.get("new"),
                reason=d.get("reason") or d.get("note"),
                details=d,
            )
        )
    return tuple(entries)


async def detail_of(uow_factory: Callable[[], UnitOfWork], attempt_id: int) -> TransactionDetail | None:
    """:func:`transaction_detail` in its own read transaction (the admin view's one call)."""
    async with uow_factory() as uow:
        return await transaction_detail(uow.session, attempt_id)
