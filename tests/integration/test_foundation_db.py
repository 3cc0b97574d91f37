"""The database foundation on each backend: UTC times, units of work, compare-and-set transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from core.db.models import Booking, PaymentAttempt, Therapist
from core.db.uow import TransitionConflict, transition_booking, transition_payment
from core.domain.states import BookingEvent, BookingStatus, PaymentEvent, PaymentStatus
from core.runtime import Runtime
from tests.factories import make_attempt, make_booking, make_therapist


async def test_times_come_back_as_the_same_aware_utc_moment(runtime: Runtime):
    nairobi_ten = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=3)))
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, starts_at=nairobi_ten)
        await uow.commit()
    async with runtime.uow() as uow:
        stored = await uow.session.get(Booking, booking.id)
        assert stored is not None
        assert stored.starts_at == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
        assert stored.starts_at.utcoffset() == timedelta(0)
        assert stored.created_at.tzinfo is not None


async def test_times_compare_correctly_in_queries(runtime: Runtime):
    early = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    async with runtime.uow() as uow:
        await make_booking(uow.session, starts_at=early)
        await make_booking(uow.session, starts_at=early + timedelta(hours=2))
        await uow.commit()
    async with runtime.uow() as uow:
        # 09:30 Nairobi == 06:30 UTC: given in another zone, compared as the same instant
        after = datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(hours=3)))
        rows = (await uow.session.scalars(select(Booking).where(Booking.starts_at > after))).all()
    assert [r.starts_at for r in rows] == [early + timedelta(hours=2)]


async def test_a_naive_datetime_is_refused(runtime: Runtime):
    with pytest.raises(StatementError, match="naive"):
        async with runtime.uow() as uow:
            await make_booking(uow.session, starts_at=datetime(2026, 3, 2, 7, 0))


async def test_leaving_a_unit_of_work_without_commit_rolls_back(runtime: Runtime):
    async with runtime.uow() as uow:
        await make_therapist(uow.session, name="Not Kept")
    with pytest.raises(RuntimeError):
        async with runtime.uow() as uow:
            await make_therapist(uow.session, name="Not Kept Either")
            raise RuntimeError("boom")
    async with runtime.uow() as uow:
        assert (await uow.session.scalars(select(Therapist))).all() == []


async def test_a_committed_unit_of_work_is_visible_to_the_next(runtime: Runtime):
    async with runtime.uow() as uow:
        await make_therapist(uow.session, name="Kept")
        await uow.commit()
    async with runtime.uow() as uow:
        names = (await uow.session.scalars(select(Therapist.name))).all()
    assert names == ["Kept"]


async def test_a_payment_transition_changes_status_and_values(runtime: Runtime):
    async with runtime.uow() as uow:
        attempt = await make_attempt(uow.session, await make_booking(uow.session))
        await uow.commit()
    async with runtime.uow() as uow:
        result = await transition_payment(
            uow.session, attempt.id, PaymentEvent.SUCCEED, mpesa_receipt="NLJ7RT61SV", paid_amount_kes=2500
        )
        await uow.commit()
    assert result is PaymentStatus.PAID
    async with runtime.uow() as uow:
        row = await uow.session.get(PaymentAttempt, attempt.id)
    assert (row.status, row.mpesa_receipt, row.paid_amount_kes) == ("PAID", "NLJ7RT61SV", 2500)
    assert row.updated_at >= attempt.updated_at


async def test_an_event_not_allowed_from_the_current_status_conflicts_and_changes_nothing(runtime: Runtime):
    async with runtime.uow() as uow:
        attempt = await make_attempt(uow.session, await make_booking(uow.session), status=PaymentStatus.PAID)
        await uow.commit()
    async with runtime.uow() as uow:
        with pytest.raises(TransitionConflict) as error:
            await transition_payment(uow.session, attempt.id, PaymentEvent.FAIL, result_code="1")
        await uow.commit()
    assert error.value.row_id == attempt.id and error.value.event == "fail"
    assert str(attempt.id) in str(error.value) and "fail" in str(error.value)
    async with runtime.uow() as uow:
        row = await uow.session.get(PaymentAttempt, attempt.id)
    assert (row.status, row.result_code) == ("PAID", None)


async def test_only_from_narrows_the_allowed_sources(runtime: Runtime):
    async with runtime.uow() as uow:
        attempt = await make_attempt(
            uow.session, await make_booking(uow.session), status=PaymentStatus.FAILED
        )
        await uow.commit()
    async with runtime.uow() as uow:
        with pytest.raises(TransitionConflict):  # SUCCEED is allowed from FAILED, but not asked for
            await transition_payment(
                uow.session, attempt.id, PaymentEvent.SUCCEED, only_from=[PaymentStatus.AWAITING_CUSTOMER]
            )
        assert await transition_payment(uow.session, attempt.id, PaymentEvent.SUCCEED) is PaymentStatus.PAID
        await uow.commit()


async def test_a_missing_row_is_a_conflict(runtime: Runtime):
    async with runtime.uow() as uow:
        with pytest.raises(TransitionConflict):
            await transition_booking(uow.session, 424242, BookingEvent.APPROVE)


async def test_booking_transitions_follow_the_table(runtime: Runtime):
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, status=BookingStatus.PENDING_APPROVAL)
        await uow.commit()
    async with runtime.uow() as uow:
        with pytest.raises(TransitionConflict):
            await transition_booking(uow.session, booking.id, BookingEvent.PAY)
        assert (
            await transition_booking(uow.session, booking.id, BookingEvent.APPROVE) is BookingStatus.APPROVED
        )
        assert await transition_booking(uow.session, booking.id, BookingEvent.PAY) is BookingStatus.CONFIRMED
        await uow.commit()
    async with runtime.uow() as uow:
        assert (await uow.session.get(Booking, booking.id)).status == "CONFIRMED"
