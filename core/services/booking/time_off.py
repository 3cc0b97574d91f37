"""A practitioner's own calendar: time off (block, list, remove) and weekly hours from the chat.

Time off never touches a booking. Blocking time that holds live bookings (waiting for
approval, approved or paid) first answers with those bookings and saves nothing; asked again
with ``keep_bookings=True`` it saves the block and the bookings stay as they are — the
practitioner contacts the clients, or an admin cancels. Every change is audited in its own
transaction; the slot computation (:func:`core.services.booking.queries.busy_intervals`)
hides blocked time from the next client who looks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Therapist, TimeOff
from core.domain.slots import WEEKDAYS, Interval, WeeklyHours, to_nairobi
from core.runtime import Runtime
from core.services import audit
from core.services.booking import directory
from core.services.booking.queries import list_therapist_sessions, live_bookings_between
from core.services.booking.types import BookingError, BookingView

LIST_LIMIT = 20


@dataclass(frozen=True)
class TimeOffView:
    id: int
    therapist_id: int
    starts_at: datetime
    ends_at: datetime

    @property
    def interval(self) -> Interval:
        return Interval(self.starts_at, self.ends_at)


@dataclass(frozen=True)
class BlockResult:
    """``saved`` is the new block, or None when nothing was saved: ``clashes`` need an answer
    first (unless kept), or ``covered_by`` already blocks all of it."""

    saved: TimeOffView | None
    clashes: list[BookingView] = field(default_factory=list)
    covered_by: TimeOffView | None = None


def actor_for(therapist_id: int) -> str:
    """The audit actor of a practitioner acting from the chat."""
    return f"therapist:{therapist_id}"


async def block_time(
    runtime: Runtime, therapist_id: int, span: Interval, *, keep_bookings: bool = False
) -> BlockResult:
    """Block ``span`` (UTC) for the practitioner; see the module docstring for live bookings."""
    now = runtime.clock()
    if span.end <= span.start or span.end <= now:
        raise BookingError("invalid_time_off", "time off must end after it starts, in the future")
    async with runtime.uow() as uow:
        session = uow.session
        # The practitioner's row first, as a booking request does: the two are checked one
        # after the other, so a request cannot slip into the block unseen.
        therapist = await session.get(Therapist, therapist_id, with_for_update=True)
        if therapist is None:
            raise BookingError("not_found", "no such practitioner")
        covering = await session.scalar(
            select(TimeOff)
            .where(
                TimeOff.therapist_id == therapist_id,
                TimeOff.starts_at <= span.start,
                TimeOff.ends_at >= span.end,
            )
            .limit(1)
        )
        if covering is not None:
            return BlockResult(None, covered_by=_view(covering))
        clashes = await live_bookings_between(session, therapist_id, span.start, span.end, now=now)
        if clashes and not keep_bookings:
            return BlockResult(None, clashes)
        row = TimeOff(
            therapist_id=therapist_id,
            starts_at=span.start,
            ends_at=span.end,
            created_by=actor_for(therapist_id),
        )
        session.add(row)
        await session.flush()
        await _audit(session, therapist_id, "time_off.added", row, kept=[b.reference for b in clashes])
        await uow.commit()
        return BlockResult(_view(row), clashes)


async def upcoming_time_off(
    runtime: Runtime, therapist_id: int, *, limit: int = LIST_LIMIT
) -> list[TimeOffView]:
    """The practitioner's blocks that have not ended, soonest first."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        rows = (
            await uow.session.scalars(
                select(TimeOff)
                .where(TimeOff.therapist_id == therapist_id, TimeOff.ends_at > now)
                .order_by(TimeOff.starts_at, TimeOff.id)
                .limit(limit)
            )
        ).all()
        return [_view(r) for r in rows]


async def time_off_ahead_by_practitioner(
    runtime: Runtime, *, limit: int = 500
) -> dict[int, list[TimeOffView]]:
    """Every practitioner's blocks that have not ended, soonest first (the admin site's list)."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        rows = (
            await uow.session.scalars(
                select(TimeOff)
                .where(TimeOff.ends_at > now)
                .order_by(TimeOff.starts_at, TimeOff.id)
                .limit(limit)
            )
        ).all()
    found: dict[int, list[TimeOffView]] = {}
    for row in rows:
        found.setdefault(row.therapist_id, []).append(_view(row))
    return found


async def remove_time_off(runtime: Runtime, therapist_id: int, time_off_id: int) -> TimeOffView | None:
    """Remove one of the practitioner's own blocks (its slots are offered again); None if not theirs."""
    async with runtime.uow() as uow:
        session = uow.session
        row = await session.get(TimeOff, time_off_id, with_for_update=True)
        if row is None or row.therapist_id != therapist_id:
            return None
        view = _view(row)
        await session.delete(row)
        await session.flush()
        await _audit(session, therapist_id, "time_off.removed", row)
        await uow.commit()
        return view


async def weekly_hours(runtime: Runtime, therapist_id: int) -> WeeklyHours:
    """The practitioner's weekly hours as stored (``{"mon": [["09:00", "17:00"]], ...}``)."""
    async with runtime.uow() as uow:
        therapist = await uow.session.get(Therapist, therapist_id)
        return dict(therapist.weekly_hours) if therapist else {}


async def change_hours(runtime: Runtime, therapist_id: int, text: str) -> directory.TherapistView:
    """Replace the weekly hours from the chat: the admin site's rule and audit entry
    (``therapist.hours_changed``), with the practitioner as the actor. DirectoryError for bad text."""
    return await directory.set_weekly_hours(
        runtime.uow(), therapist_id, hours=text, actor=actor_for(therapist_id)
    )


async def bookings_outside_hours(
    runtime: Runtime, therapist_id: int, hours: WeeklyHours
) -> list[BookingView]:
    """Upcoming live bookings that the weekly ``hours`` no longer cover (they stay booked)."""
    upcoming = await list_therapist_sessions(runtime, therapist_id, "upcoming")
    return [b for b in upcoming if not _within_hours(b, hours)]


def _within_hours(booking: BookingView, hours: WeeklyHours) -> bool:
    start, end = to_nairobi(booking.starts_at), to_nairobi(booking.ends_at)
    if start.date() != end.date():
        return False  # weekly hours end by midnight
    begin, finish = start.strftime("%H:%M"), end.strftime("%H:%M")  # zero-padded: compare as text
    return any(a <= begin and finish <= b for a, b in hours.get(WEEKDAYS[start.weekday()], ()))


async def _audit(
    session: AsyncSession, therapist_id: int, action: str, row: TimeOff, **extra: object
) -> None:
    details: dict[str, object] = {
        "time_off_id": row.id,
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
    }
    details.update({k: v for k, v in extra.items() if v})
    await audit.record(
        session,
        actor=actor_for(therapist_id),
        action=action,
        subject_type="therapist",
        subject_id=therapist_id,
        details=details,
    )


def _view(row: TimeOff) -> TimeOffView:
    return TimeOffView(row.id, row.therapist_id, row.starts_at, row.ends_at)
