"""Several settlement workers share one inbox: every stored callback is settled exactly once.

Two workers, each with its own Runtime (its own engine and connections, as two processes
have), race over 200 stored success callbacks; a worker that dies holding claims leaves them
to the other once its lease lapses; a worker that outlived its lease cannot settle a row the
other has taken since (payments.inbox: claim, lease, mark_settled).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import func, select

from core.db.models import AuditEntry, CallbackInbox, Outbox, PaymentAttempt, Reminder
from core.runtime import Runtime, build_runtime
from core.services.audit import verify_chain
from core.services.payments import inbox, settlement_worker
from core.services.payments.intake import SettlementWorker
from core.services.payments.settlement import Settled
from tests.conftest import make_settings

ROWS = 200


def _bench_settlement() -> ModuleType:
    """bench/settlement.py, whose seed stores callbacks exactly as the intake does."""
    path = Path(__file__).resolve().parents[2] / "bench" / "settlement.py"
    spec = importlib.util.spec_from_file_location("bench_settlement_for_tests", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def two_runtimes(database_url: str) -> AsyncIterator[tuple[Runtime, Runtime, Clock]]:
    """Two Runtimes on one database (two engines, as two processes), sharing a clock."""
    clock = Clock()
    runtimes = [build_runtime(make_settings(database_url), clock=clock) for _ in range(2)]
    try:
        yield runtimes[0], runtimes[1], clock
    finally:
        for rt in runtimes:
            await rt.close()


async def _drain(worker: SettlementWorker) -> dict[Settled, int]:
    totals: dict[Settled, int] = {}
    while counts := await worker.settle_pending():
        for outcome, n in counts.items():
            totals[outcome] = totals.get(outcome, 0) + n
    return totals


async def _count(runtime: Runtime, model: type) -> int:
    async with runtime.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model)) or 0)


async def _assert_each_settled_exactly_once(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        s = uow.session
        statuses = (await s.scalars(select(PaymentAttempt.status))).all()
        marks = (await s.execute(select(CallbackInbox.processed_at, CallbackInbox.attempts,
                                        CallbackInbox.claimed_by))).all()
    assert statuses == ["PAID"] * ROWS
    assert all(done is not None and tries == 1 and owner is None for done, tries, owner in marks), marks[:5]
    assert await _count(runtime, AuditEntry) == 2 * ROWS  # attempt PAID + booking CONFIRMED, once each
    assert await _count(runtime, Reminder) == 2 * ROWS
    assert await _count(runtime, Outbox) == 2 * ROWS  # client and practitioner SMS (no e-mail address)
    assert (await verify_chain(runtime.uow())).ok


async def test_two_workers_racing_over_200_stored_callbacks_settle_each_exactly_once(
    two_runtimes: tuple[Runtime, Runtime, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, _clock = two_runtimes
    await _bench_settlement().seed(first, ROWS)
    monkeypatch.setattr(settlement_worker, "CLAIM_CHUNK", 16)  # many small claims: the workers interleave
    workers = [SettlementWorker(rt, batch_size=8) for rt in (first, second)]

    results = await asyncio.gather(*(_drain(w) for w in workers))

    assert all(set(r) <= {Settled.PAID} for r in results), results
    assert sum(r.get(Settled.PAID, 0) for r in results) == ROWS
    if first.engine.dialect.name == "postgresql":
        # Not vacuous: both took part. (SQLite has one writer and its busy handler polls with
        # sleeps, so there one worker may find every chunk claimed before it gets a turn.)
        assert all(r.get(Settled.PAID, 0) > 0 for r in results), results
    await _assert_each_settled_exactly_once(first)


async def test_the_rows_of_a_worker_that_died_are_settled_by_another_once_its_lease_lapses(
    two_runtimes: tuple[Runtime, Runtime, Clock],
) -> None:
    first, second, clock = two_runtimes
    await _bench_settlement().seed(first, ROWS)
    dead = SettlementWorker(first)
    async with first.uow() as uow:  # claims everything, then dies without settling or releasing
        assert len(await inbox.claim(uow.session, dead.worker_id, limit=ROWS, now=clock())) == ROWS
        await uow.commit()
    survivor = SettlementWorker(second)

    assert await survivor.settle_pending() == {}  # the claims are live: not the survivor's to take
    clock.now += timedelta(seconds=inbox.LEASE_S + 1)
    assert await _drain(survivor) == {Settled.PAID: ROWS}
    await _assert_each_settled_exactly_once(second)


async def test_a_worker_that_outlived_its_lease_cannot_settle_rows_another_worker_took(
    two_runtimes: tuple[Runtime, Runtime, Clock],
) -> None:
    first, second, clock = two_runtimes
    await _bench_settlement().seed(first, ROWS)
    slow, other = SettlementWorker(first, batch_size=8), SettlementWorker(second)
    async with first.uow() as uow:
        stale = await inbox.claim(uow.session, slow.worker_id, limit=ROWS, now=clock())
        await uow.commit()
    clock.now += timedelta(seconds=inbox.LEASE_S + 1)
    async with second.uow() as uow:  # the other worker takes the lapsed rows over
        taken = await inbox.claim(uow.session, other.worker_id, limit=ROWS, now=clock())
        await uow.commit()
    assert len(taken) == ROWS

    counts: dict[Settled, int] = {}
    settled = await slow._settle_items(stale, counts, None)  # the slow worker carries on regardless

    assert settled == 0 and counts == {Settled.NOT_READY: ROWS}  # every batch and row rolled back
    assert await _count(first, AuditEntry) == 0
    clock.now += timedelta(seconds=inbox.LEASE_S + 1)
    assert await _drain(other) == {Settled.PAID: ROWS}
    await _assert_each_settled_exactly_once(second)
