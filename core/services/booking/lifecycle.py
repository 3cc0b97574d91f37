"""Booking use cases: request, approve, decline, cancel; clients and practitioner links.

Every function is one unit of work (one transaction). State changes go through
:func:`core.services.audit.apply_transition` (compare-and-set plus audit entry) and queue
their notifications in the same transaction, then wake the outbox after the commit.
Read-only queries live in :mod:`core.services.booking.queries`; views and the error type
in :mod:`core.services.booking.types`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, BookingReschedule, Client, PaymentAttempt, SessionType, Therapist
from core.db.uow import TransitionConflict
from core.dialog.messages import label
from core.dialog.values import APPROVE, DECLINE, action, pay_value
from core.domain.phone import InvalidPhoneNumber, normalise_phone
from core.domain.slots import NAIROBI, free_slots
from core.domain.states import LIVE_PAYMENT_STATUSES, BookingEvent, BookingStatus, PaymentStatus
from core.runtime import Runtime, Wake
from core.services import audit
from core.services.booking import reschedule_holds
from core.services.booking.directory import DirectoryError, validate_email
from core.services.booking.queries import (
    busy_intervals,
    list_client_bookings,
    list_therapist_sessions,
    payment_facts,
    view_of,
)
from core.services.booking.types import (
    BookingError,
    BookingView,
    ClientRef,
    TherapistRef,
    new_approval_code,
    new_reference,
)
from core.services.notifications import notify as notifications
from core.services.settings.mpesa import active_test_mode

log = logging.getLogger(__name__)

_CREATE_TRIES = 3
_PENDING = BookingStatus.PENDING_APPROVAL
_APPROVED_OR_LATER = frozenset({BookingStatus.APPROVED, BookingStatus.CONFIRMED, BookingStatus.COMPLETED})


def starts_at_local(moment: datetime) -> str:
    """The start time as templates show it: ``Mon 03 Jun 2024, 10:00 EAT``."""
    return moment.astimezone(NAIROBI).strftime("%a %d %b %Y, %H:%M EAT")


# -- creating a booking ------------------------------------------------------------------


async def create_booking(
    runtime: Runtime,
    *,
    client_id: int,
    therapist_id: int,
    session_type_id: int,
    starts_at: datetime,
    email: str | None = None,
    channel: str = "telegram",
) -> BookingView:
    """Request a session: PENDING_APPROVAL (Property 1), practitioner notified (Property 2).

    The slot must be free now (weekly hours, no overlap with live bookings, at least 3 h
    ahead, at most 14 days); the partial unique index ``uq_bookings_live_slot`` is the
    backstop when two requests race for the same start (``BookingError("slot_taken")``).
    """
    if starts_at.tzinfo is None:
        raise ValueError("starts_at must be timezone-aware (UTC)")
    clean_email = _clean_email(email)
    for _ in range(_CREATE_TRIES):
        try:
            view = await _create_once(
                runtime,
                client_id=client_id,
                therapist_id=therapist_id,
                session_type_id=session_type_id,
                starts_at=starts_at,
                email=clean_email,
                channel=channel,
            )
        except _CodeCollision:
            continue  # a reference or approval code collided: draw new ones
        runtime.wake(Wake.OUTBOX)
        return view
    raise BookingError("slot_taken", "could not store the booking")


class _CodeCollision(Exception):
    pass


async def _create_once(
    runtime: Runtime,
    *,
    client_id: int,
    therapist_id: int,
    session_type_id: int,
    starts_at: datetime,
    email: str | None,
    channel: str,
) -> BookingView:
    now = runtime.clock()
    async with runtime.uow() as uow:
        session = uow.session
        therapist, session_type, client = await lock_bookable(
            session, therapist_id, session_type_id, client_id
        )
        await check_free_slot(session, therapist, session_type, starts_at, now=now)
        booking = _new_booking(client, therapist, session_type, starts_at, email=email, channel=channel)
        session.add(booking)
        try:
            await session.flush()
        except IntegrityError:
            await uow.rollback()
            if await _slot_is_live(runtime, therapist_id, starts_at):
                raise BookingError("slot_taken", "that slot was just taken") from None
            raise _CodeCollision from None
        if email and not client.email:
            client.email = email
        await _announce_request(session, booking, therapist, session_type, client)
        try:
            await uow.commit()
        except IntegrityError:  # PostgreSQL may only notice at commit in rare plans
            await uow.rollback()
            raise BookingError("slot_taken", "that slot was just taken") from None
        return view_of(booking, therapist, session_type, client)


async def lock_bookable(
    session: AsyncSession, therapist_id: int, session_type_id: int, client_id: int
) -> tuple[Therapist, SessionType, Client]:
    """The practitioner (row locked), session type and client of a request, all bookable."""
    # Lock the practitioner's row (PostgreSQL) so overlapping requests for one calendar
    # are checked one after the other; SQLite transactions are serial anyway.
    therapist = await session.get(Therapist, therapist_id, with_for_update=True)
    session_type = await session.get(SessionType, session_type_id)
    client = await session.get(Client, client_id)
    if therapist is None or session_type is None or client is None:
        raise BookingError("not_found", "therapist, session type or client missing")
    if not therapist.active or not session_type.active:
        raise BookingError("inactive", "therapist or session type not bookable")
    return therapist, session_type, client


async def check_free_slot(
    session: AsyncSession,
    therapist: Therapist,
    session_type: SessionType,
    starts_at: datetime,
    *,
    now: datetime,
) -> None:
    """``BookingError`` unless ``starts_at`` is one of the practitioner's free slots."""
    start = starts_at.astimezone(NAIROBI)
    busy = await busy_intervals(session, therapist.id, now)
    free = free_slots(
        hours=therapist.weekly_hours, minutes=session_type.minutes, busy=busy, day=start.date(), now=now
    )
    if starts_at not in free:
        taken = any(b.start == starts_at for b in busy)
        raise BookingError("slot_taken" if taken else "slot_unavailable", "not a free slot")


def _new_booking(
    client: Client,
    therapist: Therapist,
    session_type: SessionType,
    starts_at: datetime,
    *,
    email: str | None,
    channel: str,
) -> Booking:
    return Booking(
        reference=new_reference(),
        client_id=client.id,
        therapist_id=therapist.id,
        session_type_id=session_type.id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=session_type.minutes),
        price_kes=session_type.price_kes,
        status=_PENDING.value,
        channel=channel[:10],
        email=email,
        approval_code=new_approval_code(),
    )


async def _announce_request(
    session: AsyncSession, booking: Booking, therapist: Therapist, session_type: SessionType, client: Client
) -> None:
    """Audit the new request and ask the practitioner to approve or decline it."""
    await audit.record(
        session,
        actor=f"client:{client.id}",
        action="booking.created",
        subject_type="booking",
        subject_id=booking.id,
        details={
            "reference": booking.reference,
            "therapist_id": therapist.id,
            "session_type_id": session_type.id,
            "starts_at": booking.starts_at.isoformat(),
            "price_kes": booking.price_kes,
            "status": booking.status,
            "channel": booking.channel,
        },
    )
    await notifications.notify_therapist(
        session,
        therapist,
        template="booking_requested_therapist",
        data={
            **common_data(booking, therapist, session_type, client),
            "approval_code": booking.approval_code,
            "buttons": [
                [label("approve"), action(APPROVE, booking.id)],
                [label("decline"), action(DECLINE, booking.id)],
            ],
        },
        dedupe_key=f"booking:{booking.id}:requested:therapist",
    )


async def _slot_is_live(runtime: Runtime, therapist_id: int, starts_at: datetime) -> bool:
    async with runtime.uow() as uow:
        found = await uow.session.scalar(
            select(Booking.id).where(
                Booking.therapist_id == therapist_id,
                Booking.starts_at == starts_at,
                Booking.status.in_(
                    [BookingStatus.PENDING_APPROVAL, BookingStatus.APPROVED, BookingStatus.CONFIRMED]
                ),
            )
        )
        return found is not None


def _clean_email(email: str | None) -> str | None:
    if email is None or not email.strip():
        return None
    try:
        return validate_email(email)
    except DirectoryError:
        raise BookingError("invalid_email", "not an e-mail address") from None


def common_data(
    booking: Booking, therapist: Therapist, session_type: SessionType, client: Client
) -> dict[str, Any]:
    return {
        "reference": booking.reference,
        "booking_id": booking.id,
        "client_name": client.name or "Client",
        "therapist_name": therapist.name,
        "session_type": session_type.name,
        "minutes": session_type.minutes,
        "starts_at_local": starts_at_local(booking.starts_at),
        "amount_kes": booking.price_kes,
    }


# -- the practitioner's decision -----------------------------------------------------------


async def approve_booking(runtime: Runtime, *, therapist_id: int, booking_id: int) -> BookingView:
    """PENDING_APPROVAL → APPROVED by the booking's own practitioner (Property 3).

    The client is told with a "Pay with M-Pesa" option (Property 4) and, when an e-mail
    address is known, gets an e-mail with payment instructions (Property 60).
    A second press finds the booking approved already: ``BookingError("already_approved")``.
    """
    return await _decide(runtime, therapist_id=therapist_id, booking_id=booking_id, approve=True)


async def decline_booking(
    runtime: Runtime, *, therapist_id: int, booking_id: int, reason: str | None = None
) -> BookingView:
    """PENDING_APPROVAL → DECLINED by the booking's own practitioner; the client is told."""
    return await _decide(
        runtime, therapist_id=therapist_id, booking_id=booking_id, approve=False, reason=reason
    )


async def booking_id_for_code(runtime: Runtime, *, therapist_id: int, code: str) -> int:
    """The booking of this practitioner with approval code ``code`` (SMS "A<code>")."""
    clean = code.strip().upper()
    async with runtime.uow() as uow:
        found = await uow.session.scalar(
            select(Booking.id).where(Booking.approval_code == clean, Booking.therapist_id == therapist_id)
        )
    if found is None:
        raise BookingError("not_found", "no booking with that code")
    return int(found)


async def _decide(
    runtime: Runtime, *, therapist_id: int, booking_id: int, approve: bool, reason: str | None = None
) -> BookingView:
    now = runtime.clock()
    event = BookingEvent.APPROVE if approve else BookingEvent.DECLINE
    async with runtime.uow() as uow:
        session = uow.session
        await audit.lock_chain(session)  # chain lock before the row lock, as payments do (no deadlock)
        booking = await session.get(Booking, booking_id)
        if booking is None or booking.therapist_id != therapist_id:
            raise BookingError("not_found", "not this practitioner's booking")
        _check_pending(booking)
        if booking.starts_at <= now:
            raise BookingError("too_late", "the start time has passed", reference=booking.reference)
        try:
            await audit.apply_transition(
                session, "booking", booking.id, event, previous=_PENDING, actor=f"therapist:{therapist_id}",
                reason="approved by the practitioner" if approve else "declined by the practitioner",
                status_reason=reason[:200] if reason else None,
            )
        except TransitionConflict:
            await session.refresh(booking)  # someone else decided first
            _check_pending(booking)
            raise BookingError("not_pending", reference=booking.reference, status=booking.status) from None
        await session.refresh(booking)
        therapist = await session.get_one(Therapist, booking.therapist_id)
        client = await session.get_one(Client, booking.client_id)
        session_type = await session.get_one(SessionType, booking.session_type_id)
        data = common_data(booking, therapist, session_type, client)
        if approve:
            test_mode = await active_test_mode(session, runtime)  # the mode the payment will be made in
            await _notify_approved(session, booking, client, data, test_mode=test_mode)
        else:
            declined = {
                k: data[k]
                for k in ("reference", "booking_id", "therapist_name", "session_type", "starts_at_local")
            }
            if reason:
                declined["reason"] = reason[:200]
            await notifications.notify_client(
                session,
                client,
                template="booking_declined_client",
                data=declined,
                dedupe_key=f"booking:{booking.id}:declined:client",
            )
        await uow.commit()
        view = view_of(booking, therapist, session_type, client)
    runtime.wake(Wake.OUTBOX)
    return view


async def _notify_approved(
    session: AsyncSession, booking: Booking, client: Client, data: Mapping[str, Any], *, test_mode: bool
) -> None:
    await notifications.notify_client(
        session,
        client,
        template="booking_approved_client",
        data={**data, "test_mode": test_mode, "buttons": [[label("pay"), pay_value(booking.id)]]},
        dedupe_key=f"booking:{booking.id}:approved:client",
    )
    await notifications.email_client(
        session,
        client,
        email=booking.email or client.email,
        template="booking_approved_email",
        data={**data, "test_mode": test_mode},
        dedupe_key=f"booking:{booking.id}:approved:email",
    )


def _check_pending(booking: Booking) -> None:
    status = BookingStatus(booking.status)
    if status is _PENDING:
        return
    if status in _APPROVED_OR_LATER:
        raise BookingError("already_approved", reference=booking.reference, status=status)
    if status is BookingStatus.DECLINED:
        raise BookingError("already_declined", reference=booking.reference, status=status)
    raise BookingError("not_pending", reference=booking.reference, status=status)


# -- cancelling ----------------------------------------------------------------------------------

_CANCELLABLE = frozenset({BookingStatus.PENDING_APPROVAL, BookingStatus.APPROVED, BookingStatus.CONFIRMED})
_CANCEL_KEYS = ("reference", "booking_id", "session_type", "starts_at_local", "amount_kes")


def client_cancel_refusal(
    status: BookingStatus, starts_at: datetime, *, now: datetime, window: timedelta | None
) -> str | None:
    """Why a client may not cancel this booking themselves; None when they may.

    PENDING_APPROVAL and APPROVED: always allowed. CONFIRMED (paid): ``"paid"`` when no
    window is set (``CLIENT_CANCEL_WINDOW_HOURS`` unset), ``"too_late"`` when the start is
    less than ``window`` away. Any other status: ``"status"``.
    """
    if status in (BookingStatus.PENDING_APPROVAL, BookingStatus.APPROVED):
        return None
    if status is not BookingStatus.CONFIRMED:
        return "status"
    if window is None:
        return "paid"
    if starts_at - now < window:
        return "too_late"
    return None


async def cancel_booking(
    runtime: Runtime,
    *,
    booking_id: int,
    client_id: int | None = None,
    admin_id: int | None = None,
    reason: str | None = None,
) -> BookingView:
    """Cancel a live booking, by its client or by an admin (exactly one of them).

    A client may cancel while the booking is PENDING_APPROVAL or APPROVED, and a CONFIRMED
    one only when ``runtime.settings.client_cancel_window`` allows it
    (:func:`client_cancel_refusal`; ``BookingError("not_cancellable")`` with the refusal as
    ``detail``); an admin may cancel any live booking. Never while a payment for it is in
    progress (its money could still arrive). In the same transaction: reminders are
    cancelled, a paid attempt (it stays PAID) gets a ``booking.refund_due`` audit entry, the
    practitioner is told, and after an admin's cancellation the client too (the client who
    cancels is answered in the chat).
    """
    if (client_id is None) == (admin_id is None):
        raise ValueError("give exactly one of client_id and admin_id")
    now = runtime.clock()
    by_client = client_id is not None
    actor = f"client:{client_id}" if by_client else f"admin:{admin_id}"
    async with runtime.uow() as uow:
        session = uow.session
        await audit.lock_chain(session)  # chain lock before the row lock, as housekeeping does (no deadlock)
        booking = await _cancellable_booking(runtime, session, booking_id, client_id=client_id, now=now)
        previous = BookingStatus(booking.status)
        why = (reason or ("cancelled by the client" if by_client else "cancelled by an admin"))[:200]
        try:
            await audit.apply_transition(
                session, "booking", booking.id, BookingEvent.CANCEL, previous=previous, actor=actor,
                reason=why, only_from=[previous], status_reason=why,
            )
        except TransitionConflict:
            await session.refresh(booking)
            raise BookingError(
                "not_cancellable", "status", reference=booking.reference, status=booking.status
            ) from None
        await session.refresh(booking)
        if previous is BookingStatus.CONFIRMED:
            await notifications.cancel_reminders(session, booking.id)
        # A move waiting for the practitioner's approval no longer holds its slot.
        await reschedule_holds.withdraw(
            session, BookingReschedule.booking_id == booking.id, actor=actor, why="cancelled"
        )
        paid = await _record_refunds_due(session, booking, actor=actor)
        therapist = await session.get_one(Therapist, booking.therapist_id)
        session_type = await session.get_one(SessionType, booking.session_type_id)
        client = await session.get_one(Client, booking.client_id)
        await _notify_cancelled(
            session, booking, therapist, session_type, client,
            by_client=by_client, paid=paid, test_mode=await active_test_mode(session, runtime),
        )
        await uow.commit()
        facts = await payment_facts(session, [booking.id])
        view = view_of(booking, therapist, session_type, client, facts.get(booking.id))
    runtime.wake(Wake.OUTBOX)
    return view


async def _cancellable_booking(
    runtime: Runtime, session: AsyncSession, booking_id: int, *, client_id: int | None, now: datetime
) -> Booking:
    """The booking, if this client (None: an admin) may cancel it now; else ``BookingError``."""
    by_client = client_id is not None
    booking = await session.get(Booking, booking_id)
    if booking is None or (by_client and booking.client_id != client_id):
        raise BookingError("not_found", "no such booking for this client")
    previous = BookingStatus(booking.status)
    if by_client:
        window = runtime.settings.client_cancel_window
        refusal = client_cancel_refusal(previous, booking.starts_at, now=now, window=window)
    else:
        refusal = None if previous in _CANCELLABLE else "status"
    if refusal is not None:
        raise BookingError("not_cancellable", refusal, reference=booking.reference, status=previous)
    if await payment_in_progress(session, booking.id):
        raise BookingError("payment_in_progress", reference=booking.reference, status=previous)
    return booking


async def payment_in_progress(session: AsyncSession, booking_id: int) -> bool:
    """Whether a payment for the booking is still live (its money could still arrive)."""
    live = await session.scalar(
        select(PaymentAttempt.id).where(
            PaymentAttempt.booking_id == booking_id,
            PaymentAttempt.status.in_([s.value for s in LIVE_PAYMENT_STATUSES]),
        )
    )
    return live is not None


async def _record_refunds_due(session: AsyncSession, booking: Booking, *, actor: str) -> list[PaymentAttempt]:
    """One ``booking.refund_due`` audit entry per PAID attempt: the money to give back.

    The attempt itself stays PAID (PAID never changes); the entry is the practice's trail
    for the refund (amount and M-Pesa receipt, never the phone number).
    """
    query = (
        select(PaymentAttempt)
        .where(PaymentAttempt.booking_id == booking.id, PaymentAttempt.status == PaymentStatus.PAID.value)
        .order_by(PaymentAttempt.id)
    )
    paid = list((await session.scalars(query)).all())
    for attempt in paid:
        await audit.record(
            session,
            actor=actor,
            action="booking.refund_due",
            subject_type="booking",
            subject_id=booking.id,
            details={
                "booking_id": booking.id,
                "reference": booking.reference,
                "attempt_id": attempt.id,
                "amount_kes": _paid_amount(attempt),
                "receipt": attempt.mpesa_receipt,
            },
        )
    return paid


def _paid_amount(attempt: PaymentAttempt) -> int:
    return attempt.paid_amount_kes if attempt.paid_amount_kes is not None else attempt.amount_kes


async def _notify_cancelled(
    session: AsyncSession,
    booking: Booking,
    therapist: Therapist,
    session_type: SessionType,
    client: Client,
    *,
    by_client: bool,
    paid: list[PaymentAttempt],
    test_mode: bool,
) -> None:
    data = common_data(booking, therapist, session_type, client)
    refund: dict[str, Any] = {"refund_due": bool(paid)}
    if paid:
        # A refund is a payment message: it carries TEST MODE outside production (Property 78).
        refund.update(
            amount_kes=sum(_paid_amount(a) for a in paid), receipt=paid[0].mpesa_receipt, test_mode=test_mode
        )
    await notifications.notify_therapist(
        session,
        therapist,
        template="booking_cancelled_therapist",
        data={
            **{k: data[k] for k in (*_CANCEL_KEYS, "client_name", "minutes")},
            "cancelled_by": "client" if by_client else "practice",
            **refund,
        },
        dedupe_key=f"booking:{booking.id}:cancelled:therapist",
    )
    if by_client:
        return  # the client who cancelled is answered in the chat: no second message
    await notifications.notify_client(
        session,
        client,
        template="booking_cancelled_client",
        data={
            **{k: data[k] for k in (*_CANCEL_KEYS, "therapist_name")},
            **refund,
        },
        dedupe_key=f"booking:{booking.id}:cancelled:client",
    )


# -- people ---------------------------------------------------------------------------------------


async def find_or_create_client(
    runtime: Runtime,
    channel: str,
    user_key: str,
    display_name: str | None = None,
    phone: str | None = None,
) -> ClientRef:
    """The client behind a chat user, created on first contact.

    Telegram users are found by their user id; SMS users by their number (among clients
    without Telegram, so a number someone typed to pay on Telegram never exposes that
    person's bookings to whoever texts from it). ``phone`` (Telegram: the user's own shared
    contact) fills an empty phone field; ``display_name`` an empty name.
    """
    name = " ".join((display_name or "").split())[:120] or None
    own_phone = _maybe_phone(phone)
    # First contact races (two instances, or one user's first two messages at once) end in a
    # unique violation for all but one creator: uq_clients_telegram_user_id for Telegram,
    # uq_clients_sms_phone for SMS. The losers start a fresh unit of work and read the winner.
    for _ in range(3):
        async with runtime.uow() as uow:
            session = uow.session
            if channel == "telegram":
                telegram_id = int(user_key)
                client = await session.scalar(select(Client).where(Client.telegram_user_id == telegram_id))
                if client is None:
                    client = Client(telegram_user_id=telegram_id, phone=own_phone, name=name)
                    session.add(client)
            elif channel == "sms":
                msisdn = normalise_phone(user_key)
                client = await session.scalar(
                    select(Client)
                    .where(
                        Client.phone == msisdn,
                        Client.telegram_user_id.is_(None),
                        Client.anonymised.is_(False),
                    )
                    .order_by(Client.id)
                    .limit(1)
                )
                if client is None:
                    client = Client(phone=msisdn, name=name)
                    session.add(client)
            else:
                raise ValueError(f"unknown channel {channel!r}")
            if client.phone is None and own_phone:
                client.phone = own_phone
            if client.name is None and name:
                client.name = name
            try:
                await uow.commit()
            except IntegrityError:  # another creator won: the next round finds its row
                continue
            return ClientRef(client.id, client.name, client.phone, client.email, client.telegram_user_id)
    raise RuntimeError("could not find or create the client")


def _maybe_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    try:
        return normalise_phone(phone)
    except InvalidPhoneNumber:
        return None


async def link_therapist_telegram(runtime: Runtime, code: str, telegram_user_id: int) -> TherapistRef:
    """Link a practitioner's Telegram account with their one-time code (``/start <code>``).

    The code is consumed. Using it again from the same account is harmless (returns the
    practitioner); an unknown or used code raises ``BookingError("invalid_code")``; an
    account already linked to another practitioner raises ``already_linked``.
    """
    code = code.strip()
    async with runtime.uow() as uow:
        session = uow.session
        owner = await session.scalar(select(Therapist).where(Therapist.telegram_user_id == telegram_user_id))
        therapist = None
        if code:
            therapist = await session.scalar(select(Therapist).where(Therapist.telegram_link_code == code))
        if therapist is None:
            if owner is not None:  # already linked: a repeated /start <code> is harmless
                return _therapist_ref(owner)
            raise BookingError("invalid_code", "unknown or used link code")
        if owner is not None and owner.id != therapist.id:
            raise BookingError("already_linked", "this Telegram account belongs to another practitioner")
        result = await session.execute(
            update(Therapist)
            .where(Therapist.id == therapist.id, Therapist.telegram_link_code == code)
            .values(telegram_user_id=telegram_user_id, telegram_link_code=None, telegram_unreachable=False)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise BookingError("invalid_code", "the code was used a moment ago")
        await audit.record(
            session,
            actor=f"therapist:{therapist.id}",
            action="therapist.telegram_linked",
            subject_type="therapist",
            subject_id=therapist.id,
            details={"telegram_user_id": telegram_user_id},
        )
        try:
            await uow.commit()
        except IntegrityError:
            raise BookingError("already_linked", "this Telegram account is linked already") from None
        return TherapistRef(therapist.id, therapist.name, therapist.phone, telegram_user_id)


def _therapist_ref(t: Therapist) -> TherapistRef:
    return TherapistRef(t.id, t.name, t.phone, t.telegram_user_id)


__all__ = [
    "BookingError",
    "BookingView",
    "approve_booking",
    "booking_id_for_code",
    "cancel_booking",
    "client_cancel_refusal",
    "create_booking",
    "decline_booking",
    "find_or_create_client",
    "link_therapist_telegram",
    "list_client_bookings",
    "list_therapist_sessions",
    "starts_at_local",
]
