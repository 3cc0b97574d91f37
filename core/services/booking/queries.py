"""Read-only booking queries for the chat: catalogue, free slots, lists with payment status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, BookingReschedule, Client, PaymentAttempt, SessionType, Therapist, TimeOff
from core.domain.slots import BOOKING_HORIZON_DAYS, NAIROBI, Interval, bookable_days, free_slots
from core.domain.states import LIVE_BOOKING_STATUSES, BookingStatus, PaymentStatus, RescheduleStatus
from core.runtime import Runtime
from core.services.booking.types import BookingView, SessionTypeRef, TherapistRef

Scope = Literal["today", "upcoming", "all"]
SCOPES: tuple[Scope, ...] = ("today", "upcoming", "all")
LIST_LIMIT = 50
_LIVE = [s.value for s in LIVE_BOOKING_STATUSES]
PaymentFacts = tuple[PaymentStatus | None, str | None]


# -- building views --------------------------------------------------------------------------


def view_of(
    booking: Booking,
    therapist: Therapist,
    session_type: SessionType,
    client: Client | None,
    facts: PaymentFacts | None = None,
) -> BookingView:
    status, receipt = facts or (None, None)
    return BookingView(
        id=booking.id,
        reference=booking.reference,
        status=BookingStatus(booking.status),
        client_id=booking.client_id,
        client_name=client.name if client else None,
        therapist_id=booking.therapist_id,
        therapist_name=therapist.name,
        session_type_id=booking.session_type_id,
        session_type_name=session_type.name,
        minutes=session_type.minutes,
        starts_at=booking.starts_at,
        ends_at=booking.ends_at,
        price_kes=booking.price_kes,
        channel=booking.channel,
        email=booking.email,
        approval_code=booking.approval_code,
        payment_status=status,
        receipt=receipt,
    )


async def payment_facts(session: AsyncSession, booking_ids: Iterable[int]) -> dict[int, PaymentFacts]:
    """Per booking: the payment status to show (PAID if any attempt paid, else the newest) and receipt."""
    ids = list(booking_ids)
    if not ids:
        return {}
    rows = (
        await session.execute(
            select(PaymentAttempt.booking_id, PaymentAttempt.status, PaymentAttempt.mpesa_receipt)
            .where(PaymentAttempt.booking_id.in_(ids))
            .order_by(PaymentAttempt.id)
        )
    ).all()
    facts: dict[int, PaymentFacts] = {}
    for booking_id, status, receipt in rows:
        if facts.get(booking_id, (None, None))[0] is PaymentStatus.PAID:
            continue
        facts[booking_id] = (PaymentStatus(status), receipt if status == PaymentStatus.PAID else None)
    return facts


async def _views(session: AsyncSession, rows: Sequence[Booking]) -> list[BookingView]:
    if not rows:
        return []
    therapists = {
        t.id: t
        for t in (
            await session.scalars(select(Therapist).where(Therapist.id.in_({b.therapist_id for b in rows})))
        ).all()
    }
    types = {
        s.id: s
        for s in (
            await session.scalars(
                select(SessionType).where(SessionType.id.in_({b.session_type_id for b in rows}))
            )
        ).all()
    }
    clients = {
        c.id: c
        for c in (
            await session.scalars(select(Client).where(Client.id.in_({b.client_id for b in rows})))
        ).all()
    }
    facts = await payment_facts(session, [b.id for b in rows])
    return [
        view_of(
            b, therapists[b.therapist_id], types[b.session_type_id], clients.get(b.client_id), facts.get(b.id)
        )
        for b in rows
    ]


async def busy_intervals(session: AsyncSession, therapist_id: int, now: datetime) -> list[Interval]:
    """The practitioner's time that no new booking may overlap: live bookings, slots held by
    moves waiting for the practitioner's approval, and time off.

    The one rule for "busy": the slots offered in the chat, the check when a booking is made
    or moved and anything else that offers slots all read it, so a block of time off hides its
    slots at once.
    """
    horizon = now + timedelta(days=BOOKING_HORIZON_DAYS + 2)
    booked = (
        await session.execute(
            select(Booking.starts_at, Booking.ends_at).where(
                Booking.therapist_id == therapist_id,
                Booking.status.in_(_LIVE),
                Booking.ends_at > now,
                Booking.starts_at < horizon,
            )
        )
    ).all()
    held = await _held_by_moves(session, therapist_id, now, horizon)
    away = (
        await session.execute(
            select(TimeOff.starts_at, TimeOff.ends_at).where(
                TimeOff.therapist_id == therapist_id, TimeOff.ends_at > now, TimeOff.starts_at < horizon
            )
        )
    ).all()
    return [Interval(start, end) for start, end in [*booked, *held, *away]]


async def _held_by_moves(
    session: AsyncSession, therapist_id: int, now: datetime, horizon: datetime
) -> list[tuple[datetime, datetime]]:
    """Slots held by pending moves of live bookings (RESCHEDULE_NEEDS_APPROVAL)."""
    rows = await session.execute(
        select(BookingReschedule.new_starts_at, BookingReschedule.new_ends_at)
        .join(Booking, Booking.id == BookingReschedule.booking_id)
        .where(
            BookingReschedule.therapist_id == therapist_id,
            BookingReschedule.status == RescheduleStatus.PENDING.value,
            BookingReschedule.new_ends_at > now,
            BookingReschedule.new_starts_at < horizon,
            Booking.status.in_(_LIVE),
        )
    )
    return [(start, end) for start, end in rows.all()]


async def live_bookings_between(
    session: AsyncSession, therapist_id: int, start: datetime, end: datetime, *, now: datetime
) -> list[BookingView]:
    """The practitioner's live bookings overlapping ``start``..``end`` that have not ended, soonest first."""
    rows = (
        await session.scalars(
            select(Booking)
            .where(
                Booking.therapist_id == therapist_id,
                Booking.status.in_(_LIVE),
                Booking.starts_at < end,
                Booking.ends_at > start,
                Booking.ends_at > now,
            )
            .order_by(Booking.starts_at, Booking.id)
            .limit(LIST_LIMIT)
        )
    ).all()
    return await _views(session, rows)


# -- catalogue and free time ---------------------------------------------------------------------


async def bookable_therapists(runtime: Runtime) -> list[TherapistRef]:
    """Active practitioners, by name."""
    async with runtime.uow() as uow:
        rows = (
            await uow.session.scalars(
                select(Therapist).where(Therapist.active.is_(True)).order_by(Therapist.name, Therapist.id)
            )
        ).all()
        return [TherapistRef(t.id, t.name, t.phone, t.telegram_user_id) for t in rows]


async def active_session_types(runtime: Runtime) -> list[SessionTypeRef]:
    """Active session types, cheapest first."""
    async with runtime.uow() as uow:
        rows = (
            await uow.session.scalars(
                select(SessionType)
                .where(SessionType.active.is_(True))
                .order_by(SessionType.price_kes, SessionType.name)
            )
        ).all()
        return [SessionTypeRef(s.id, s.name, s.minutes, s.price_kes) for s in rows]


async def therapist_ref(runtime: Runtime, therapist_id: int) -> TherapistRef | None:
    async with runtime.uow() as uow:
        t = await uow.session.get(Therapist, therapist_id)
        return TherapistRef(t.id, t.name, t.phone, t.telegram_user_id) if t and t.active else None


async def session_type_ref(runtime: Runtime, session_type_id: int) -> SessionTypeRef | None:
    async with runtime.uow() as uow:
        s = await uow.session.get(SessionType, session_type_id)
        return SessionTypeRef(s.id, s.name, s.minutes, s.price_kes) if s and s.active else None


async def available_days(runtime: Runtime, therapist_id: int, minutes: int) -> list[date]:
    """Nairobi dates in the next 14 days with at least one free slot."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        therapist = await uow.session.get(Therapist, therapist_id)
        if therapist is None or not therapist.active:
            return []
        busy = await busy_intervals(uow.session, therapist_id, now)
        return bookable_days(hours=therapist.weekly_hours, minutes=minutes, busy=busy, now=now)


async def available_slots(runtime: Runtime, therapist_id: int, minutes: int, day: date) -> list[datetime]:
    """Free start times (UTC) on the Nairobi date ``day``."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        therapist = await uow.session.get(Therapist, therapist_id)
        if therapist is None or not therapist.active:
            return []
        busy = await busy_intervals(uow.session, therapist_id, now)
        return free_slots(hours=therapist.weekly_hours, minutes=minutes, busy=busy, day=day, now=now)


# -- who is this chat user -------------------------------------------------------------------------


async def therapist_for_user(runtime: Runtime, channel: str, user_key: str) -> TherapistRef | None:
    """The active practitioner behind a Telegram user id or an SMS number, if any."""
    async with runtime.uow() as uow:
        query = select(Therapist).where(Therapist.active.is_(True))
        if channel == "telegram":
            try:
                query = query.where(Therapist.telegram_user_id == int(user_key))
            except ValueError:
                return None
        elif channel == "sms":
            query = query.where(Therapist.phone == user_key)
        else:
            return None
        t = await uow.session.scalar(query.order_by(Therapist.id).limit(1))
        return TherapistRef(t.id, t.name, t.phone, t.telegram_user_id) if t else None


# -- lists ------------------------------------------------------------------------------------------


async def list_client_bookings(
    runtime: Runtime, client_id: int, *, include_past: bool = False, limit: int = 10
) -> list[BookingView]:
    """The client's bookings (upcoming unless ``include_past``), soonest first, with payment status."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        query = select(Booking).where(Booking.client_id == client_id)
        if not include_past:
            query = query.where(Booking.ends_at > now)
        rows = (await uow.session.scalars(query.order_by(Booking.starts_at, Booking.id).limit(limit))).all()
        return await _views(uow.session, rows)


async def client_booking(runtime: Runtime, client_id: int, booking_id: int) -> BookingView | None:
    """One of the client's bookings (None when it is not theirs)."""
    async with runtime.uow() as uow:
        booking = await uow.session.get(Booking, booking_id)
        if booking is None or booking.client_id != client_id:
            return None
        return (await _views(uow.session, [booking]))[0]


async def payable_bookings(runtime: Runtime, client_id: int) -> list[BookingView]:
    """The client's APPROVED bookings that have not started: the ones that can be paid."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        rows = (
            await uow.session.scalars(
                select(Booking)
                .where(
                    Booking.client_id == client_id,
                    Booking.status == BookingStatus.APPROVED,
                    Booking.starts_at > now,
                )
                .order_by(Booking.starts_at, Booking.id)
            )
        ).all()
        return await _views(uow.session, rows)


async def last_payment_phone(
    runtime: Runtime, *, client_id: int, booking_id: int | None = None
) -> str | None:
    """The number of the client's newest payment attempt (for this booking, if given)."""
    async with runtime.uow() as uow:
        query = select(PaymentAttempt.phone).where(PaymentAttempt.client_id == client_id)
        if booking_id is not None:
            query = query.where(PaymentAttempt.booking_id == booking_id)
        return await uow.session.scalar(query.order_by(PaymentAttempt.id.desc()).limit(1))


async def pending_requests(runtime: Runtime, therapist_id: int) -> list[BookingView]:
    """Requests waiting for this practitioner's decision, soonest first."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        rows = (
            await uow.session.scalars(
                select(Booking)
                .where(
                    Booking.therapist_id == therapist_id,
                    Booking.status == BookingStatus.PENDING_APPROVAL,
                    Booking.starts_at > now,
                )
                .order_by(Booking.starts_at, Booking.id)
                .limit(LIST_LIMIT)
            )
        ).all()
        return await _views(uow.session, rows)


async def list_therapist_sessions(
    runtime: Runtime, therapist_id: int, scope: Scope = "upcoming"
) -> list[BookingView]:
    """The practitioner's sessions with payment status and receipts (Properties 33, 34, 36).

    ``today``: today's (Nairobi) requested, approved, paid and completed sessions;
    ``upcoming``: live sessions that have not ended, soonest first; ``all``: every booking,
    newest start first (at most 50).
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    now = runtime.clock()
    async with runtime.uow() as uow:
        query = select(Booking).where(Booking.therapist_id == therapist_id)
        if scope == "today":
            day = now.astimezone(NAIROBI).date()
            start = datetime.combine(day, time(0), NAIROBI)
            query = query.where(
                Booking.starts_at >= start,
                Booking.starts_at < start + timedelta(days=1),
                Booking.status.in_([*_LIVE, BookingStatus.COMPLETED.value]),
            ).order_by(Booking.starts_at, Booking.id)
        elif scope == "upcoming":
            query = query.where(Booking.ends_at > now, Booking.status.in_(_LIVE)).order_by(
                Booking.starts_at, Booking.id
            )
        else:
            query = query.order_by(Booking.starts_at.desc(), Booking.id.desc())
        rows = (await uow.session.scalars(query.limit(LIST_LIMIT))).all()
        return await _views(uow.session, rows)
