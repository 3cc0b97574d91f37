"""Leases (core.db.claims): a dead worker's claims are taken over once they run out, and a live
worker that lost its lease stands back instead of doing the item a second time.

SQLite and PostgreSQL (with TEST_DATABASE_URL); the outside systems are the simulators over
HTTP on 127.0.0.1; the clock is moved by hand.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import select

from core.db import claims
from core.db.models import Outbox, PaymentAttempt
from core.db.types import utcnow
from core.domain.states import PaymentStatus
from core.services.notifications import notify as notifications
from core.services.notifications import outbox_store as store
from core.services.notifications.outbox_types import RenderedMessage, SendResult
from core.services.payments import watchdog as watchdog_module
from tests.conftest import make_settings
from tests.factories import make_attempt, make_booking
from tests.support.daraja import closed_port
from tests.support.workers import (
    ROOT,
    OutsideWorld,
    StillClock,
    Worker,
    outside_world,
    start_worker,
    worker_settings,
)

DATA = {"reference": "SS0000000042", "therapist_name": "Dr. Amani", "session_type": "Individual",
        "starts_at_local": "Mon 30 Nov 2026, 10:00 EAT", "amount_kes": 2500}


@asynccontextmanager
async def one_worker(database_url: str) -> AsyncIterator[tuple[OutsideWorld, StillClock, Worker]]:
    clock = StillClock(utcnow())
    async with outside_world() as world:
        settings = make_settings(database_url, **worker_settings(world, closed_port()))
        worker = start_worker(settings, world, clock)
        try:
            yield world, clock, worker
        finally:
            await worker.close()


async def _queue(worker: Worker, n: int, *, due_at: object = None) -> None:
    async with worker.runtime.uow() as uow:
        for i in range(n):
            await notifications.enqueue(
                uow.session, channel="sms", recipient=f"2547119{i:05d}", template="booking_approved_client",
                data=DATA, dedupe_key=f"lease:{i}", due_at=due_at or worker.runtime.clock(),
            )
        await uow.commit()


async def _outbox(worker: Worker) -> list[Outbox]:
    async with worker.runtime.uow() as uow:
        rows = list((await uow.session.scalars(select(Outbox).order_by(Outbox.id))).all())
        uow.session.expunge_all()
        return rows


async def _kill_mid_send(database_url: str) -> None:
    """Run tests/support/worker_process.py hang and SIGKILL it while it is sending."""
    env = {**os.environ, "DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.worker_process", "hang", cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        assert line.startswith(b"SENDING"), line
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()


async def test_a_message_held_by_a_worker_killed_mid_send_is_sent_by_another_once_the_lease_runs_out(
    database_url: str,
) -> None:
    async with one_worker(database_url) as (world, clock, worker):
        await _queue(worker, 1, due_at=utcnow() - timedelta(seconds=1))
        await _kill_mid_send(database_url)
        (row,) = await _outbox(worker)
        assert row.status == "PENDING" and row.claimed_by and row.claimed_by != worker.dispatcher.worker
        clock.now = utcnow()
        assert await worker.dispatcher.dispatch_once() == 0  # the dead worker's lease still holds
        clock.advance(seconds=61)
        assert await worker.dispatcher.dispatch_once() == 1
        assert await worker.dispatcher.dispatch_once() == 0
        (row,) = await _outbox(worker)
        assert (row.status, row.attempts, row.claimed_by) == ("SENT", 2, None)
        assert world.sms_received() == {"254711900000": 1}  # the killed worker never reached AT


async def test_a_row_that_waited_for_a_slot_past_its_lease_is_left_to_the_worker_that_took_it_over(
    database_url: str,
) -> None:
    async with one_worker(database_url) as (world, clock, worker):
        await _queue(worker, 2)
        first_send_started, finish_first_send = asyncio.Event(), asyncio.Event()

        class SlowFirst:
            def __init__(self) -> None:
                self.sent: list[str] = []

            async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
                first_send_started.set()
                await finish_first_send.wait()
                self.sent.append(recipient)
                return SendResult.sent("slow-1")

        slow = SlowFirst()
        # one slot: the second row waits behind the first, slow send
        waiting = notifications.Dispatcher(worker.runtime, {"sms": slow}, batch_size=2, concurrency=1)
        dispatch = asyncio.create_task(waiting.dispatch_once())
        await asyncio.wait_for(first_send_started.wait(), 5)
        clock.advance(seconds=61)  # the waiting row's lease runs out; another worker claims it
        (_first, second) = await _outbox(worker)
        async with worker.runtime.uow() as uow:
            taken = await claims.claim_batch(
                uow.session, Outbox, due=Outbox.id == second.id, order_by=(Outbox.id,), limit=1, now=clock(),
                until=clock() + timedelta(seconds=60), worker="outbox@taker",
            )
            await uow.commit()
        assert len(taken) == 1
        finish_first_send.set()
        assert await asyncio.wait_for(dispatch, 5) == 2
        assert slow.sent == ["254711900000"]  # the row it had lost was not sent by the slow worker
        rows = await _outbox(worker)
        assert [(r.status, r.claimed_by) for r in rows] == [("SENT", None), ("PENDING", "outbox@taker")]
        assert world.sms_received() == {}  # (the slow worker's sender is a stand-in of its own)


async def test_a_lease_is_only_renewed_or_finished_by_the_worker_holding_it(database_url: str) -> None:
    async with one_worker(database_url) as (_world, clock, worker):
        await _queue(worker, 1)
        now = clock()
        async with worker.runtime.uow() as uow:
            (mine,) = await store.claim_due(uow.session, now=now, lease=now + timedelta(seconds=60), limit=5,
                                            worker="outbox@a")
            await uow.commit()
        later = now + timedelta(seconds=61)
        async with worker.runtime.uow() as uow:
            (theirs,) = await store.claim_due(uow.session, now=later, lease=later + timedelta(seconds=60),
                                              limit=5, worker="outbox@b")
            assert await store.hold(uow.session, mine, until=later + timedelta(seconds=60)) is None
            assert not await store.mark_retry(uow.session, mine, due_at=later, error="late")
            assert await claims.release(uow.session, Outbox, [mine.id], worker="outbox@a") == 0
            assert await store.hold(uow.session, theirs, until=later + timedelta(seconds=90)) is not None
            await uow.commit()
        assert [(r.claimed_by, r.attempts) for r in await _outbox(worker)] == [("outbox@b", 2)]


async def test_an_attempt_claimed_by_a_dead_watchdog_is_queried_by_another_once_the_lease_runs_out(
    database_url: str,
) -> None:
    async with one_worker(database_url) as (world, clock, worker):
        async with worker.runtime.uow() as uow:
            booking = await make_booking(uow.session)
            attempt = await make_attempt(
                uow.session, booking, status=PaymentStatus.UNCLEAR, checkout_request_id="ws_CO_dead_watchdog",
                deadline_at=clock() - timedelta(seconds=30), next_check_at=None,
            )
            await uow.commit()
        async with worker.runtime.uow() as uow:  # what a watchdog killed mid-tick leaves behind
            await claims.claim_batch(
                uow.session, PaymentAttempt, due=PaymentAttempt.id == attempt.id,
                order_by=(PaymentAttempt.id,), limit=1, now=clock(), until=clock() + watchdog_module.LEASE,
                worker="watchdog@dead",
            )
            await uow.commit()
        assert await worker.watchdog.tick() == {}
        assert world.daraja.requests("stk_query") == []
        clock.advance(seconds=watchdog_module.LEASE.total_seconds() + 1)
        assert await worker.watchdog.tick() == {"pending": 1}
        assert len(world.daraja.requests("stk_query")) == 1
        async with worker.runtime.uow() as uow:
            row = await uow.session.get_one(PaymentAttempt, attempt.id)
            assert (row.claimed_by, row.claimed_until, row.query_count) == (None, None, 1)
