"""A practitioner's own calendar: time off hides slots at once, never cancels a booking, and
weekly hours changed from the chat are what clients are offered next — service and chat,
on each database.

The runtime's clock starts on a fixed Monday morning in Nairobi (2031-03-10 08:00), so nothing
depends on the time of day or the weekday the tests run on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import select

from core.db.models import AuditEntry, Booking, SessionType, Therapist, TimeOff
from core.dialog import messages
from core.dialog.sms import render_sms
from core.domain.slots import NAIROBI, Interval
from core.domain.states import BookingStatus
from core.runtime import build_runtime
from core.services.booking.lifecycle import create_booking, find_or_create_client
from core.services.booking.queries import available_days, available_slots
from core.services.booking.time_off import block_time, remove_time_off, upcoming_time_off
from core.services.booking.types import BookingError
from tests.conftest import make_settings
from tests.factories import make_booking, make_therapist
from tests.integration.test_dialog_support import (
    SMS_THERAPIST_PHONE,
    Chat,
    World,
    book,
    build_world,
)
from tests.support.admin import AdminSite
from tests.support.payments import Clock

START = datetime(2031, 3, 10, 8, 0, tzinfo=NAIROBI)  # a Monday morning in Nairobi
WEDNESDAY = date(2031, 3, 12)
THURSDAY = date(2031, 3, 13)
MINUTES = 50  # the world's session type


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    runtime = build_runtime(make_settings(database_url), clock=Clock(start=START))
    try:
        yield await build_world(runtime)
    finally:
        await runtime.close()


def _day(day: date, start: time = time(0), end: time | None = None) -> Interval:
    """A Nairobi day (or part of it) as stored."""
    first = datetime.combine(day, start, NAIROBI)
    last = (
        datetime.combine(day, end, NAIROBI)
        if end
        else datetime.combine(day + timedelta(days=1), time(0), NAIROBI)
    )
    return Interval(first, last)


async def _booked(
    world: World, day: date, at: time, status: BookingStatus = BookingStatus.CONFIRMED
) -> Booking:
    async with world.runtime.uow() as uow:
        session = uow.session
        booking = await make_booking(
            session,
            status=status,
            therapist=await session.get_one(Therapist, world.therapist_id),
            session_type=await session.get_one(SessionType, world.session_type_id),
            starts_at=datetime.combine(day, at, NAIROBI),
        )
        await uow.commit()
        return booking


async def _audit(world: World, action: str) -> list[AuditEntry]:
    async with world.runtime.uow() as uow:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        return list((await uow.session.scalars(query)).all())


async def _status(world: World, booking_id: int) -> str:
    async with world.runtime.uow() as uow:
        return (await uow.session.get_one(Booking, booking_id)).status


def _sms_therapist(world: World) -> Chat:
    return Chat(world.engine, "sms", SMS_THERAPIST_PHONE, "Brian")


# -- the service --------------------------------------------------------------------------------


async def test_a_blocked_day_offers_no_slots_and_cannot_be_booked(world: World) -> None:
    runtime, therapist = world.runtime, world.therapist_id
    assert await available_slots(runtime, therapist, MINUTES, WEDNESDAY)
    result = await block_time(runtime, therapist, _day(WEDNESDAY))
    assert result.saved is not None and result.clashes == []
    assert await available_slots(runtime, therapist, MINUTES, WEDNESDAY) == []
    assert WEDNESDAY not in await available_days(runtime, therapist, MINUTES)
    assert THURSDAY in await available_days(runtime, therapist, MINUTES)
    client = await find_or_create_client(runtime, "telegram", "9001", "Wanjiru")
    with pytest.raises(BookingError) as refused:
        await create_booking(
            runtime,
            client_id=client.id,
            therapist_id=therapist,
            session_type_id=world.session_type_id,
            starts_at=datetime.combine(WEDNESDAY, time(10), NAIROBI),
        )
    assert refused.value.code in ("slot_taken", "slot_unavailable")
    assert await world.bookings() == []


async def test_part_of_a_day_hides_only_the_slots_that_overlap_it(world: World) -> None:
    runtime, therapist = world.runtime, world.therapist_id
    await block_time(runtime, therapist, _day(WEDNESDAY, time(14), time(17)))
    starts = [
        s.astimezone(NAIROBI).strftime("%H:%M")
        for s in await available_slots(runtime, therapist, MINUTES, WEDNESDAY)
    ]
    assert "13:00" in starts and "16:00" not in starts and "14:00" not in starts
    assert "13:30" not in starts  # 13:30-14:20 would run into the block
    assert starts[-1] == "13:00"


async def test_blocking_over_a_booked_session_lists_it_and_saves_nothing_until_asked_to_keep_it(
    world: World,
) -> None:
    runtime, therapist = world.runtime, world.therapist_id
    booking = await _booked(world, WEDNESDAY, time(10))
    asked = await block_time(runtime, therapist, _day(WEDNESDAY))
    assert asked.saved is None
    assert [(b.reference, b.starts_at) for b in asked.clashes] == [(booking.reference, booking.starts_at)]
    assert await upcoming_time_off(runtime, therapist) == []

    kept = await block_time(runtime, therapist, _day(WEDNESDAY), keep_bookings=True)
    assert kept.saved is not None and [b.reference for b in kept.clashes] == [booking.reference]
    assert await _status(world, booking.id) == BookingStatus.CONFIRMED  # never cancelled
    [entry] = await _audit(world, "time_off.added")
    assert entry.actor == f"therapist:{therapist}"
    assert entry.details["kept"] == [booking.reference]


async def test_removing_time_off_offers_its_slots_again_and_is_audited(world: World) -> None:
    runtime, therapist = world.runtime, world.therapist_id
    saved = (await block_time(runtime, therapist, _day(WEDNESDAY))).saved
    assert saved is not None
    assert await remove_time_off(runtime, world.sms_therapist_id, saved.id) is None  # not theirs
    assert await remove_time_off(runtime, therapist, saved.id) == saved
    assert await available_slots(runtime, therapist, MINUTES, WEDNESDAY)
    assert [e.details["time_off_id"] for e in await _audit(world, "time_off.removed")] == [saved.id]


async def test_a_block_inside_an_existing_one_is_not_stored_twice(world: World) -> None:
    runtime, therapist = world.runtime, world.therapist_id
    await block_time(runtime, therapist, _day(WEDNESDAY))
    again = await block_time(runtime, therapist, _day(WEDNESDAY, time(9), time(12)))
    assert again.saved is None and again.covered_by is not None
    async with runtime.uow() as uow:
        assert len((await uow.session.scalars(select(TimeOff))).all()) == 1


async def test_time_off_that_has_already_ended_is_refused(world: World) -> None:
    with pytest.raises(BookingError):
        await block_time(world.runtime, world.therapist_id, _day(date(2031, 3, 9)))


# -- the chat ----------------------------------------------------------------------------------------


async def test_a_day_blocked_from_telegram_is_not_offered_to_the_next_client(world: World) -> None:
    therapist = world.therapist_chat()
    await therapist.send("/away")
    assert messages.say("away_none") in therapist.text
    assert "Rest of this week" in therapist.labels
    await therapist.press("Wed 12 Mar")
    assert therapist.text == messages.say("away_saved", span="Wed 12 Mar")

    client = world.chat()
    await client.send("/book")
    await client.press(world.therapist_name)
    await client.press_first()  # the session type
    assert "Tue 11 Mar" in client.labels and "Wed 12 Mar" not in client.labels
    assert "Thu 13 Mar" in client.labels


async def test_an_sms_away_blocks_a_range_and_away_lists_it_with_a_number_to_remove_it(world: World) -> None:
    sms = _sms_therapist(world)
    await sms.send("AWAY 12-14 MAR")
    assert sms.text == messages.say("away_saved", "sms", span="Wed 12 Mar to Fri 14 Mar")
    for day in (WEDNESDAY, THURSDAY, date(2031, 3, 14)):
        assert await available_slots(world.runtime, world.sms_therapist_id, MINUTES, day) == []
    await sms.send("away 15 mar 14:00-17:00")
    assert "Sat 15 Mar, 14:00-17:00" in sms.text

    await sms.send("AWAY")
    assert "- Wed 12 Mar to Fri 14 Mar" in sms.text
    assert sms.labels == ["Remove Wed 12 Mar to Fri 14 Mar", "Remove Sat 15 Mar, 14:00-17:00"]
    await sms.send("1")
    assert sms.text == messages.say("away_removed", "sms", span="Wed 12 Mar to Fri 14 Mar")
    assert await available_slots(world.runtime, world.sms_therapist_id, MINUTES, WEDNESDAY)


async def test_an_away_date_that_cannot_be_used_is_refused_with_an_example_and_nothing_is_blocked(
    world: World,
) -> None:
    sms = _sms_therapist(world)
    for typed, reason in (("AWAY 31 FEB", "away_no_date"), ("AWAY next tuesday-ish", "away_unreadable")):
        await sms.send(typed)
        assert sms.text == f"{messages.say(reason, 'sms')}\n{messages.say('away_example', 'sms')}"
    await sms.send("away 9 mar")  # yesterday
    assert messages.say("away_past", "sms") in sms.text
    assert await upcoming_time_off(world.runtime, world.sms_therapist_id) == []


async def test_blocking_over_a_booked_session_from_the_chat_lists_it_and_keeps_it(world: World) -> None:
    booking = await _booked(world, WEDNESDAY, time(10), BookingStatus.APPROVED)
    therapist = world.therapist_chat()
    await therapist.send("/away 12 Mar")
    assert f"{booking.reference} Wed 12 Mar, 10:00 EAT" in therapist.text
    assert therapist.labels == ["Block, keep the sessions", "Don't block"]
    assert await upcoming_time_off(world.runtime, world.therapist_id) == []  # nothing yet

    keep = therapist.option("Block, keep the sessions").value
    await therapist.choose(keep)
    assert therapist.text.startswith(messages.say("away_saved_kept", span="Wed 12 Mar"))
    assert booking.reference in therapist.text
    assert await _status(world, booking.id) == BookingStatus.APPROVED
    assert len(await upcoming_time_off(world.runtime, world.therapist_id)) == 1
    await therapist.choose(keep)  # pressed again: acts no more
    assert therapist.text.startswith(messages.say("stale_option"))
    assert len(await upcoming_time_off(world.runtime, world.therapist_id)) == 1


async def test_declining_to_block_over_a_booked_session_blocks_nothing(world: World) -> None:
    await _booked(world, WEDNESDAY, time(10), BookingStatus.PENDING_APPROVAL)
    sms = Chat(world.engine, "sms", "254712000111", "Amani")  # the Telegram practitioner's number
    await sms.send("AWAY 12 MAR")
    assert render_sms(sms.last).endswith(
        "Block anyway and keep them?\n1 Block, keep the sessions\n2 Don't block\nReply 1-2"
    )
    await sms.send("2")
    assert sms.text == messages.say("away_not_saved", "sms")
    assert await upcoming_time_off(world.runtime, world.therapist_id) == []


async def test_hours_changed_from_the_chat_are_the_slots_clients_are_offered(world: World) -> None:
    therapist = world.therapist_chat()
    await therapist.send("/hours")
    assert "mon-fri 09:00-17:00" in therapist.text
    await therapist.send("/hours mon-fri 10:00-11:00; sat 9:00-12:00")
    assert "mon-fri 10:00-11:00; sat 09:00-12:00" in therapist.text
    slots = await available_slots(world.runtime, world.therapist_id, MINUTES, WEDNESDAY)
    assert [s.astimezone(NAIROBI).strftime("%H:%M") for s in slots] == ["10:00"]
    assert date(2031, 3, 15) in await available_days(world.runtime, world.therapist_id, MINUTES)
    [entry] = await _audit(world, "therapist.hours_changed")
    assert entry.actor == f"therapist:{world.therapist_id}"


async def test_hours_that_cannot_be_read_change_nothing(world: World) -> None:
    sms = _sms_therapist(world)
    await sms.send("HOURS whenever I like")
    assert sms.text == messages.say("hours_invalid", "sms")
    await sms.send("HOURS")
    assert "mon-fri 09:00-17:00" in sms.text
    assert await _audit(world, "therapist.hours_changed") == []


async def test_new_hours_name_the_booked_sessions_they_leave_out_and_keep_them(world: World) -> None:
    booking = await _booked(world, WEDNESDAY, time(15))
    therapist = world.therapist_chat()
    await therapist.send("/hours mon-fri 09:00-12:00")
    assert messages.say("hours_outside") in therapist.text and booking.reference in therapist.text
    assert await _status(world, booking.id) == BookingStatus.CONFIRMED


async def test_for_a_client_hours_and_away_are_not_commands(world: World) -> None:
    client = world.chat()
    await client.send("AWAY 12 MAR")
    assert messages.say("help") in client.text  # read as any other text
    await client.send("/hours")
    assert messages.say("help") in client.text
    async with world.runtime.uow() as uow:
        assert (await uow.session.scalars(select(TimeOff))).all() == []


async def test_the_practitioners_help_names_hours_and_away(world: World) -> None:
    therapist = world.therapist_chat()
    await therapist.send("/help")
    assert "/hours" in therapist.text and "/away" in therapist.text


async def test_a_booking_made_before_the_block_still_goes_through_the_chat(world: World) -> None:
    client = world.chat()
    await book(client, world)
    [booking] = await world.bookings()
    day = booking.starts_at.astimezone(NAIROBI).date()
    result = await block_time(world.runtime, world.therapist_id, _day(day), keep_bookings=True)
    assert [b.reference for b in result.clashes] == [booking.reference]
    assert await _status(world, booking.id) == BookingStatus.PENDING_APPROVAL


# -- the admin site ----------------------------------------------------------------------------------


async def test_the_admin_practitioners_page_lists_each_practitioners_time_off(admin: AdminSite) -> None:
    async with admin.runtime.uow() as uow:
        therapist = await make_therapist(uow.session, name="Amani")
        await uow.commit()
    day = admin.runtime.clock().astimezone(NAIROBI).date() + timedelta(days=3)
    await block_time(admin.runtime, therapist.id, _day(day))
    await block_time(admin.runtime, therapist.id, _day(day + timedelta(days=1), time(14), time(17)))
    page = await (await admin.get("/admin/practitioners")).text()
    assert f"{day:%a %d %b %Y}<br>{day + timedelta(days=1):%a %d %b %Y}, 14:00–17:00" in page
