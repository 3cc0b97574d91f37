"""Housekeeping: bookings leave their live states when their time has passed; old chats go.

One run (:func:`run_housekeeping`, every minute from ``serve``):

- a PENDING_APPROVAL booking whose start has passed → EXPIRED ("start time passed without
  approval"), the client told;
- an APPROVED booking whose start has passed unpaid → EXPIRED ("start time passed unpaid"),
  the client told — but never while a payment attempt for it is live (QUEUED,
  AWAITING_CUSTOMER, UNCLEAR): its money could still arrive, so it waits for a later run
  once the watchdog has settled or flagged the attempt;
- a CONFIRMED booking whose end has passed → COMPLETED ("session time over");
- conversations (``dialog_states``) idle for more than :data:`DIALOG_RETENTION` are deleted.

Bookings are handled in batches of :data:`BATCH_SIZE`, one transaction each, so a large
backlog never holds SQLite's single write lock for long. Each change is a compare-and-set
(:func:`core.db.uow.transition_booking`) plus an audit entry; a booking someone else changed
in the meantime is skipped. A late M-Pesa success for an expired booking is not lost:
settlement flags it NEEDS_REVIEW ("money received for a booking in status EXPIRED").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Exists, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, Client, PaymentAttempt, SessionType, Therapist
from core.db.uow import TransitionConflict, transition_booking
from core.dialog.store import DialogStore
from core.domain.slots import format_nairobi
from core.domain.states import LIVE_PAYMENT_STATUSES, BookingEvent, BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services import audit
from core.services.notifications import notify as notifications
from core.services.settings.mpesa import active_test_mode

log = logging.getLogger(__name__)

BATCH_SIZE = 200
DIALOG_RETENTION = timedelta(hours=24)  # a chat is expired after 30 min idle; keep no data long after
EXPIRED_TEMPLATE = "booking_expired_client"

_B = BookingStatus
REASONS = {
    _B.PENDING_APPROVAL: "start time passed without approval",
    _B.APPROVED: "start time passed unpaid",
    _B.CONFIRMED: "session time over",
}


@dataclass(frozen=True)
class HousekeepingResult:
    """What one run did (counts only: it is logged)."""

    expired_pending: int = 0
    expired_unpaid: int = 0
    completed: int = 0
    held_by_live_payment: int = 0  # APPROVED and past their start, but a payment is still live
    conflicts: int = 0  # changed by someone else between our read and our update
    dialogs_purged: int = 0

    @property
    def changed(self) -> int:
        """Bookings moved out of a live state."""
        return self.expired_pending + self.expired_unpaid + self.completed


async def run_housekeeping(
    runtime: Runtime, *, batch_size: int = BATCH_SIZE, dialog_retention: timedelta = DIALOG_RETENTION
) -> HousekeepingResult:
    """Expire and complete bookings whose time has passed, purge idle conversations; return counts."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = runtime.clock()
    counts = {"expired_pending": 0, "expired_unpaid": 0, "completed": 0, "conflicts": 0}
    while True:
        found = await _run_batch(runtime, now, batch_size, counts)
        if found < batch_size:
            break
    held = await _count_held_by_live_payment(runtime, now)
    purged = await DialogStore(runtime).purge(older_than=dialog_retention)
    result = HousekeepingResult(held_by_live_payment=held, dialogs_purged=purged, **counts)
    if result.expired_pending or result.expired_unpaid:
        runtime.wake("outbox")
    if result.changed or result.conflicts or result.dialogs_purged:
        log.info(
            "housekeeping done",
            extra={
                "expired_pending": result.expired_pending,
                "expired_unpaid": result.expired_unpaid,
                "completed": result.completed,
                "held_by_live_payment": result.held_by_live_payment,
                "conflicts": result.conflicts,
                "dialogs_purged": result.dialogs_purged,
            },
        )
    return result


def _live_attempt_exists() -> Exists:
    return exists().where(
        PaymentAttempt.booking_id == Booking.id,
        PaymentAttempt.status.in_([s.value for s in LIVE_PAYMENT_STATUSES]),
    )


def _due(now: datetime) -> ColumnElement[bool]:
    """Bookings whose time is over: the WHERE clause of one batch."""
    return or_(
        and_(Booking.status == _B.PENDING_APPROVAL.value, Booking.starts_at <= now),
        and_(Booking.status == _B.APPROVED.value, Booking.starts_at <= now, ~_live_attempt_exists()),
        and_(Booking.status == _B.CONFIRMED.value, Booking.ends_at <= now),
    )


async def _run_batch(runtime: Runtime, now: datetime, batch_size: int, counts: dict[str, int]) -> int:
    """One transaction over at most ``batch_size`` due bookings; returns how many were found."""
    async with runtime.uow() as uow:
        session = uow.session
        # Chain lock before any row change (no deadlock on PostgreSQL, see audit.lock_chain).
        # Payment initiation takes it too, so no attempt can start between the live-payment
        # check below and the update: it either committed before (and is seen) or it waits
        # and then finds the booking EXPIRED.
        await audit.lock_chain(session)
        bookings = list(
            (
                await session.scalars(
                    select(Booking).where(_due(now)).order_by(Booking.starts_at, Booking.id).limit(batch_size)
                )
            ).all()
        )
        if not bookings:
            return 0
        in_review = await _bookings_with_attempt_in_review(session, [b.id for b in bookings])
        for booking in bookings:
            previous = _B(booking.status)
            event = BookingEvent.COMPLETE if previous is _B.CONFIRMED else BookingEvent.EXPIRE
            reason = REASONS[previous]
            try:
                new = await transition_booking(
                    session, booking.id, event, only_from=[previous], status_reason=reason
                )
            except TransitionConflict:
                counts["conflicts"] += 1
                continue
            await audit.record_transition(
                session,
                actor="system",
                subject_type="booking",
                subject_id=booking.id,
                previous=previous,
                new=new,
                reason=reason,
            )
            if previous is _B.CONFIRMED:
                counts["completed"] += 1
                continue
            counts["expired_pending" if previous is _B.PENDING_APPROVAL else "expired_unpaid"] += 1
            await _notify_expired(
                session,
                booking,
                was_approved=previous is _B.APPROVED,
                under_review=booking.id in in_review,
                test_mode=await active_test_mode(session, runtime),
            )
        await uow.commit()
        return len(bookings)


async def _bookings_with_attempt_in_review(session: AsyncSession, booking_ids: list[int]) -> set[int]:
    rows = await session.scalars(
        select(PaymentAttempt.booking_id).where(
            PaymentAttempt.booking_id.in_(booking_ids),
            PaymentAttempt.status == PaymentStatus.NEEDS_REVIEW.value,
        )
    )
    return set(rows.all())


async def _notify_expired(
    session: AsyncSession, booking: Booking, *, was_approved: bool, under_review: bool, test_mode: bool
) -> None:
    client = await session.get_one(Client, booking.client_id)
    therapist = await session.get_one(Therapist, booking.therapist_id)
    session_type = await session.get_one(SessionType, booking.session_type_id)
    await notifications.notify_client(
        session,
        client,
        template=EXPIRED_TEMPLATE,
        data={
            "reference": booking.reference,
            "booking_id": booking.id,
            "starts_at_local": format_nairobi(booking.starts_at),
            "therapist_name": therapist.name,
            "session_type": session_type.name,
            "was_approved": was_approved,
            "under_review": under_review,  # a payment awaits a human check: do not say "unpaid"
            "test_mode": test_mode,
        },
        dedupe_key=f"booking:{booking.id}:expired:client",
    )


async def _count_held_by_live_payment(runtime: Runtime, now: datetime) -> int:
    async with runtime.uow() as uow:
        held = await uow.session.scalar(
            select(func.count(Booking.id)).where(
                Booking.status == _B.APPROVED.value, Booking.starts_at <= now, _live_attempt_exists()
            )
        )
        return int(held or 0)


__all__ = ["BATCH_SIZE", "DIALOG_RETENTION", "HousekeepingResult", "run_housekeeping"]
