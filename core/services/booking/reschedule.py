"""Moving a booking to another free slot of the same practitioner and session type.

A client may move an APPROVED (unpaid) or CONFIRMED (paid) booking until
``CLIENT_RESCHEDULE_WINDOW_HOURS`` before its start (:func:`client_reschedule_refusal`);
an admin may move any such booking. The booking keeps its row, reference, status and
payments: only its start and end change, so a paid booking stays paid (no new M-Pesa push).

The new slot is checked exactly as a new request's (:func:`lifecycle.check_free_slot`
under the practitioner's row lock, with the ``uq_bookings_live_slot`` index as the
backstop), so two clients racing for one slot cannot both get it: the loser gets
``BookingError("slot_taken")``. With ``RESCHEDULE_NEEDS_APPROVAL`` a client's move is a
PENDING ``booking_reschedules`` row that holds the new slot (the booking queries count it
as busy) while the booking keeps its old time; the practitioner approves (the move is
applied) or declines (nothing changes). Every function is one unit of work; the
messages it queues are in :mod:`core.services.booking.reschedule_notices`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, BookingReschedule, Therapist
from core.domain.states import (
    RESCHEDULABLE_BOOKING_STATUSES,
    BookingStatus,
    RescheduleEvent,
    RescheduleStatus,
    next_reschedule_status,
)
from core.runtime import Runtime, Wake
from core.services import audit
from core.services.booking import reschedule_holds as holds
from core.services.booking import reschedule_notices as notices
from core.services.booking.lifecycle import check_free_slot, lock_bookable, payment_in_progress
from core.services.booking.queries import payment_facts, view_of
from core.services.booking.types import BookingError, BookingView, new_approval_code
from core.services.notifications import notify as notifications

_TRIES = 3
PENDING, APPLIED = RescheduleStatus.PENDING.value, RescheduleStatus.APPLIED.value


@dataclass(frozen=True)
class RescheduleResult:
    """The booking after the move (or, ``pending``, still at its old time) and the request."""

    booking: BookingView
    request_id: int
    old_starts_at: datetime
    new_starts_at: datetime
    pending: bool  # waiting for the practitioner's approval; the booking has not moved yet


def client_reschedule_refusal(
    status: BookingStatus, starts_at: datetime, *, now: datetime, window: timedelta | None
) -> str | None:
    """Why a client may not move this booking themselves; None when they may.

    ``"status"``: not APPROVED or CONFIRMED; ``"off"``: ``CLIENT_RESCHEDULE_WINDOW_HOURS``
    is set empty; ``"too_late"``: the start is less than ``window`` away.
    """
    if BookingStatus(status) not in RESCHEDULABLE_BOOKING_STATUSES:
        return "status"
    if window is None:
        return "off"
    if starts_at - now < window:
        return "too_late"
    return None


async def reschedule_booking(
    runtime: Runtime,
    *,
    booking_id: int,
    new_starts_at: datetime,
    client_id: int | None = None,
    admin_id: int | None = None,
) -> RescheduleResult:
    """Move a booking (by its client or an admin: exactly one) to ``new_starts_at``.

    A client's move waits for the practitioner when ``RESCHEDULE_NEEDS_APPROVAL`` is on;
    an admin's is applied at once. Errors: ``BookingError`` with ``not_found``,
    ``not_movable`` (detail: the refusal), ``same_time``, ``payment_in_progress``,
    ``slot_taken``, ``slot_unavailable``, ``inactive``.
    """
    if (client_id is None) == (admin_id is None):
        raise ValueError("give exactly one of client_id and admin_id")
    if new_starts_at.tzinfo is None:
        raise ValueError("new_starts_at must be timezone-aware (UTC)")
    hold = client_id is not None and runtime.settings.reschedule_needs_approval
    for _ in range(_TRIES):
        try:
            result = await _reschedule_once(
                runtime,
                booking_id=booking_id,
                new_starts_at=new_starts_at,
                client_id=client_id,
                actor=f"client:{client_id}" if client_id is not None else f"admin:{admin_id}",
                hold=hold,
            )
        except _CodeCollision:
            continue  # a request code collided: draw another
        runtime.wake(Wake.OUTBOX)
        return result
    raise BookingError("slot_taken", "could not store the request")


class _CodeCollision(Exception):
    pass


async def _reschedule_once(
    runtime: Runtime,
    *,
    booking_id: int,
    new_starts_at: datetime,
    client_id: int | None,
    actor: str,
    hold: bool,
) -> RescheduleResult:
    now = runtime.clock()
    async with runtime.uow() as uow:
        session = uow.session
        booking = await _movable_booking(runtime, session, booking_id, client_id=client_id, now=now)
        old = booking.starts_at
        if new_starts_at == old:
            raise BookingError("same_time", reference=booking.reference, status=booking.status)
        therapist, session_type, client = await lock_bookable(
            session, booking.therapist_id, booking.session_type_id, booking.client_id
        )
        # Lock order: practitioner row, then the audit chain (as create_booking), then the
        # booking row (as cancel_booking): no deadlock with either.
        await audit.lock_chain(session)
        await holds.withdraw_stale(session, therapist.id, new_starts_at, now=now)
        await check_free_slot(session, therapist, session_type, new_starts_at, now=now)
        parts = notices.Parts(booking, therapist, session_type, client)
        try:
            row = await _hold_or_move(session, parts, new_starts_at, hold=hold, actor=actor, now=now)
            await uow.commit()
        except IntegrityError:
            await uow.rollback()
            if hold and not await holds.slot_is_held(runtime, therapist.id, new_starts_at):
                raise _CodeCollision from None
            raise BookingError(
                "slot_taken", "that slot was just taken", reference=booking.reference
            ) from None
        return RescheduleResult(await _view(session, parts), row.id, old, new_starts_at, pending=hold)


async def _hold_or_move(
    session: AsyncSession,
    parts: notices.Parts,
    new_starts_at: datetime,
    *,
    hold: bool,
    actor: str,
    now: datetime,
) -> BookingReschedule:
    """Hold the slot and ask the practitioner, or move the booking and tell everyone."""
    booking = parts.booking
    new_ends_at = new_starts_at + timedelta(minutes=parts.session_type.minutes)
    if hold:
        row = await _hold(session, booking, new_starts_at, new_ends_at, actor=actor)
        await notices.announce_request(session, parts, row)
    else:
        row = await _move(session, booking, new_starts_at, new_ends_at, actor=actor, now=now)
        await notices.announce_move(session, parts, row, tell_client=not actor.startswith("client:"))
    return row


async def _movable_booking(
    runtime: Runtime, session: AsyncSession, booking_id: int, *, client_id: int | None, now: datetime
) -> Booking:
    """The booking, if this client (None: an admin) may move it now; else ``BookingError``."""
    booking = await session.get(Booking, booking_id)
    if booking is None or (client_id is not None and booking.client_id != client_id):
        raise BookingError("not_found", "no such booking for this client")
    status = BookingStatus(booking.status)
    if client_id is not None:
        window = runtime.settings.client_reschedule_window
        refusal = client_reschedule_refusal(status, booking.starts_at, now=now, window=window)
    else:
        refusal = None if status in RESCHEDULABLE_BOOKING_STATUSES and booking.starts_at > now else "status"
    if refusal is not None:
        raise BookingError("not_movable", refusal, reference=booking.reference, status=status)
    if await payment_in_progress(session, booking.id):
        raise BookingError("payment_in_progress", reference=booking.reference, status=status)
    return booking


async def _hold(
    session: AsyncSession, booking: Booking, new_starts_at: datetime, new_ends_at: datetime, *, actor: str
) -> BookingReschedule:
    """A PENDING request holding the new slot; an earlier pending request of the booking is withdrawn."""
    await holds.withdraw(session, BookingReschedule.booking_id == booking.id, actor=actor, why="replaced")
    row = _row(booking, new_starts_at, new_ends_at, status=PENDING, actor=actor)
    row.code = new_approval_code()
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="booking.reschedule_requested",
        subject_type="booking",
        subject_id=booking.id,
        details=_details(booking, row),
    )
    return row


async def _move(
    session: AsyncSession,
    booking: Booking,
    new_starts_at: datetime,
    new_ends_at: datetime,
    *,
    actor: str,
    now: datetime,
    row: BookingReschedule | None = None,
) -> BookingReschedule:
    """Move the booking (compare-and-set on its start and status), record it, re-plan reminders."""
    old = booking.starts_at
    result = await session.execute(
        update(Booking)
        .where(
            Booking.id == booking.id,
            Booking.starts_at == old,
            Booking.status.in_([s.value for s in RESCHEDULABLE_BOOKING_STATUSES]),
        )
        .values(starts_at=new_starts_at, ends_at=new_ends_at, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise BookingError("changed", "the booking changed a moment ago", reference=booking.reference)
    await session.refresh(booking)
    if row is None:
        row = _row(booking, new_starts_at, new_ends_at, status=APPLIED, actor=actor, old=old)
        session.add(row)
    await holds.withdraw(session, BookingReschedule.booking_id == booking.id, actor=actor, why="moved")
    await session.flush()
    if booking.status == BookingStatus.CONFIRMED:
        await notifications.create_reminders(session, booking, now=now)  # the old ones move
    await audit.record(
        session,
        actor=actor,
        action="booking.rescheduled",
        subject_type="booking",
        subject_id=booking.id,
        details=_details(booking, row),
    )
    return row


def _row(
    booking: Booking,
    new_starts_at: datetime,
    new_ends_at: datetime,
    *,
    status: str,
    actor: str,
    old: datetime | None = None,
) -> BookingReschedule:
    return BookingReschedule(
        booking_id=booking.id,
        therapist_id=booking.therapist_id,
        old_starts_at=old or booking.starts_at,
        new_starts_at=new_starts_at,
        new_ends_at=new_ends_at,
        status=status,
        requested_by=actor[:60],
    )


def _details(booking: Booking, row: BookingReschedule) -> dict[str, object]:
    return {
        "reference": booking.reference,
        "request_id": row.id,
        "old_starts_at": row.old_starts_at.isoformat(),
        "new_starts_at": row.new_starts_at.isoformat(),
        "status": booking.status,
        "requested_by": row.requested_by,
    }


# -- the practitioner's decision on a pending move ---------------------------------------------------


async def decide_reschedule(
    runtime: Runtime, *, therapist_id: int, request_id: int, approve: bool
) -> RescheduleResult:
    """Approve (the booking moves to the held slot) or decline (it keeps its time) a pending move.

    Only the booking's own practitioner; a second press: ``BookingError("already_decided")``.
    A request whose booking was cancelled, moved or has started is withdrawn
    (``BookingError("changed")``).
    """
    now = runtime.clock()
    actor = f"therapist:{therapist_id}"
    async with runtime.uow() as uow:
        session = uow.session
        await session.get(Therapist, therapist_id, with_for_update=True)  # lock order as above
        await audit.lock_chain(session)
        row, booking = await _pending_request(session, request_id, therapist_id=therapist_id)
        old = booking.starts_at
        if _outdated(booking, row, now=now):
            await holds.withdraw(session, BookingReschedule.id == row.id, actor=actor, why="stale")
            await uow.commit()
            raise BookingError("changed", "the booking changed", reference=booking.reference)
        therapist, session_type, client = await lock_bookable(
            session, booking.therapist_id, booking.session_type_id, booking.client_id
        )
        parts = notices.Parts(booking, therapist, session_type, client)
        try:
            await _decide(session, parts, row, approve=approve, actor=actor, now=now)
            await uow.commit()
        except IntegrityError:  # a backstop only: the hold kept the slot free
            await uow.rollback()
            raise BookingError("slot_taken", reference=booking.reference) from None
        result = RescheduleResult(await _view(session, parts), row.id, old, row.new_starts_at, pending=False)
    runtime.wake(Wake.OUTBOX)
    return result


async def _pending_request(
    session: AsyncSession, request_id: int, *, therapist_id: int
) -> tuple[BookingReschedule, Booking]:
    """The practitioner's request and its booking; ``BookingError`` unless it is still PENDING."""
    row = await session.get(BookingReschedule, request_id)
    if row is None or row.therapist_id != therapist_id:
        raise BookingError("not_found", "not this practitioner's request")
    booking = await session.get_one(Booking, row.booking_id)
    if row.status == RescheduleStatus.WITHDRAWN:
        raise BookingError("changed", "the request was withdrawn", reference=booking.reference)
    if row.status != PENDING:
        raise BookingError("already_decided", row.status, reference=booking.reference, status=booking.status)
    return row, booking


def _outdated(booking: Booking, row: BookingReschedule, *, now: datetime) -> bool:
    """The booking moved, is no longer movable, or one of the two times has come."""
    return (
        booking.starts_at != row.old_starts_at
        or BookingStatus(booking.status) not in RESCHEDULABLE_BOOKING_STATUSES
        or min(booking.starts_at, row.new_starts_at) <= now
    )


async def _decide(
    session: AsyncSession,
    parts: notices.Parts,
    row: BookingReschedule,
    *,
    approve: bool,
    actor: str,
    now: datetime,
) -> None:
    booking = parts.booking
    event = RescheduleEvent.APPROVE if approve else RescheduleEvent.DECLINE
    row.status = next_reschedule_status(RescheduleStatus.PENDING, event).value
    row.decided_at = now
    await session.flush()  # the hold is released before the booking takes the slot
    if approve:
        await _move(session, booking, row.new_starts_at, row.new_ends_at, actor=actor, now=now, row=row)
        await notices.announce_move(session, parts, row, tell_client=True, tell_therapist=False)
        return
    await audit.record(
        session,
        actor=actor,
        action="booking.reschedule_declined",
        subject_type="booking",
        subject_id=booking.id,
        details=_details(booking, row),
    )
    await notices.announce_declined(session, parts, row)


async def _view(session: AsyncSession, parts: notices.Parts) -> BookingView:
    facts = await payment_facts(session, [parts.booking.id])
    return view_of(
        parts.booking, parts.therapist, parts.session_type, parts.client, facts.get(parts.booking.id)
    )


async def request_id_for_code(runtime: Runtime, *, therapist_id: int, code: str) -> int | None:
    """The practitioner's pending move with SMS code ``code`` ("A<code>" / "D<code>"), if any."""
    async with runtime.uow() as uow:
        found = await uow.session.scalar(
            select(BookingReschedule.id).where(
                BookingReschedule.code == code.strip().upper(),
                BookingReschedule.therapist_id == therapist_id,
                BookingReschedule.status == PENDING,
            )
        )
    return int(found) if found is not None else None
