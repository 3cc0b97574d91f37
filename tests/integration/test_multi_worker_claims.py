"""Two worker processes on one database handle every item exactly once (issue 13, core.db.claims).

Each worker is a Runtime of its own (its own engine and connection pool) running the outbox
dispatcher, the reminder pass, the watchdog or housekeeping, or a real second OS process
(tests/support/worker_process.py); the two race over the same rows on SQLite and on
PostgreSQL (with TEST_DATABASE_URL). What they send is counted
where it arrived: the Telegram Bot API stand-in, the Africa's Talking simulator, the SMTP
capture server and the Daraja simulator, all over real HTTP/SMTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from core.db.models import AuditEntry, Booking, Outbox, PaymentAttempt, Reminder
from core.db.types import utcnow
from core.domain.states import BookingStatus, PaymentStatus
from core.services.booking.housekeeping import run_housekeeping
from core.services.notifications import notify as notifications
from core.services.notifications.reminders import reminder_row
from tests.conftest import make_settings
from tests.factories import make_attempt, make_booking, make_client, make_therapist
from tests.support.daraja import closed_port
from tests.support.workers import (
    ROOT,
    OutsideWorld,
    StillClock,
    Worker,
    outside_world,
    process_env,
    start_worker,
    worker_settings,
)

DATA = {
    "therapist_name": "Dr. Amani", "session_type": "Individual",
    "starts_at_local": "Mon 30 Nov 2026, 10:00 EAT", "amount_kes": 2500,
}
SMS, TELEGRAM, EMAIL = 100, 60, 40  # the 200 outbox rows
REMINDERS = 50


@asynccontextmanager
async def two_workers(database_url: str) -> AsyncIterator[tuple[OutsideWorld, StillClock, Worker, Worker]]:
    clock = StillClock(utcnow().replace(microsecond=0) + timedelta(seconds=1))
    async with outside_world() as world:
        settings = make_settings(database_url, **worker_settings(world, closed_port()))
        first = start_worker(settings, world, clock)
        second = start_worker(settings, world, clock)
        try:
            yield world, clock, first, second
        finally:
            await first.close()
            await second.close()


async def _queue_outbox(worker: Worker, world: OutsideWorld, clock: StillClock) -> None:
    """200 messages: SMS, Telegram and e-mail, each to its own recipient."""
    messages: list[tuple[str, str, str]] = (
        [("sms", f"2547110{i:05d}", "booking_approved_client") for i in range(SMS)]
        + [("telegram", str(700_000 + i), "booking_approved_client") for i in range(TELEGRAM)]
        + [("email", f"client{i}@example.org", "booking_approved_email") for i in range(EMAIL)]
    )
    for i in range(TELEGRAM):
        world.telegram.add_user(700_000 + i, f"Client {i}", started=True)
    async with worker.runtime.uow() as uow:
        for n, (channel, recipient, template) in enumerate(messages):
            await notifications.enqueue(
                uow.session, channel=channel, recipient=recipient, template=template,
                data={**DATA, "reference": f"SS{n:010d}"}, dedupe_key=f"race:{n}", due_at=clock(),
            )
        await uow.commit()


async def _due_reminders(worker: Worker, clock: StillClock) -> None:
    """50 confirmed sessions 50 minutes ahead whose 1 h reminder is due now (an SMS to the
    client and one to the practitioner, each on a number of their own)."""
    async with worker.runtime.uow() as uow:
        for i in range(REMINDERS):
            therapist = await make_therapist(uow.session, phone=f"2547330{i:05d}")
            client = await make_client(uow.session, phone=f"2547220{i:05d}")
            booking = await make_booking(
                uow.session, status=BookingStatus.CONFIRMED, client=client, therapist=therapist,
                starts_at=clock() + timedelta(minutes=50), meeting_url="https://meet.jit.si/SmilingSteps-Race",
            )
            uow.session.add(Reminder(**reminder_row(booking.id, "1h", clock() - timedelta(minutes=10))))
        await uow.commit()


async def _all(worker: Worker, stmt: Any) -> list[Any]:
    async with worker.runtime.uow() as uow:
        rows = list((await uow.session.scalars(stmt)).all())
        uow.session.expunge_all()
        return rows


async def test_two_workers_racing_send_each_of_200_messages_and_50_reminders_exactly_once(
    database_url: str,
) -> None:
    async with two_workers(database_url) as (world, clock, first, second):
        await _queue_outbox(first, world, clock)
        await _due_reminders(first, clock)

        async def work(worker: Worker) -> int:
            queued = 0
            for _ in range(2):  # a second round finds nothing left
                queued += await worker.reminders(limit=7)
                await worker.drain_outbox()
            return queued

        queued = await asyncio.gather(work(first), work(second), work(first), work(second))

        assert sum(queued) == 2 * REMINDERS
        sms = world.sms_received()
        assert len(sms) == SMS + 2 * REMINDERS and set(sms.values()) == {1}
        assert len(world.telegram_received()) == TELEGRAM and set(world.telegram_received().values()) == {1}
        assert len(world.mail_received()) == EMAIL and set(world.mail_received().values()) == {1}
        rows = await _all(first, select(Outbox))
        assert len(rows) == SMS + TELEGRAM + EMAIL + 2 * REMINDERS
        assert {(r.status, r.attempts, r.claimed_by) for r in rows} == {("SENT", 1, None)}
        reminders = await _all(first, select(Reminder))
        assert {(r.status, r.claimed_by) for r in reminders} == {("SENT", None)}
        assert first.sent and second.sent and first.sent + second.sent == len(rows)  # both took part


async def test_two_worker_processes_racing_send_each_of_200_messages_and_50_reminders_exactly_once(
    database_url: str,
) -> None:
    async with two_workers(database_url) as (world, clock, first, _second):
        clock.now = utcnow() - timedelta(seconds=1)  # due by the processes' own (wall) clocks
        await _queue_outbox(first, world, clock)
        await _due_reminders(first, clock)
        env = {**os.environ, **process_env(database_url, world)}
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.support.worker_process", "drain", cwd=ROOT, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        outputs = [await asyncio.wait_for(p.communicate(), timeout=120) for p in processes]

        sent = [int(out.split()[-1]) for out, _err in outputs]
        assert [p.returncode for p in processes] == [0, 0]
        assert sum(sent) == SMS + TELEGRAM + EMAIL + 2 * REMINDERS  # however the two shared the work
        sms = world.sms_received()
        assert len(sms) == SMS + 2 * REMINDERS and set(sms.values()) == {1}
        assert len(world.telegram_received()) == TELEGRAM and set(world.telegram_received().values()) == {1}
        assert len(world.mail_received()) == EMAIL and set(world.mail_received().values()) == {1}
        rows = await _all(first, select(Outbox))
        assert {(r.status, r.attempts, r.claimed_by) for r in rows} == {("SENT", 1, None)}


async def test_two_watchdogs_racing_query_and_repush_each_due_attempt_exactly_once(database_url: str) -> None:
    async with two_workers(database_url) as (world, clock, first, second):
        async with first.runtime.uow() as uow:
            for i in range(30):  # past the deadline, outcome unknown: to be asked by STK Query
                booking = await make_booking(uow.session)
                await make_attempt(
                    uow.session, booking, status=PaymentStatus.UNCLEAR, checkout_request_id=f"ws_CO_race_{i}",
                    deadline_at=clock() - timedelta(seconds=30), next_check_at=None,
                )
            for i in range(10):  # an earlier push provably never reached Daraja: push again
                booking = await make_booking(uow.session)
                await make_attempt(
                    uow.session, booking, status=PaymentStatus.QUEUED, checkout_request_id=None,
                    phone=f"2547083{i:05d}", next_check_at=clock() - timedelta(seconds=1),
                )
            await uow.commit()

        ticks = await asyncio.gather(*(w.watchdog.tick() for w in (first, second, first, second)))

        actions = sum((Counter(t) for t in ticks), Counter())
        assert actions == Counter({"pending": 30, "repushed": 10})
        queried = Counter(entry["body"]["CheckoutRequestID"] for entry in world.daraja.requests("stk_query"))
        assert len(queried) == 30 and set(queried.values()) == {1}
        assert len(world.daraja.requests("stk_push")) == 10
        attempts = await _all(first, select(PaymentAttempt))
        assert {a.claimed_by for a in attempts} == {None}  # every claim given back
        assert {a.query_count for a in attempts} == {1}


async def test_two_housekeepers_racing_expire_each_booking_once_with_one_audit_entry_and_one_notice(
    database_url: str,
) -> None:
    async with two_workers(database_url) as (_world, clock, first, second):
        async with first.runtime.uow() as uow:
            for _ in range(40):
                started = clock() - timedelta(minutes=5)
                await make_booking(uow.session, status=BookingStatus.PENDING_APPROVAL, starts_at=started)
            await uow.commit()

        results = await asyncio.gather(
            *(run_housekeeping(w.runtime, batch_size=7) for w in (first, second, first, second))
        )

        assert sum(r.expired_pending for r in results) == 40
        bookings = await _all(first, select(Booking))
        assert {b.status for b in bookings} == {BookingStatus.EXPIRED}
        async with first.runtime.uow() as uow:
            audited = (
                await uow.session.execute(
                    select(AuditEntry.subject_id, func.count())
                    .where(AuditEntry.subject_type == "booking")
                    .group_by(AuditEntry.subject_id)
                )
            ).all()
        assert len(audited) == 40 and {n for _id, n in audited} == {1}
        notices = await _all(first, select(Outbox.dedupe_key))
        assert len(notices) == len(set(notices)) == 40
