"""Housekeeping: bookings leave their live states when their time has passed; idle chats go.

Time is a :class:`Clock` the tests move; bookings are made directly with the factories (the
slot rules of a new request do not matter here). Both databases, via the fixtures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.db.models import AuditEntry, Booking, DialogState, Outbox, PaymentAttempt
from core.dialog.store import DialogStore
from core.domain.states import LIVE_PAYMENT_STATUSES, BookingStatus, PaymentStatus
from core.runtime import Runtime, build_runtime
from core.services.audit import verify_chain
from core.services.booking.housekeeping import HousekeepingResult, run_housekeeping
from tests.conftest import make_settings
from tests.factories import make_attempt, make_booking, make_client
from tests.support.payments import Clock, payment_stack

B, P = BookingStatus, PaymentStatus
HOUR = 3600.0
EXPIRED_TEMPLATE = "booking_expired_client"


@pytest.fixture
async def clocked(database_url: str) -> AsyncIterator[tuple[Runtime, Clock]]:
    """A runtime whose clock the test moves."""
    clock = Clock()
    runtime = build_runtime(make_settings(database_url), clock=clock)
    try:
        yield runtime, clock
    finally:
        await runtime.close()


async def _booking(runtime: Runtime, status: B, *, in_hours: float, **extra: object) -> Booking:
    """A booking in ``status`` starting ``in_hours`` from the runtime's now (negative: past)."""
    async with runtime.uow() as uow:
        booking = await make_booking(
            uow.session, status=status, starts_at=runtime.clock() + timedelta(hours=in_hours), **extra
        )
        await uow.commit()
        return booking


async def _attempt(runtime: Runtime, booking: Booking, status: P) -> PaymentAttempt:
    async with runtime.uow() as uow:
        attempt = await make_attempt(uow.session, booking, status=status)
        await uow.commit()
        return attempt


async def _status(runtime: Runtime, booking_id: int) -> str:
    async with runtime.uow() as uow:
        return (await uow.session.get_one(Booking, booking_id)).status


async def _outbox(runtime: Runtime, template: str = EXPIRED_TEMPLATE) -> list[Outbox]:
    async with runtime.uow() as uow:
        query = select(Outbox).where(Outbox.template == template).order_by(Outbox.id)
        return list((await uow.session.scalars(query)).all())


async def _audit(runtime: Runtime, booking_id: int) -> list[AuditEntry]:
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(
            select(AuditEntry)
            .where(AuditEntry.subject_type == "booking", AuditEntry.subject_id == str(booking_id))
            .order_by(AuditEntry.seq)
        )
        return list(rows.all())


async def test_a_pending_request_expires_once_its_start_has_passed_and_the_client_is_told_on_telegram(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    async with runtime.uow() as uow:
        client = await make_client(uow.session, telegram_user_id=700_001)
        await uow.commit()
    booking = await _booking(runtime, B.PENDING_APPROVAL, in_hours=1, client=client)

    assert (await run_housekeeping(runtime)).changed == 0
    assert await _status(runtime, booking.id) == B.PENDING_APPROVAL

    clock.advance(HOUR + 1)
    result = await run_housekeeping(runtime)

    assert result.expired_pending == 1 and result.changed == 1
    async with runtime.uow() as uow:
        stored = await uow.session.get_one(Booking, booking.id)
    assert stored.status == B.EXPIRED and stored.status_reason == "start time passed without approval"
    [notice] = await _outbox(runtime)
    assert notice.channel == "telegram" and notice.recipient == "700001"
    assert notice.dedupe_key == f"booking:{booking.id}:expired:client"
    assert notice.data["reference"] == booking.reference and notice.data["was_approved"] is False
    assert notice.data["_route"]["fallback_sms"] == client.phone


async def test_an_approved_booking_whose_start_passed_unpaid_expires_and_the_client_gets_an_sms(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    booking = await _booking(runtime, B.APPROVED, in_hours=2)
    await _attempt(runtime, booking, P.CANCELLED)  # an earlier try that failed: nothing is owed
    clock.advance(2 * HOUR + 1)

    result = await run_housekeeping(runtime)

    assert result.expired_unpaid == 1 and result.held_by_live_payment == 0
    assert await _status(runtime, booking.id) == B.EXPIRED
    [notice] = await _outbox(runtime)
    assert notice.channel == "sms"  # the factory's client has no Telegram
    assert notice.data["was_approved"] is True and notice.data["under_review"] is False


@pytest.mark.parametrize("live", sorted(LIVE_PAYMENT_STATUSES))
async def test_an_approved_booking_with_a_live_payment_is_left_for_a_later_run(
    clocked: tuple[Runtime, Clock], live: P
) -> None:
    runtime, clock = clocked
    booking = await _booking(runtime, B.APPROVED, in_hours=1)
    attempt = await _attempt(runtime, booking, live)
    clock.advance(3 * HOUR)

    held = await run_housekeeping(runtime)

    assert held.changed == 0 and held.held_by_live_payment == 1
    assert await _status(runtime, booking.id) == B.APPROVED
    assert await _outbox(runtime) == []

    async with runtime.uow() as uow:  # the watchdog settles the attempt: no money came
        await uow.session.execute(
            update(PaymentAttempt).where(PaymentAttempt.id == attempt.id).values(status=P.TIMED_OUT.value)
        )
        await uow.commit()
    later = await run_housekeeping(runtime)

    assert later.expired_unpaid == 1 and later.held_by_live_payment == 0
    assert await _status(runtime, booking.id) == B.EXPIRED


async def test_an_expiry_notice_does_not_call_a_booking_unpaid_while_its_payment_is_under_review(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    booking = await _booking(runtime, B.APPROVED, in_hours=1)
    await _attempt(runtime, booking, P.NEEDS_REVIEW)
    clock.advance(HOUR + 1)

    await run_housekeeping(runtime)

    [notice] = await _outbox(runtime)
    assert notice.data["under_review"] is True


async def test_a_confirmed_booking_completes_only_after_its_end_and_nobody_is_messaged(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    booking = await _booking(runtime, B.CONFIRMED, in_hours=1)  # 50 minutes long
    clock.advance(HOUR + 49 * 60)  # started, not over

    assert (await run_housekeeping(runtime)).completed == 0
    assert await _status(runtime, booking.id) == B.CONFIRMED

    clock.advance(61)
    assert (await run_housekeeping(runtime)).completed == 1
    async with runtime.uow() as uow:
        stored = await uow.session.get_one(Booking, booking.id)
        outbox = (await uow.session.scalars(select(Outbox))).all()
    assert stored.status == B.COMPLETED and stored.status_reason == "session time over"
    assert outbox == []


async def test_bookings_still_ahead_and_finished_ones_are_untouched(clocked: tuple[Runtime, Clock]) -> None:
    runtime, _clock = clocked
    ahead = [
        await _booking(runtime, status, in_hours=0.5)
        for status in (B.PENDING_APPROVAL, B.APPROVED, B.CONFIRMED)
    ]
    finished = [
        await _booking(runtime, status, in_hours=-5)
        for status in (B.DECLINED, B.CANCELLED, B.EXPIRED, B.COMPLETED)
    ]

    result = await run_housekeeping(runtime)

    assert result == HousekeepingResult()
    for booking in (*ahead, *finished):
        assert await _status(runtime, booking.id) == booking.status
    assert await _audit(runtime, ahead[0].id) == []


async def test_the_client_is_told_once_even_when_the_job_runs_twice_at_the_same_time(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    booking = await _booking(runtime, B.PENDING_APPROVAL, in_hours=1)
    clock.advance(2 * HOUR)

    first, second = await asyncio.gather(run_housekeeping(runtime), run_housekeeping(runtime))
    third = await run_housekeeping(runtime)

    assert first.expired_pending + second.expired_pending + third.expired_pending == 1
    assert await _status(runtime, booking.id) == B.EXPIRED
    assert len(await _outbox(runtime)) == 1
    assert len(await _audit(runtime, booking.id)) == 1


async def test_every_change_is_audited_by_the_system_with_its_reason_and_the_chain_verifies(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    pending = await _booking(runtime, B.PENDING_APPROVAL, in_hours=1)
    unpaid = await _booking(runtime, B.APPROVED, in_hours=1)
    confirmed = await _booking(runtime, B.CONFIRMED, in_hours=-1)
    clock.advance(HOUR + 1)

    await run_housekeeping(runtime)

    expected = {
        pending.id: (B.PENDING_APPROVAL, B.EXPIRED, "start time passed without approval"),
        unpaid.id: (B.APPROVED, B.EXPIRED, "start time passed unpaid"),
        confirmed.id: (B.CONFIRMED, B.COMPLETED, "session time over"),
    }
    for booking_id, (previous, new, reason) in expected.items():
        [entry] = await _audit(runtime, booking_id)
        assert entry.actor == "system" and entry.action == "booking.status_changed"
        assert (entry.details["previous"], entry.details["new"], entry.details["reason"]) == (
            previous,
            new,
            reason,
        )
    verdict = await verify_chain(runtime.uow())
    assert verdict.ok and verdict.count == 3


async def test_a_backlog_larger_than_a_batch_is_worked_through_in_one_run(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    bookings = [await _booking(runtime, B.PENDING_APPROVAL, in_hours=1) for _ in range(5)]
    clock.advance(HOUR + 1)

    result = await run_housekeeping(runtime, batch_size=2)

    assert result.expired_pending == 5
    assert {await _status(runtime, b.id) for b in bookings} == {B.EXPIRED}
    assert len(await _outbox(runtime)) == 5


async def test_conversations_idle_for_a_day_are_purged_and_recent_ones_kept(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    now = clock()
    async with runtime.uow() as uow:
        for user, idle in (("old", timedelta(hours=25)), ("recent", timedelta(hours=2))):
            uow.session.add(
                DialogState(
                    channel="telegram",
                    user_key=user,
                    step="idle",
                    data={"name": "kept only while needed"},
                    version=1,
                    updated_at=now - idle,
                    expires_at=now - idle + timedelta(minutes=30),
                )
            )
        await uow.commit()

    result = await run_housekeeping(runtime, purge_dialogs=DialogStore(runtime).purge)  # as the app wires it

    assert result.dialogs_purged == 1
    async with runtime.uow() as uow:
        left = (await uow.session.scalars(select(DialogState.user_key))).all()
    assert left == ["recent"]


async def test_serve_runs_housekeeping_at_start_up(database_url: str) -> None:
    before = build_runtime(make_settings(database_url))
    try:
        overdue = await _booking(before, B.PENDING_APPROVAL, in_hours=-1)
    finally:
        await before.close()

    async with payment_stack(database_url) as stack:
        for _ in range(500):  # the job's first run is at start-up: wait up to 10 s for it
            if await _status(stack.runtime, overdue.id) == B.EXPIRED:
                break
            await asyncio.sleep(0.02)
        assert await _status(stack.runtime, overdue.id) == B.EXPIRED
        assert len(await _outbox(stack.runtime)) == 1


async def test_a_late_mpesa_success_for_an_expired_booking_goes_to_review_and_is_never_dropped(
    database_url: str,
) -> None:
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking(starts_at=stack.clock() + timedelta(hours=1))
        await stack.sim.control("/control/next-outcome", {"outcome": "hold"})
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, "0708374149")
        await stack.sim.control(
            "/control/resolve", {"CheckoutRequestID": view.checkout_request_id, "outcome": "cancelled"}
        )
        await stack.wait_status(view.attempt_id, P.CANCELLED)
        stack.clock.advance(HOUR + 1)
        await run_housekeeping(stack.runtime)
        assert (await stack.booking(booking.id)).status == B.EXPIRED

        body = _success_body(view.checkout_request_id, booking.price_kes, "LATEEXP001")
        secret = stack.callback_secret_of(view.checkout_request_id)
        assert (await stack.post_callback(secret, body)).status_code == 200
        flagged = await stack.wait_status(view.attempt_id, P.NEEDS_REVIEW)

        assert flagged.mpesa_receipt == "LATEEXP001" and flagged.paid_amount_kes == booking.price_kes
        assert "booking in status EXPIRED" in (flagged.review_reason or "")
        assert (await stack.booking(booking.id)).status == B.EXPIRED
        assert len(await stack.outbox(template="payment_review_client")) == 1
        assert (await verify_chain(stack.runtime.uow())).ok


def _success_body(checkout: str, amount: int, receipt: str) -> dict:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "1-2-3",
                "CheckoutRequestID": checkout,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": amount},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "TransactionDate", "Value": 20261126101500},
                        {"Name": "PhoneNumber", "Value": 254708374149},
                    ]
                },
            }
        }
    }
