"""Concurrent compare-and-set transitions: whoever races, exactly one update wins.

Each contender runs in its own UnitOfWork (own session, own connection), as two callback
handlers or a callback and the watchdog would. On PostgreSQL the contenders first open
their transactions and meet at a barrier, so the UPDATEs really overlap and the losers
wait on the winner's row lock; on SQLite transactions begin IMMEDIATE and queue instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import text

from core.db.models import Booking, PaymentAttempt
from core.db.uow import TransitionConflict, transition_booking, transition_payment
from core.domain.states import BookingEvent, BookingStatus, PaymentEvent, PaymentStatus
from core.runtime import Runtime
from tests.factories import make_attempt, make_booking

HOLD_LOCK_S = 0.05


async def new_attempt(runtime: Runtime, status: PaymentStatus = PaymentStatus.AWAITING_CUSTOMER) -> int:
    async with runtime.uow() as uow:
        attempt = await make_attempt(uow.session, await make_booking(uow.session), status=status)
        await uow.commit()
        return attempt.id


async def race(
    runtime: Runtime,
    apply: Any,
    row_id: int,
    events: Sequence[Any],
    *,
    overlap: bool,
    **kwargs: Any,
) -> list[Any]:
    """Run ``apply(session, row_id, event)`` once per event, concurrently; results in order."""
    barrier = asyncio.Barrier(len(events)) if overlap else None

    async def contender(event: Any) -> Any:
        async with runtime.uow() as uow:
            if barrier is not None:
                await uow.session.execute(text("SELECT 1"))  # transaction and connection are open
                await barrier.wait()
            status = await apply(uow.session, row_id, event, **kwargs)
            await asyncio.sleep(HOLD_LOCK_S)  # keep the row lock while the others arrive
            await uow.commit()
            return status

    return await asyncio.gather(*(contender(e) for e in events), return_exceptions=True)


def single_winner(results: list[Any]) -> int:
    """Index of the only successful contender; every other one must be a TransitionConflict."""
    winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    others = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, TransitionConflict) for r in others), others
    return winners[0]


async def stored_status(runtime: Runtime, model: type, row_id: int) -> str:
    async with runtime.uow() as uow:
        row = await uow.session.get(model, row_id)
        return row.status


MIXED = [PaymentEvent.SUCCEED, PaymentEvent.FAIL, PaymentEvent.CANCEL, PaymentEvent.TIME_OUT] * 5


# -- PostgreSQL: overlapping transactions ---------------------------------------------------------


@pytest.mark.postgres
async def test_two_duplicate_callbacks_settle_an_attempt_once(pg_runtime: Runtime):
    attempt_id = await new_attempt(pg_runtime)
    results = await race(pg_runtime, transition_payment, attempt_id, [PaymentEvent.SUCCEED] * 2, overlap=True)
    assert results[single_winner(results)] is PaymentStatus.PAID
    assert await stored_status(pg_runtime, PaymentAttempt, attempt_id) == "PAID"


@pytest.mark.postgres
async def test_twenty_concurrent_outcomes_for_one_attempt_have_exactly_one_winner(pg_runtime: Runtime):
    attempt_id = await new_attempt(pg_runtime)
    results = await race(
        pg_runtime,
        transition_payment,
        attempt_id,
        MIXED,
        overlap=True,
        only_from=[PaymentStatus.AWAITING_CUSTOMER],
    )
    winner = single_winner(results)
    assert await stored_status(pg_runtime, PaymentAttempt, attempt_id) == results[winner].value


@pytest.mark.postgres
async def test_twenty_concurrent_successes_pay_once(pg_runtime: Runtime):
    attempt_id = await new_attempt(pg_runtime, PaymentStatus.UNCLEAR)
    results = await race(
        pg_runtime, transition_payment, attempt_id, [PaymentEvent.SUCCEED] * 20, overlap=True
    )
    single_winner(results)
    assert await stored_status(pg_runtime, PaymentAttempt, attempt_id) == "PAID"


@pytest.mark.postgres
async def test_a_waiting_updater_rechecks_the_status_after_the_winner_commits(pg_runtime: Runtime):
    attempt_id = await new_attempt(pg_runtime)
    async with pg_runtime.uow() as first:
        assert (
            await transition_payment(first.session, attempt_id, PaymentEvent.CANCEL)
            is PaymentStatus.CANCELLED
        )

        async def second() -> PaymentStatus:
            async with pg_runtime.uow() as uow:
                return await transition_payment(uow.session, attempt_id, PaymentEvent.FAIL)

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the second UPDATE should wait for the first one's row lock"
        await first.commit()
    with pytest.raises(TransitionConflict):
        await asyncio.wait_for(waiting, 5)
    assert await stored_status(pg_runtime, PaymentAttempt, attempt_id) == "CANCELLED"


@pytest.mark.postgres
async def test_approve_and_decline_at_the_same_moment_have_one_winner(pg_runtime: Runtime):
    async with pg_runtime.uow() as uow:
        booking = await make_booking(uow.session, status=BookingStatus.PENDING_APPROVAL)
        await uow.commit()
    events = [BookingEvent.APPROVE, BookingEvent.DECLINE] * 5
    results = await race(pg_runtime, transition_booking, booking.id, events, overlap=True)
    winner = single_winner(results)
    assert await stored_status(pg_runtime, Booking, booking.id) == results[winner].value


# -- every backend (SQLite: transactions queue on the write lock) -------------------------------


async def test_two_concurrent_successes_settle_an_attempt_once(runtime: Runtime):
    attempt_id = await new_attempt(runtime)
    results = await race(runtime, transition_payment, attempt_id, [PaymentEvent.SUCCEED] * 2, overlap=False)
    assert results[single_winner(results)] is PaymentStatus.PAID
    assert await stored_status(runtime, PaymentAttempt, attempt_id) == "PAID"


async def test_twenty_concurrent_outcomes_have_exactly_one_winner(runtime: Runtime):
    attempt_id = await new_attempt(runtime)
    results = await race(
        runtime,
        transition_payment,
        attempt_id,
        MIXED,
        overlap=False,
        only_from=[PaymentStatus.AWAITING_CUSTOMER],
    )
    winner = single_winner(results)
    assert await stored_status(runtime, PaymentAttempt, attempt_id) == results[winner].value


async def test_concurrent_approve_and_decline_have_one_winner(runtime: Runtime):
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, status=BookingStatus.PENDING_APPROVAL)
        await uow.commit()
    results = await race(
        runtime,
        transition_booking,
        booking.id,
        [BookingEvent.DECLINE, BookingEvent.APPROVE] * 5,
        overlap=False,
    )
    winner = single_winner(results)
    assert await stored_status(runtime, Booking, booking.id) == results[winner].value


async def test_races_on_different_attempts_do_not_interfere(runtime: Runtime):
    ids = [await new_attempt(runtime) for _ in range(5)]

    async def settle(attempt_id: int) -> PaymentStatus:
        async with runtime.uow() as uow:
            status = await transition_payment(uow.session, attempt_id, PaymentEvent.SUCCEED)
            await uow.commit()
            return status

    assert await asyncio.gather(*(settle(i) for i in ids)) == [PaymentStatus.PAID] * 5
    assert [await stored_status(runtime, PaymentAttempt, i) for i in ids] == ["PAID"] * 5
