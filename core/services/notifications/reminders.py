"""SMS reminders 24 h and 1 h before a confirmed session (Properties 64, 65).

A ``reminders`` row per (booking, kind) is written when the booking is confirmed, in the
same transaction. An APScheduler interval job calls :func:`run_due_reminders`, which in
ONE transaction claims due rows (core.db.claims: PostgreSQL ``FOR UPDATE SKIP LOCKED`` + a
conditional UPDATE on both backends) and writes their messages to the outbox with a dedupe
key. The claim, the reminder row's new state and its outbox rows commit together, so a crash
(or a killed worker: its transaction rolls back, its row locks go) either leaves the
reminder due (it runs again) or hands it over completely: never lost, never queued twice,
safe with several processes; the lease never outlives the transaction. APScheduler only
provides the tick; no job store is used.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import claims
from core.db.claims import new_worker_id
from core.db.models import Booking, Client, Outbox, Reminder, SessionType, Therapist
from core.db.statements import insert_ignore
from core.domain.slots import format_nairobi
from core.domain.states import BookingStatus
from core.runtime import Runtime, Wake
from core.services.notifications import outbox_store as store

log = logging.getLogger(__name__)

REMINDER_OFFSETS: tuple[tuple[str, timedelta], ...] = (
    ("24h", timedelta(hours=24)),
    ("1h", timedelta(hours=1)),
)
PENDING, SENT, SKIPPED = "PENDING", "SENT", "SKIPPED"
DEFAULT_INTERVAL_SECONDS = 30
REMINDER_JOB_ID = "smiling-steps-reminders"
# The claim lives inside one transaction (it commits with the reminder's new state), so this
# only has to outlast that transaction; a dead worker's transaction rolls back with its claim.
CLAIM_LEASE = timedelta(minutes=5)


def plan_reminders(starts_at: datetime, now: datetime) -> list[tuple[str, datetime]]:
    """(kind, due time) of the reminders still worth sending for a session at ``starts_at``.

    A reminder whose time has already passed at confirmation is not planned: confirmed
    less than 24 h ahead → only the 1 h reminder; less than 1 h ahead → none.
    """
    return [(kind, starts_at - offset) for kind, offset in REMINDER_OFFSETS if starts_at - offset >= now]


REMINDER_UNIQUE = ("booking_id", "kind")


def reminder_row(booking_id: int, kind: str, due_at: datetime) -> dict[str, Any]:
    """A new, pending reminder row (one per booking and kind)."""
    return {"booking_id": booking_id, "kind": kind, "due_at": due_at, "status": PENDING}


def new_reminder_rows(booking_id: int, starts_at: datetime, now: datetime) -> list[dict[str, Any]]:
    """The rows a just-confirmed booking with no reminders yet gets (batch settlement)."""
    return [reminder_row(booking_id, kind, due) for kind, due in plan_reminders(starts_at, now)]


async def create_reminders(session: AsyncSession, booking: Booking, *, now: datetime) -> list[str]:
    """Plan the reminders of a booking that just became CONFIRMED (caller's transaction).

    Idempotent; also right after a reschedule: a reminder already sent for the old time is
    armed again for the new one, a pending one moves, one no longer worth sending goes.
    Returns the kinds now pending, e.g. ``["24h", "1h"]``.
    """
    planned = dict(plan_reminders(booking.starts_at, now))
    rows = await session.scalars(select(Reminder).where(Reminder.booking_id == booking.id))
    existing = {r.kind: r for r in rows.all()}
    armed: list[str] = []
    for kind, _offset in REMINDER_OFFSETS:
        row = existing.get(kind)
        due = planned.get(kind)
        if due is None:
            if row is not None and row.status == PENDING:
                await session.execute(delete(Reminder).where(Reminder.id == row.id))
            continue
        if row is None:
            await session.execute(
                insert_ignore(session, Reminder, unique=REMINDER_UNIQUE).values(
                    **reminder_row(booking.id, kind, due)
                )
            )
        elif row.status == PENDING or row.due_at != due:
            await session.execute(
                update(Reminder)
                .where(Reminder.id == row.id)
                .values(due_at=due, status=PENDING, sent_at=None, claimed_until=None, claimed_by=None)
                .execution_options(synchronize_session=False)
            )
        else:
            continue  # already handled for this very start time
        armed.append(kind)
    return armed


async def cancel_reminders(session: AsyncSession, booking_id: int) -> int:
    """Remove the booking's pending reminders (cancel/reschedule); returns how many.

    Reminder messages already handed to the outbox but not yet sent are cancelled too.
    """
    result = await session.execute(
        delete(Reminder).where(Reminder.booking_id == booking_id, Reminder.status == PENDING)
    )
    await session.execute(
        update(Outbox)
        .where(Outbox.dedupe_key.like(f"reminder:{int(booking_id)}:%"), Outbox.status == store.PENDING)
        .values(
            status=store.CANCELLED, claimed_until=None, claimed_by=None,
            last_error="booking cancelled or moved",
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def reminder_dedupe_key(booking: Booking, kind: str, role: str) -> str:
    """``reminder:<booking>:<kind>:<role>:<start, UTC>`` (the start time lets a rescheduled
    session be reminded again; one message per booking, kind, recipient and start time)."""
    return f"reminder:{booking.id}:{kind}:{role}:{booking.starts_at.astimezone(UTC):%Y%m%dT%H%MZ}"


async def run_due_reminders(
    runtime: Runtime, *, now: datetime | None = None, limit: int = 200, worker: str | None = None
) -> int:
    """Hand every due reminder to the outbox; returns the number of messages queued.

    Skips (status SKIPPED) reminders of bookings that are no longer CONFIRMED, whose
    session has already started, and a 24 h reminder that is only processed once the 1 h
    one is due (the 1 h reminder covers it).
    """
    now = now or runtime.clock()
    worker = worker or new_worker_id("reminders")
    queued = 0
    while True:
        async with runtime.uow() as uow:
            count, seen = await _process_batch(uow.session, now=now, limit=limit, worker=worker)
            await uow.commit()
        queued += count
        if seen < limit:
            return queued


async def _process_batch(session: AsyncSession, *, now: datetime, limit: int, worker: str) -> tuple[int, int]:
    """Claim and hand over one batch in the caller's transaction: (messages queued, rows claimed)."""
    claimed = await claims.claim_batch(
        session, Reminder, due=(Reminder.status == PENDING) & (Reminder.due_at <= now),
        order_by=(Reminder.due_at, Reminder.id), limit=limit, now=now, until=now + CLAIM_LEASE, worker=worker,
    )
    queued = 0
    for (reminder_id,) in claimed:
        reminder = await session.get_one(Reminder, reminder_id)
        booking = await session.get_one(Booking, reminder.booking_id)
        skip = _skip_reason(reminder, booking, now)
        await session.execute(
            update(Reminder)
            .where(Reminder.id == reminder_id, Reminder.claimed_by == worker)
            .values(
                status=SKIPPED if skip else SENT, sent_at=None if skip else now,
                claimed_until=None, claimed_by=None,
            )
            .execution_options(synchronize_session=False)
        )
        if skip:
            log.info("reminder skipped", extra={"booking": booking.id, "kind": reminder.kind, "reason": skip})
            continue
        queued += await _enqueue_reminder(session, booking, reminder.kind, now=now)
    return queued, len(claimed)


def _skip_reason(reminder: Reminder, booking: Booking, now: datetime) -> str | None:
    if booking.status != BookingStatus.CONFIRMED:
        return f"booking is {booking.status}"
    if booking.starts_at <= now:
        return "session already started"
    if reminder.kind == "24h" and now >= booking.starts_at - timedelta(hours=1):
        return "the 1 h reminder is due"
    return None


async def _enqueue_reminder(session: AsyncSession, booking: Booking, kind: str, *, now: datetime) -> int:
    client = await session.get_one(Client, booking.client_id)
    therapist = await session.get_one(Therapist, booking.therapist_id)
    session_type = await session.get(SessionType, booking.session_type_id)
    data: dict[str, Any] = {
        "reference": booking.reference,
        "booking_id": booking.id,
        "therapist_name": therapist.name,
        "client_name": client.name,
        "session_type": session_type.name if session_type else None,
        "starts_at_local": format_nairobi(booking.starts_at),
        "meeting_url": booking.meeting_url,
        "_route": {"expires_at": booking.starts_at.isoformat()},
    }
    queued = 0
    client_route = _client_route(client)
    if client_route is not None:
        channel, recipient = client_route
        data_c = {**data, "_route": {**data["_route"], "role": "client", "id": client.id}}
        if await store.enqueue(
            session, channel=channel, recipient=recipient, template=f"reminder_{kind}_client", data=data_c,
            dedupe_key=reminder_dedupe_key(booking, kind, "client"), due_at=now,
        ):
            queued += 1
    else:
        log.warning("reminder: client has no phone or Telegram", extra={"booking": booking.id, "kind": kind})
    if kind == "1h" and therapist.phone:
        data_t = {**data, "_route": {**data["_route"], "role": "therapist", "id": therapist.id}}
        if await store.enqueue(
            session, channel="sms", recipient=therapist.phone, template="reminder_1h_therapist", data=data_t,
            dedupe_key=reminder_dedupe_key(booking, kind, "therapist"), due_at=now,
        ):
            queued += 1
    return queued


def _client_route(client: Client) -> tuple[str, str] | None:
    """Reminders go by SMS (the seed's rule); a client without a phone gets Telegram."""
    if client.anonymised:
        return None
    if client.phone:
        return "sms", client.phone
    if client.telegram_user_id and not client.telegram_unreachable:
        return "telegram", str(client.telegram_user_id)
    return None


async def _reminder_job(runtime: Runtime) -> None:
    try:
        queued = await run_due_reminders(runtime)
    except Exception:
        log.exception("reminder pass failed; the next tick retries")
        return
    if queued:
        log.info("reminders queued", extra={"count": queued})
        runtime.wake(Wake.OUTBOX)


def start_reminder_scheduler(
    runtime: Runtime, *, interval_seconds: float = DEFAULT_INTERVAL_SECONDS
) -> AsyncIOScheduler:
    """Start (on the running loop) an AsyncIOScheduler that runs the reminder pass now and
    every ``interval_seconds``; stop it with ``scheduler.shutdown(wait=False)``."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        _reminder_job,
        "interval",
        seconds=interval_seconds,
        args=[runtime],
        id=REMINDER_JOB_ID,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    return scheduler
