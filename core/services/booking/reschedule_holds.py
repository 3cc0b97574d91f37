"""Pending moves that hold a slot (``booking_reschedules`` rows in PENDING): withdrawing them,
and whether a slot is held. Used by :mod:`core.services.booking.reschedule` in its unit of work.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, BookingReschedule
from core.domain.states import (
    LIVE_BOOKING_STATUSES,
    RescheduleEvent,
    RescheduleStatus,
    next_reschedule_status,
)
from core.runtime import Runtime
from core.services import audit

PENDING = RescheduleStatus.PENDING.value


async def withdraw(session: AsyncSession, *where: ColumnElement[bool], actor: str, why: str) -> None:
    """PENDING requests matching ``where`` → WITHDRAWN (audited), releasing their slots."""
    rows = (
        await session.scalars(select(BookingReschedule).where(BookingReschedule.status == PENDING, *where))
    ).all()
    for row in rows:
        row.status = next_reschedule_status(RescheduleStatus.PENDING, RescheduleEvent.WITHDRAW).value
        await audit.record(
            session,
            actor=actor,
            action="booking.reschedule_withdrawn",
            subject_type="booking",
            subject_id=row.booking_id,
            details={"request_id": row.id, "new_starts_at": row.new_starts_at.isoformat(), "why": why},
        )
    if rows:
        await session.flush()


async def withdraw_stale(
    session: AsyncSession, therapist_id: int, starts_at: datetime, *, now: datetime
) -> None:
    """A pending hold on this slot whose booking is no longer live, or has moved, holds nothing."""
    stale = (
        select(BookingReschedule.id)
        .join(Booking, Booking.id == BookingReschedule.booking_id)
        .where(
            BookingReschedule.therapist_id == therapist_id,
            BookingReschedule.new_starts_at == starts_at,
            BookingReschedule.status == PENDING,
            (Booking.status.not_in([s.value for s in LIVE_BOOKING_STATUSES]))
            | (Booking.starts_at != BookingReschedule.old_starts_at)
            | (Booking.starts_at <= now),
        )
    )
    await withdraw(session, BookingReschedule.id.in_(stale), actor="system", why="stale")


async def slot_is_held(runtime: Runtime, therapist_id: int, starts_at: datetime) -> bool:
    async with runtime.uow() as uow:
        found = await uow.session.scalar(
            select(BookingReschedule.id).where(
                BookingReschedule.therapist_id == therapist_id,
                BookingReschedule.new_starts_at == starts_at,
                BookingReschedule.status == PENDING,
            )
        )
        live = await uow.session.scalar(
            select(Booking.id).where(
                Booking.therapist_id == therapist_id,
                Booking.starts_at == starts_at,
                Booking.status.in_([s.value for s in LIVE_BOOKING_STATUSES]),
            )
        )
        return found is not None or live is not None
