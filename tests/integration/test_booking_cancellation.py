"""Cancelling a booking: the client's window for paid bookings, the refund trail, the notices.

Real databases (SQLite, and PostgreSQL with TEST_DATABASE_URL); time comes from a Clock
started at a fixed Nairobi morning, never from the wall clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from core.db.models import AuditEntry, Booking, Outbox, PaymentAttempt, Reminder
from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime, build_runtime
from core.services.audit import verify_chain
from core.services.booking.lifecycle import cancel_booking
from core.services.booking.types import BookingError
from core.services.notifications.reminders import create_reminders
from core.templates import render
from core.templates.gsm import contains_forbidden, segments
from tests.conftest import make_settings
from tests.factories import make_attempt, make_booking, make_client, make_therapist
from tests.support.payments import Clock

START = datetime(2031, 3, 10, 8, 0, tzinfo=NAIROBI)  # a Monday morning in Nairobi
RECEIPT = "QKX1ABC234"
THERAPIST_TELEGRAM = 4242
CLIENT_TELEGRAM = 5151

MakeRuntime = Callable[..., Runtime]
# A second booking in the same test: other people (unique Telegram ids), another receipt.
OTHER: dict[str, object] = {"therapist_telegram": None, "client_telegram": None, "receipt": "QKX9ZZZ999"}


@pytest.fixture
async def make_runtime(database_url: str) -> AsyncIterator[MakeRuntime]:
    """Runtimes on one database with CLIENT_CANCEL_WINDOW_HOURS set (or not) and a Clock at START."""
    made: list[Runtime] = []

    def build(window_hours: str | None = None) -> Runtime:
        extra = {} if window_hours is None else {"CLIENT_CANCEL_WINDOW_HOURS": window_hours}
        runtime = build_runtime(make_settings(database_url, **extra), clock=Clock(start=START))
        made.append(runtime)
        return runtime

    yield build
    for runtime in made:
        await runtime.close()


async def _booking(
    runtime: Runtime,
    status: BookingStatus,
    *,
    starts_in: timedelta = timedelta(days=3),
    therapist_telegram: int | None = THERAPIST_TELEGRAM,
    client_telegram: int | None = CLIENT_TELEGRAM,
    receipt: str = RECEIPT,
) -> Booking:
    """A booking of a fresh practitioner and client; a CONFIRMED one is paid and has reminders."""
    async with runtime.uow() as uow:
        therapist = await make_therapist(uow.session, telegram_user_id=therapist_telegram)
        client = await make_client(uow.session, telegram_user_id=client_telegram)
        booking = await make_booking(
            uow.session,
            status=status,
            therapist=therapist,
            client=client,
            starts_at=runtime.clock() + starts_in,
        )
        if status is BookingStatus.CONFIRMED:
            await make_attempt(
                uow.session,
                booking,
                status=PaymentStatus.PAID,
                mpesa_receipt=receipt,
                paid_amount_kes=booking.price_kes,
                paid_phone="254708374149",
            )
            await create_reminders(uow.session, booking, now=runtime.clock())
        await uow.commit()
        return booking


async def _rows(runtime: Runtime, model: type, **where: object) -> list:
    async with runtime.uow() as uow:
        query = select(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return list((await uow.session.scalars(query)).all())


async def _status(runtime: Runtime, booking_id: int) -> str:
    async with runtime.uow() as uow:
        return (await uow.session.get_one(Booking, booking_id)).status


async def _audit_count(runtime: Runtime) -> int:
    async with runtime.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


# -- the client's window for a paid booking ------------------------------------------------------


async def test_without_a_window_a_client_cannot_cancel_a_paid_booking_and_nothing_changes(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime()
    assert runtime.settings.client_cancel_window is None
    booking = await _booking(runtime, BookingStatus.CONFIRMED, starts_in=timedelta(days=10))
    audit_before = await _audit_count(runtime)
    with pytest.raises(BookingError) as refused:
        await cancel_booking(runtime, booking_id=booking.id, client_id=booking.client_id)
    assert (refused.value.code, refused.value.detail) == ("not_cancellable", "paid")
    assert refused.value.reference == booking.reference
    assert await _status(runtime, booking.id) == BookingStatus.CONFIRMED
    assert len(await _rows(runtime, Reminder, booking_id=booking.id)) == 2
    assert await _rows(runtime, Outbox) == []
    assert await _audit_count(runtime) == audit_before


async def test_with_a_24_hour_window_a_client_cancels_25_hours_ahead_but_not_23(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime("24")
    early = await _booking(runtime, BookingStatus.CONFIRMED, starts_in=timedelta(hours=25))
    late = await _booking(runtime, BookingStatus.CONFIRMED, starts_in=timedelta(hours=23), **OTHER)
    view = await cancel_booking(runtime, booking_id=early.id, client_id=early.client_id)
    assert view.status is BookingStatus.CANCELLED and view.paid and view.receipt == RECEIPT
    with pytest.raises(BookingError) as refused:
        await cancel_booking(runtime, booking_id=late.id, client_id=late.client_id)
    assert (refused.value.code, refused.value.detail) == ("not_cancellable", "too_late")
    assert await _status(runtime, late.id) == BookingStatus.CONFIRMED


async def test_the_window_closes_as_the_clock_moves_on(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime("24")
    booking = await _booking(runtime, BookingStatus.CONFIRMED, starts_in=timedelta(hours=25))
    clock = runtime.clock
    assert isinstance(clock, Clock)
    clock.advance(2 * 3600)  # now 23 hours before the start
    with pytest.raises(BookingError) as refused:
        await cancel_booking(runtime, booking_id=booking.id, client_id=booking.client_id)
    assert refused.value.detail == "too_late"
    assert await _status(runtime, booking.id) == BookingStatus.CONFIRMED


async def test_a_zero_window_lets_a_client_cancel_a_paid_booking_until_it_starts(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime("0")
    soon = await _booking(runtime, BookingStatus.CONFIRMED, starts_in=timedelta(minutes=30))
    started = await _booking(runtime, BookingStatus.CONFIRMED, starts_in=timedelta(minutes=-5), **OTHER)
    assert (await cancel_booking(runtime, booking_id=soon.id, client_id=soon.client_id)).status == "CANCELLED"
    with pytest.raises(BookingError) as refused:
        await cancel_booking(runtime, booking_id=started.id, client_id=started.client_id)
    assert refused.value.detail == "too_late"


# -- cancelling a paid booking: refund trail, reminders, notices -----------------------------------


async def test_a_client_cancelling_a_paid_booking_leaves_a_refund_trail_and_tells_the_practitioner_once(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime("24")
    booking = await _booking(runtime, BookingStatus.CONFIRMED, starts_in=timedelta(days=2))
    [attempt] = await _rows(runtime, PaymentAttempt, booking_id=booking.id)
    assert len(await _rows(runtime, Reminder, booking_id=booking.id)) == 2

    await cancel_booking(runtime, booking_id=booking.id, client_id=booking.client_id)

    assert await _status(runtime, booking.id) == BookingStatus.CANCELLED
    assert await _rows(runtime, Reminder, booking_id=booking.id) == []
    [still_paid] = await _rows(runtime, PaymentAttempt, booking_id=booking.id)
    assert still_paid.status == PaymentStatus.PAID and still_paid.mpesa_receipt == RECEIPT
    [refund] = await _rows(runtime, AuditEntry, action="booking.refund_due")
    assert refund.actor == f"client:{booking.client_id}"
    assert refund.subject_type == "booking" and refund.subject_id == str(booking.id)
    assert refund.details == {
        "booking_id": booking.id,
        "reference": booking.reference,
        "attempt_id": attempt.id,
        "amount_kes": booking.price_kes,
        "receipt": RECEIPT,
    }
    assert "254708374149" not in str(refund.details)  # amount and receipt, never the phone
    [notice] = await _rows(runtime, Outbox, template="booking_cancelled_therapist")
    assert notice.channel == "telegram" and notice.recipient == str(THERAPIST_TELEGRAM)
    assert notice.dedupe_key == f"booking:{booking.id}:cancelled:therapist"
    assert notice.data["refund_due"] is True and notice.data["cancelled_by"] == "client"
    text = render(notice.template, notice.channel, notice.data).text
    assert booking.reference in text and "refund" in text
    assert await _rows(runtime, Outbox, template="booking_cancelled_client") == []  # the chat answers
    assert (await verify_chain(runtime.uow())).ok


async def test_a_second_cancellation_is_refused_and_notifies_nobody_again(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime("24")
    booking = await _booking(runtime, BookingStatus.CONFIRMED)
    await cancel_booking(runtime, booking_id=booking.id, client_id=booking.client_id)
    for who in ({"client_id": booking.client_id}, {"admin_id": 1}):
        with pytest.raises(BookingError) as again:
            await cancel_booking(runtime, booking_id=booking.id, **who)
        assert again.value.code == "not_cancellable"
    assert len(await _rows(runtime, Outbox, template="booking_cancelled_therapist")) == 1
    assert len(await _rows(runtime, AuditEntry, action="booking.refund_due")) == 1


@pytest.mark.parametrize("client_telegram", [CLIENT_TELEGRAM, None], ids=["telegram", "sms"])
async def test_an_admin_cancelling_a_paid_booking_tells_the_practitioner_and_the_client(
    make_runtime: MakeRuntime, client_telegram: int | None
) -> None:
    runtime = make_runtime()  # no client window: an admin may cancel anyway
    booking = await _booking(
        runtime, BookingStatus.CONFIRMED, therapist_telegram=None, client_telegram=client_telegram
    )
    view = await cancel_booking(runtime, booking_id=booking.id, admin_id=3, reason="practitioner ill")
    assert view.status is BookingStatus.CANCELLED
    [therapist_notice] = await _rows(runtime, Outbox, template="booking_cancelled_therapist")
    assert therapist_notice.channel == "sms"  # no Telegram: the practitioner gets an SMS
    assert therapist_notice.data["cancelled_by"] == "practice"
    [client_notice] = await _rows(runtime, Outbox, template="booking_cancelled_client")
    assert client_notice.dedupe_key == f"booking:{booking.id}:cancelled:client"
    if client_telegram:
        assert (client_notice.channel, client_notice.recipient) == ("telegram", str(client_telegram))
    else:
        assert client_notice.channel == "sms"
    assert client_notice.data["refund_due"] is True
    for row in (therapist_notice, client_notice):
        text = render(row.template, row.channel, row.data).text
        assert booking.reference in text and "refund" in text
        if row.channel == "sms":
            assert not contains_forbidden(text) and segments(text) == 1, text
    [refund] = await _rows(runtime, AuditEntry, action="booking.refund_due")
    assert refund.actor == "admin:3"
    assert await _rows(runtime, Reminder, booking_id=booking.id) == []
    assert (await verify_chain(runtime.uow())).ok


async def test_an_admin_cancelling_an_unpaid_booking_tells_both_without_a_refund(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime()
    booking = await _booking(runtime, BookingStatus.APPROVED)
    await cancel_booking(runtime, booking_id=booking.id, admin_id=1)
    [therapist_notice] = await _rows(runtime, Outbox, template="booking_cancelled_therapist")
    [client_notice] = await _rows(runtime, Outbox, template="booking_cancelled_client")
    for row in (therapist_notice, client_notice):
        assert row.data["refund_due"] is False
        assert "refund" not in render(row.template, row.channel, row.data).text
    assert await _rows(runtime, AuditEntry, action="booking.refund_due") == []


# -- cancelling an unpaid booking ----------------------------------------------------------------


@pytest.mark.parametrize("status", [BookingStatus.PENDING_APPROVAL, BookingStatus.APPROVED])
async def test_a_client_cancelling_an_unpaid_booking_tells_the_practitioner_and_owes_nothing(
    make_runtime: MakeRuntime, status: BookingStatus
) -> None:
    runtime = make_runtime()
    booking = await _booking(runtime, status, therapist_telegram=None)
    view = await cancel_booking(runtime, booking_id=booking.id, client_id=booking.client_id)
    assert view.status is BookingStatus.CANCELLED and not view.paid
    [notice] = await _rows(runtime, Outbox, template="booking_cancelled_therapist")
    assert notice.channel == "sms" and notice.dedupe_key == f"booking:{booking.id}:cancelled:therapist"
    text = render(notice.template, notice.channel, notice.data).text
    assert booking.reference in text and "cancelled by the client" in text and "refund" not in text
    assert await _rows(runtime, Outbox, template="booking_cancelled_client") == []
    assert await _rows(runtime, AuditEntry, action="booking.refund_due") == []
    [entry] = await _rows(runtime, AuditEntry, action="booking.status_changed")
    assert (entry.details["previous"], entry.details["new"]) == (status.value, "CANCELLED")
    assert (await verify_chain(runtime.uow())).ok


async def test_a_refused_cancellation_of_someone_elses_booking_queues_nothing(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime("24")
    booking = await _booking(runtime, BookingStatus.CONFIRMED)
    async with runtime.uow() as uow:
        stranger = await make_client(uow.session)
        await uow.commit()
    with pytest.raises(BookingError) as refused:
        await cancel_booking(runtime, booking_id=booking.id, client_id=stranger.id)
    assert refused.value.code == "not_found"
    assert await _rows(runtime, Outbox) == []
    assert await _status(runtime, booking.id) == BookingStatus.CONFIRMED
