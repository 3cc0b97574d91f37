"""The client's failure notice and the chat's progress message: one of them tells the failure.

``core/services/notifications/payment_failed.py`` on both databases: a Telegram notice is
held, the chat may take it over while nobody holds it, give it back, and an SMS notice is
never held nor taken.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.db.models import Outbox
from core.db.types import utcnow
from core.runtime import Runtime
from core.services.notifications import notify, payment_failed
from tests.factories import make_client

DATA = {"reference": "SS-7K3Q9X", "reason": "Payment cancelled.", "booking_id": 5, "attempt_id": 9}


async def _queue(runtime: Runtime, *, telegram: bool) -> None:
    now = utcnow()
    async with runtime.uow() as uow:
        client = await make_client(uow.session, telegram_user_id=4401 if telegram else None)
        await notify.notify_client(
            uow.session, client, template=payment_failed.TEMPLATE, data=DATA,
            dedupe_key=payment_failed.dedupe_key(9), telegram_due_at=payment_failed.telegram_due_at(now),
        )
        await uow.commit()


async def _row(runtime: Runtime) -> Outbox:
    async with runtime.uow() as uow:
        return (await uow.session.scalars(select(Outbox))).one()


async def _take_over(runtime: Runtime) -> str:
    async with runtime.uow() as uow:
        outcome = await payment_failed.take_over(uow.session, 9, now=utcnow())
        await uow.commit()
    return outcome


async def test_a_telegram_notice_is_held_and_the_chat_can_take_it_over_once(runtime: Runtime) -> None:
    await _queue(runtime, telegram=True)
    row = await _row(runtime)
    assert row.channel == "telegram" and row.due_at - row.created_at >= timedelta(seconds=7)
    assert await _take_over(runtime) == "taken"
    assert (await _row(runtime)).status == notify.CANCELLED
    assert await _take_over(runtime) == "taken"  # asking again (a second follower) changes nothing


async def test_a_notice_given_back_is_due_at_once(runtime: Runtime) -> None:
    await _queue(runtime, telegram=True)
    await _take_over(runtime)
    async with runtime.uow() as uow:
        assert await payment_failed.give_back(uow.session, 9, now=utcnow())
        await uow.commit()
    row = await _row(runtime)
    assert row.status == notify.PENDING and row.due_at <= utcnow()


async def test_a_notice_already_sent_or_claimed_is_not_taken(runtime: Runtime) -> None:
    await _queue(runtime, telegram=True)
    async with runtime.uow() as uow:
        row = (await uow.session.scalars(select(Outbox))).one()
        row.claimed_until = utcnow() + timedelta(seconds=30)  # a worker is sending it right now
        await uow.commit()
    assert await _take_over(runtime) == "already_out"
    async with runtime.uow() as uow:
        row = (await uow.session.scalars(select(Outbox))).one()
        row.status, row.claimed_until = notify.SENT, None
        await uow.commit()
    assert await _take_over(runtime) == "already_out"
    assert (await _row(runtime)).status == notify.SENT


async def test_an_sms_notice_is_due_at_once_and_never_taken(runtime: Runtime) -> None:
    await _queue(runtime, telegram=False)
    row = await _row(runtime)
    assert row.channel == "sms" and row.due_at - row.created_at < timedelta(seconds=1)
    assert await _take_over(runtime) == "none"
    assert (await _row(runtime)).status == notify.PENDING


async def test_without_a_notice_the_chat_shows_the_failure_itself(runtime: Runtime) -> None:
    assert await _take_over(runtime) == "none"
