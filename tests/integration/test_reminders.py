"""SMS reminders 24 h and 1 h before confirmed sessions, on a real database, with a hand-moved clock."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.db.models import Booking, Outbox, Reminder
from core.db.types import utcnow
from core.domain.states import BookingStatus
from core.runtime import Runtime, build_runtime
from core.services.notifications import notify as notifications
from core.services.notifications.notify import Dispatcher, RenderedMessage, SendResult
from core.services.notifications.reminders import plan_reminders, start_reminder_scheduler
from tests.factories import make_booking, make_client, make_therapist

MEETING = "https://meet.jit.si/SmilingSteps-AbCdEfGhIjKlMnOpQrStUv"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, RenderedMessage]] = []

    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        self.sent.append((recipient, message))
        return SendResult.sent(f"id-{len(self.sent)}")


@pytest.fixture
def clock() -> Clock:
    return Clock(utcnow().replace(microsecond=0) + timedelta(seconds=1))


@pytest.fixture
def rt(runtime: Runtime, clock: Clock) -> Runtime:
    return dataclasses.replace(runtime, clock=clock)


async def _confirmed(
    rt: Runtime,
    *,
    ahead: timedelta,
    client_phone: str | None = "254711000100",
    client_telegram: int | None = None,
) -> Booking:
    """A booking confirmed at ``rt.clock()`` for a session ``ahead`` from then, with its reminders."""
    async with rt.uow() as uow:
        client = await make_client(
            uow.session, name="Akinyi Otieno", phone=client_phone, telegram_user_id=client_telegram
        )
        therapist = await make_therapist(
            uow.session, name="Dr. Amani Wanjiku", phone="254722000100", telegram_user_id=None
        )
        booking = await make_booking(
            uow.session,
            status=BookingStatus.CONFIRMED,
            client=client,
            therapist=therapist,
            starts_at=rt.clock() + ahead,
            meeting_url=MEETING,
        )
        await notifications.create_reminders(uow.session, booking, now=rt.clock())
        await uow.commit()
    return booking


async def _reminders(rt: Runtime, booking_id: int) -> dict[str, Reminder]:
    async with rt.uow() as uow:
        rows = (await uow.session.scalars(select(Reminder).where(Reminder.booking_id == booking_id))).all()
        uow.session.expunge_all()
        return {r.kind: r for r in rows}


async def _outbox(rt: Runtime) -> list[Outbox]:
    async with rt.uow() as uow:
        rows = list((await uow.session.scalars(select(Outbox).order_by(Outbox.id))).all())
        uow.session.expunge_all()
        return rows


# -- planning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ahead", "kinds"),
    [
        (timedelta(hours=25), {"24h", "1h"}),
        (timedelta(hours=24), {"24h", "1h"}),
        (timedelta(hours=23), {"1h"}),
        (timedelta(hours=1), {"1h"}),
        (timedelta(minutes=30), set()),
    ],
)
async def test_reminders_planned_at_confirmation_depend_on_how_far_ahead_the_session_is(
    rt: Runtime, ahead: timedelta, kinds: set[str]
) -> None:
    booking = await _confirmed(rt, ahead=ahead)
    rows = await _reminders(rt, booking.id)
    assert set(rows) == kinds
    for kind, row in rows.items():
        assert row.status == "PENDING"
        assert row.due_at == booking.starts_at - (
            timedelta(hours=24) if kind == "24h" else timedelta(hours=1)
        )


@settings(max_examples=200, deadline=None)
@given(minutes_ahead=st.integers(min_value=-600, max_value=60 * 24 * 15))
def test_no_planned_reminder_is_ever_already_overdue(minutes_ahead: int) -> None:
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    plan = plan_reminders(now + timedelta(minutes=minutes_ahead), now)
    assert all(due >= now for _kind, due in plan)
    kinds = [kind for kind, _due in plan]
    assert kinds == (["24h", "1h"] if minutes_ahead >= 24 * 60 else ["1h"] if minutes_ahead >= 60 else [])


async def test_planning_twice_is_harmless_and_a_reschedule_moves_the_reminders(
    rt: Runtime, clock: Clock
) -> None:
    booking = await _confirmed(rt, ahead=timedelta(hours=48))
    async with rt.uow() as uow:
        assert await notifications.create_reminders(uow.session, booking, now=clock.now) == ["24h", "1h"]
        await uow.commit()
    assert len(await _reminders(rt, booking.id)) == 2
    moved = booking.starts_at + timedelta(hours=3)
    async with rt.uow() as uow:
        assert await notifications.cancel_reminders(uow.session, booking.id) == 2
        stored = await uow.session.get_one(Booking, booking.id)
        stored.starts_at = moved
        await uow.session.flush()
        assert await notifications.create_reminders(uow.session, stored, now=clock.now) == ["24h", "1h"]
        await uow.commit()
    rows = await _reminders(rt, booking.id)
    assert rows["1h"].due_at == moved - timedelta(hours=1)


# -- sending ----------------------------------------------------------------------------------


# Feature: mpesa-payment-integration, Property 64: 24-Hour Reminder Sends SMS
async def test_the_24_hour_reminder_is_an_sms_to_the_client_with_the_join_link(
    rt: Runtime, clock: Clock
) -> None:
    booking = await _confirmed(rt, ahead=timedelta(hours=30))
    clock.advance(hours=5, minutes=59)
    assert await notifications.run_due_reminders(rt) == 0
    clock.advance(minutes=1)
    assert await notifications.run_due_reminders(rt) == 1
    sms = RecordingSender()
    await Dispatcher(rt, {"sms": sms}).dispatch_once()
    ((recipient, message),) = sms.sent
    assert recipient == "254711000100"
    assert MEETING in message.text and "Dr. Amani Wanjiku" in message.text
    assert (await _reminders(rt, booking.id))["24h"].status == "SENT"
    (row,) = await _outbox(rt)
    assert row.dedupe_key.startswith(f"reminder:{booking.id}:24h:client:")


# Feature: mpesa-payment-integration, Property 65: 1-Hour Reminder Sends SMS to Both
async def test_the_1_hour_reminder_is_an_sms_to_both_client_and_practitioner(
    rt: Runtime, clock: Clock
) -> None:
    await _confirmed(rt, ahead=timedelta(hours=3), client_telegram=9100)
    clock.advance(hours=2)
    assert await notifications.run_due_reminders(rt) == 2
    sms = RecordingSender()
    await Dispatcher(rt, {"sms": sms, "telegram": RecordingSender()}).dispatch_once()
    by_recipient = {recipient: message for recipient, message in sms.sent}
    assert set(by_recipient) == {"254711000100", "254722000100"}  # SMS even for a Telegram client
    assert by_recipient["254711000100"].template == "reminder_1h_client"
    assert by_recipient["254722000100"].template == "reminder_1h_therapist"
    assert "Akinyi Otieno" in by_recipient["254722000100"].text
    for message in by_recipient.values():
        assert MEETING in message.text


async def test_a_client_without_a_phone_gets_the_reminder_on_telegram(rt: Runtime, clock: Clock) -> None:
    await _confirmed(rt, ahead=timedelta(hours=3), client_phone=None, client_telegram=9101)
    clock.advance(hours=2)
    await notifications.run_due_reminders(rt)
    assert {(r.channel, r.template) for r in await _outbox(rt)} == {
        ("telegram", "reminder_1h_client"),
        ("sms", "reminder_1h_therapist"),
    }


async def test_a_reminder_is_handed_over_once_even_when_the_job_runs_again_or_after_a_restart(
    rt: Runtime, clock: Clock
) -> None:
    await _confirmed(rt, ahead=timedelta(hours=26))
    clock.advance(hours=2, minutes=1)
    assert await notifications.run_due_reminders(rt) == 1
    assert await notifications.run_due_reminders(rt) == 0
    restarted = build_runtime(rt.settings, clock=clock)  # a new process on the same database
    try:
        assert await notifications.run_due_reminders(restarted) == 0
    finally:
        await restarted.close()
    assert len(await _outbox(rt)) == 1


async def test_a_restart_between_due_time_and_sending_still_sends_the_reminder(
    rt: Runtime, clock: Clock
) -> None:
    booking = await _confirmed(rt, ahead=timedelta(hours=26))
    clock.advance(hours=2, minutes=30)  # the process was down when the reminder fell due
    restarted = build_runtime(rt.settings, clock=clock)
    try:
        assert await notifications.run_due_reminders(restarted) == 1
        sms = RecordingSender()
        await Dispatcher(restarted, {"sms": sms}).dispatch_once()
    finally:
        await restarted.close()
    assert len(sms.sent) == 1
    assert (await _reminders(rt, booking.id))["24h"].status == "SENT"


@pytest.mark.parametrize("status", [BookingStatus.CANCELLED, BookingStatus.COMPLETED, BookingStatus.EXPIRED])
async def test_reminders_of_bookings_no_longer_confirmed_are_skipped(
    rt: Runtime, clock: Clock, status: BookingStatus
) -> None:
    booking = await _confirmed(rt, ahead=timedelta(hours=3))
    async with rt.uow() as uow:
        (await uow.session.get_one(Booking, booking.id)).status = status.value
        await uow.commit()
    clock.advance(hours=2)
    assert await notifications.run_due_reminders(rt) == 0
    assert (await _reminders(rt, booking.id))["1h"].status == "SKIPPED"
    assert await _outbox(rt) == []


async def test_no_reminder_is_sent_once_the_session_has_started(rt: Runtime, clock: Clock) -> None:
    booking = await _confirmed(rt, ahead=timedelta(hours=30))
    clock.advance(hours=31)  # down for more than a day
    assert await notifications.run_due_reminders(rt) == 0
    assert {k: r.status for k, r in (await _reminders(rt, booking.id)).items()} == {
        "24h": "SKIPPED",
        "1h": "SKIPPED",
    }


async def test_a_late_24_hour_reminder_gives_way_to_the_1_hour_one(rt: Runtime, clock: Clock) -> None:
    booking = await _confirmed(rt, ahead=timedelta(hours=30))
    clock.advance(hours=29, minutes=10)
    assert await notifications.run_due_reminders(rt) == 2  # the 1 h one: client + practitioner
    rows = await _reminders(rt, booking.id)
    assert (rows["24h"].status, rows["1h"].status) == ("SKIPPED", "SENT")


async def test_a_queued_reminder_that_outlives_its_session_is_not_sent(rt: Runtime, clock: Clock) -> None:
    await _confirmed(rt, ahead=timedelta(hours=3))
    clock.advance(hours=2)
    await notifications.run_due_reminders(rt)
    clock.advance(hours=1, seconds=1)  # SMS down for an hour: now the session has started
    sms = RecordingSender()
    await Dispatcher(rt, {"sms": sms}).dispatch_once()
    assert sms.sent == [] and {r.status for r in await _outbox(rt)} == {"EXPIRED"}


async def test_cancelling_removes_pending_reminders_and_unsent_reminder_messages(
    rt: Runtime, clock: Clock
) -> None:
    booking = await _confirmed(rt, ahead=timedelta(hours=26))
    clock.advance(hours=2, minutes=1)
    await notifications.run_due_reminders(rt)
    async with rt.uow() as uow:
        assert await notifications.cancel_reminders(uow.session, booking.id) == 1  # the 1 h one
        await uow.commit()
    assert set(await _reminders(rt, booking.id)) == {"24h"}
    assert [r.status for r in await _outbox(rt)] == ["CANCELLED"]
    clock.advance(hours=24)
    assert await notifications.run_due_reminders(rt) == 0


async def test_two_reminder_runners_racing_queue_each_reminder_once(rt: Runtime, clock: Clock) -> None:
    bookings = [  # twelve clients: one SMS client per number, so twelve numbers
        await _confirmed(rt, ahead=timedelta(hours=3, minutes=i), client_phone=f"2547110002{i:02d}")
        for i in range(12)
    ]
    clock.advance(hours=2, minutes=30)
    other = build_runtime(rt.settings, clock=clock)
    try:
        results = await asyncio.gather(
            *(notifications.run_due_reminders(r, limit=3) for r in (rt, other, rt, other))
        )
    finally:
        await other.close()
    assert sum(results) == 2 * len(bookings)
    rows = await _outbox(rt)
    assert len(rows) == len({r.dedupe_key for r in rows}) == 2 * len(bookings)


# Feature: mpesa-payment-integration, Property 65: 1-Hour Reminder Sends SMS to Both
async def test_on_postgresql_racing_runners_and_dispatchers_send_each_reminder_exactly_once(
    pg_runtime: Runtime,
) -> None:
    clock = Clock(utcnow().replace(microsecond=0) + timedelta(seconds=1))
    first = dataclasses.replace(pg_runtime, clock=clock)
    bookings = [  # ten clients: one SMS client per number, so ten numbers
        await _confirmed(first, ahead=timedelta(hours=3, minutes=i), client_phone=f"2547110002{i:02d}")
        for i in range(10)
    ]
    clock.advance(hours=2, minutes=30)
    second = build_runtime(first.settings, clock=clock)
    a, b = RecordingSender(), RecordingSender()
    try:
        await asyncio.gather(
            notifications.run_due_reminders(first, limit=2),
            notifications.run_due_reminders(second, limit=2),
            notifications.run_due_reminders(first, limit=2),
            notifications.run_due_reminders(second, limit=2),
        )
        dispatchers = [
            Dispatcher(first, {"sms": a}, batch_size=3),
            Dispatcher(second, {"sms": b}, batch_size=3),
        ]

        async def drain(dispatcher: Dispatcher) -> None:
            while await dispatcher.dispatch_once():
                pass

        await asyncio.gather(*(drain(d) for d in dispatchers * 2))
    finally:
        await second.close()
    sent = [(recipient, m.template) for recipient, m in a.sent + b.sent]
    assert len(sent) == 2 * len(bookings)
    assert sorted(sent).count(("254722000100", "reminder_1h_therapist")) == len(bookings)


async def test_the_scheduler_runs_the_reminder_pass_at_start_and_wakes_the_outbox(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        booking = await make_booking(
            uow.session,
            status=BookingStatus.CONFIRMED,
            starts_at=utcnow() + timedelta(minutes=70),
            meeting_url=MEETING,
        )
        uow.session.add(
            Reminder(
                booking_id=booking.id, kind="1h", due_at=utcnow() - timedelta(minutes=1), status="PENDING"
            )
        )
        await uow.commit()
    wake = runtime.wakeup("outbox")
    wake.clear()
    scheduler = start_reminder_scheduler(runtime, interval_seconds=3600)
    try:
        await asyncio.wait_for(wake.wait(), 5)
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
    assert len(await _outbox(runtime)) == 2
