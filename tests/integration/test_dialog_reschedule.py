"""Moving a session in the conversation: "Reschedule" on a session card, then a day and a time.

The engine on a real database (each backend in turn); the runtime's clock starts at a fixed
Nairobi Monday morning, so the free days and times never depend on when the test runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from core.db.models import (
    AuditEntry,
    Booking,
    BookingReschedule,
    Client,
    PaymentAttempt,
    Reminder,
    SessionType,
    Therapist,
)
from core.dialog import messages, values
from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime, build_runtime
from core.services.booking.lifecycle import create_booking, find_or_create_client
from core.services.booking.queries import available_slots
from core.services.booking.types import BookingError
from core.services.notifications.reminders import create_reminders
from core.templates import render
from tests.conftest import make_settings
from tests.factories import make_attempt, make_booking
from tests.integration.test_dialog_support import (
    CLIENT_TELEGRAM_ID,
    SMS_THERAPIST_PHONE,
    Chat,
    World,
    build_world,
)
from tests.support.payments import Clock

START = datetime(2031, 3, 10, 8, 0, tzinfo=NAIROBI)  # a Monday morning in Nairobi
BOOKED = datetime(2031, 3, 12, 10, 0, tzinfo=NAIROBI)  # Wednesday 10:00, 50 hours ahead
NEW = datetime(2031, 3, 13, 11, 0, tzinfo=NAIROBI)  # Thursday 11:00
SMS_CLIENT = "254722333444"
MEETING = "https://meet.jit.si/SmilingSteps-abcdefghijklmnopqrstuv"

MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(database_url: str) -> AsyncIterator[MakeWorld]:
    """Worlds (one practice, one database) with the rescheduling settings given."""
    made: list[Runtime] = []

    async def build(**env: str) -> World:
        runtime = build_runtime(make_settings(database_url, **env), clock=Clock(start=START))
        made.append(runtime)
        return await build_world(runtime)

    yield build
    for runtime in made:
        await runtime.close()


async def booked(
    world: World,
    *,
    paid: bool,
    starts_at: datetime = BOOKED,
    channel: str = "telegram",
    user_key: str = CLIENT_TELEGRAM_ID,
    therapist_id: int | None = None,
    email: str | None = "wanjiru@example.org",
) -> Booking:
    """A CONFIRMED (paid, with reminders and a join link) or APPROVED booking of a chat user."""
    runtime = world.runtime
    ref = await find_or_create_client(runtime, channel, user_key, "Wanjiru")
    async with runtime.uow() as uow:
        session = uow.session
        booking = await make_booking(
            session,
            status=BookingStatus.CONFIRMED if paid else BookingStatus.APPROVED,
            client=await session.get_one(Client, ref.id),
            therapist=await session.get_one(Therapist, therapist_id or world.therapist_id),
            session_type=await session.get_one(SessionType, world.session_type_id),
            starts_at=starts_at,
            email=email,
            meeting_url=MEETING if paid else None,
        )
        if paid:
            await make_attempt(
                session,
                booking,
                status=PaymentStatus.PAID,
                mpesa_receipt=f"QK{booking.id:08d}",
                paid_amount_kes=booking.price_kes,
            )
            await create_reminders(session, booking, now=runtime.clock())
        await uow.commit()
        return booking


async def reload(world: World, booking_id: int) -> Booking:
    async with world.runtime.uow() as uow:
        return await uow.session.get_one(Booking, booking_id)


async def choose_new_time(chat: Chat, when: datetime = NEW) -> None:
    """From a session card: Reschedule → the day → the time (by label, as a tap would)."""
    await chat.press(messages.label("reschedule"))
    assert messages.say("choose_day", chat.channel) in chat.text
    await chat.press(messages.day_label(when.date()))
    await chat.press(messages.time_label(when))
    assert chat.labels == [messages.label("yes_move"), messages.label("keep")]


async def sms_number(chat: Chat, label: str) -> None:
    """Type the number shown next to ``label`` (the SMS way)."""
    await chat.send(str(chat.labels.index(label) + 1))


# -- happy paths -------------------------------------------------------------------------------------


async def test_a_client_moves_a_paid_session_on_telegram_and_payment_reminders_and_calendar_follow(
    make_world: MakeWorld,
) -> None:
    world = await make_world()
    booking = await booked(world, paid=True)
    chat = world.chat()
    await chat.send("/my")
    assert messages.label("reschedule") in chat.labels
    await choose_new_time(chat)
    assert "from Wed 12 Mar, 10:00 EAT to Thu 13 Mar, 11:00 EAT" in chat.text
    await chat.press(messages.label("yes_move"))
    assert chat.text == messages.say(
        "move_done_paid",
        reference=booking.reference,
        when="Thu 13 Mar, 11:00 EAT",
        therapist=world.therapist_name,
    )
    moved = await reload(world, booking.id)
    assert (moved.starts_at, moved.status) == (NEW, BookingStatus.CONFIRMED)
    assert moved.ends_at == NEW + timedelta(minutes=50)
    async with world.runtime.uow() as uow:
        attempts = (await uow.session.scalars(select(PaymentAttempt))).all()
        reminders = {r.kind: r.due_at for r in (await uow.session.scalars(select(Reminder))).all()}
        [entry] = (
            await uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "booking.rescheduled"))
        ).all()
    assert len(attempts) == 1  # the payment stays with the booking: no new push
    assert reminders == {"24h": NEW - timedelta(hours=24), "1h": NEW - timedelta(hours=1)}
    moved_times = [datetime.fromisoformat(entry.details[k]) for k in ("old_starts_at", "new_starts_at")]
    assert moved_times == [BOOKED, NEW]  # audited with the old and the new time
    [told] = await world.outbox(template="booking_rescheduled_therapist")
    assert told.recipient == "7001" and told.data["new_starts_at_local"] == "Thu 13 Mar 2031, 11:00 EAT"
    assert await world.outbox(template="booking_rescheduled_client") == []  # the chat answered
    [mail] = await world.outbox(template="booking_rescheduled_email")
    invite = render(mail.template, "email", mail.data).attachments[0].content.decode()
    assert "SEQUENCE:1" in invite and f"UID:{booking.reference}@smilingsteps" in invite
    assert "DTSTART;TZID=Africa/Nairobi:20310313T110000" in invite


async def test_an_sms_client_moves_an_unpaid_session_by_numbers(make_world: MakeWorld) -> None:
    world = await make_world()
    booking = await booked(world, paid=False, channel="sms", user_key=SMS_CLIENT, email=None)
    chat = world.chat(SMS_CLIENT, channel="sms")
    await chat.send("MY")
    await sms_number(chat, messages.label("reschedule"))
    await sms_number(chat, messages.day_label(NEW.date()))
    await sms_number(chat, messages.time_label(NEW))
    new = "Thu 13 Mar, 11:00"
    assert chat.text == messages.say("move_confirm", "sms", reference=booking.reference, new=new)
    await sms_number(chat, messages.label("yes_move"))
    assert chat.text == messages.say(
        "move_done", "sms", reference=booking.reference, when=new, therapist=world.therapist_name
    )
    moved = await reload(world, booking.id)
    assert (moved.starts_at, moved.status) == (NEW, BookingStatus.APPROVED)  # still to be paid
    assert len(await world.outbox(template="booking_rescheduled_therapist")) == 1


async def test_keep_it_leaves_the_session_where_it_was(make_world: MakeWorld) -> None:
    world = await make_world()
    booking = await booked(world, paid=True)
    chat = world.chat()
    await chat.send("/my")
    await choose_new_time(chat)
    await chat.press(messages.label("keep"))
    assert chat.text == messages.say("move_kept", reference=booking.reference, when="Wed 12 Mar, 10:00 EAT")
    assert (await reload(world, booking.id)).starts_at == BOOKED


# -- refusals ----------------------------------------------------------------------------------------


async def test_inside_the_window_the_card_offers_no_reschedule_and_an_old_button_names_the_window(
    make_world: MakeWorld,
) -> None:
    world = await make_world()
    booking = await booked(world, paid=True, starts_at=START + timedelta(hours=20))
    chat = world.chat()
    await chat.send("/my")
    assert messages.label("reschedule") not in chat.labels
    await chat.choose(values.action(values.RESCHEDULE, booking.id))
    assert chat.text == messages.say("move_too_late", reference=booking.reference, window="24 hours")
    assert "can be moved until 24 hours before it starts" in chat.text
    assert (await reload(world, booking.id)).starts_at == START + timedelta(hours=20)


async def test_when_the_window_closes_between_choosing_and_confirming_nothing_moves(
    make_world: MakeWorld,
) -> None:
    world = await make_world(CLIENT_RESCHEDULE_WINDOW_HOURS="48")
    starts_at = START + timedelta(hours=48, minutes=10)
    booking = await booked(world, paid=False, starts_at=starts_at)
    chat = world.chat()
    await chat.send("/my")
    await choose_new_time(chat)
    world.runtime.clock.advance(20 * 60)  # type: ignore[attr-defined]
    await chat.press(messages.label("yes_move"))
    assert chat.text == messages.say("move_too_late", reference=booking.reference, window="48 hours")
    assert (await reload(world, booking.id)).starts_at == starts_at


async def test_with_the_window_set_empty_clients_cannot_move_sessions(make_world: MakeWorld) -> None:
    world = await make_world(CLIENT_RESCHEDULE_WINDOW_HOURS="")
    booking = await booked(world, paid=True)
    chat = world.chat()
    await chat.send("/my")
    assert messages.label("reschedule") not in chat.labels
    await chat.choose(values.action(values.RESCHEDULE, booking.id))
    assert chat.text == messages.say("move_off", reference=booking.reference)


async def test_a_pending_request_cannot_be_moved(make_world: MakeWorld) -> None:
    world = await make_world()
    booking = await booked(world, paid=False)
    async with world.runtime.uow() as uow:
        (await uow.session.get_one(Booking, booking.id)).status = BookingStatus.PENDING_APPROVAL
        await uow.commit()
    chat = world.chat()
    await chat.choose(values.action(values.RESCHEDULE, booking.id))
    assert chat.text == messages.say("move_not_allowed", reference=booking.reference)


# -- the race --------------------------------------------------------------------------------------------


async def test_two_clients_taking_the_same_new_slot_at_once_one_wins_the_other_is_offered_the_rest(
    make_world: MakeWorld,
) -> None:
    world = await make_world()
    first = await booked(world, paid=True)
    second = await booked(world, paid=False, starts_at=BOOKED + timedelta(hours=2), user_key="9002")
    chats = [world.chat(), world.chat("9002", name="Otieno")]
    for chat in chats:
        await chat.send("/my")
        await choose_new_time(chat)
    await asyncio.gather(*(chat.press(messages.label("yes_move")) for chat in chats))
    won = [chat for chat in chats if chat.text.startswith("Done:")]
    lost = [chat for chat in chats if chat is not won[0]] if len(won) == 1 else []
    assert len(won) == 1 and len(lost) == 1, [c.text for c in chats]
    assert messages.say("slot_taken") in lost[0].text
    assert lost[0].labels and messages.time_label(NEW) not in lost[0].labels  # the other free times
    starts = sorted([(await reload(world, first.id)).starts_at, (await reload(world, second.id)).starts_at])
    assert starts.count(NEW) == 1


# -- the practitioner approves or declines --------------------------------------------------------------


async def test_with_approval_the_new_slot_is_held_and_the_practitioner_approves_by_button(
    make_world: MakeWorld,
) -> None:
    world = await make_world(RESCHEDULE_NEEDS_APPROVAL="true")
    booking = await booked(world, paid=True)
    chat = world.chat()
    await chat.send("/my")
    await choose_new_time(chat)
    await chat.press(messages.label("yes_move"))
    assert chat.text.startswith("Request sent:")
    assert "Until then it stays on Wed 12 Mar, 10:00 EAT" in chat.text
    assert (await reload(world, booking.id)).starts_at == BOOKED  # the old slot is kept meanwhile
    slots = await available_slots(world.runtime, world.therapist_id, 50, NEW.date())
    assert NEW not in slots  # ...and the new one is held
    client = await find_or_create_client(world.runtime, "telegram", "9003", "Akinyi")
    with pytest.raises(BookingError) as taken:
        await create_booking(
            world.runtime,
            client_id=client.id,
            therapist_id=world.therapist_id,
            session_type_id=world.session_type_id,
            starts_at=NEW,
        )
    assert taken.value.code == "slot_taken"
    [request] = await world.outbox(template="reschedule_requested_therapist")
    labels = [b[0] for b in request.data["buttons"]]
    assert labels == ["Approve", "Decline"]
    therapist = world.therapist_chat()
    await therapist.choose(request.data["buttons"][0][1])
    assert therapist.text.startswith("Approved:") and "Thu 13 Mar, 11:00 EAT" in therapist.text
    moved = await reload(world, booking.id)
    assert (moved.starts_at, moved.status) == (NEW, BookingStatus.CONFIRMED)
    assert len(await world.outbox(template="booking_rescheduled_client")) == 1
    await therapist.choose(request.data["buttons"][0][1])  # a second press changes nothing
    assert therapist.text == messages.say("move_already_decided")


async def test_an_sms_practitioner_declines_by_code_and_the_booking_keeps_its_time(
    make_world: MakeWorld,
) -> None:
    world = await make_world(RESCHEDULE_NEEDS_APPROVAL="true")
    booking = await booked(world, paid=False, therapist_id=world.sms_therapist_id)
    chat = world.chat()
    await chat.send("/my")
    await choose_new_time(chat)
    await chat.press(messages.label("yes_move"))
    async with world.runtime.uow() as uow:
        request = (await uow.session.scalars(select(BookingReschedule))).one()
    [asked] = await world.outbox(template="reschedule_requested_therapist")
    assert asked.channel == "sms" and f"D{request.code}" in render(asked.template, "sms", asked.data).text
    therapist = world.chat(SMS_THERAPIST_PHONE, channel="sms", name="Brian")
    await therapist.send(f"D{request.code}")
    assert therapist.text.startswith("Declined:") and "Wed 12 Mar, 10:00" in therapist.text
    assert (await reload(world, booking.id)).starts_at == BOOKED
    [declined] = await world.outbox(template="reschedule_declined_client")
    told = render(declined.template, "telegram", declined.data).text
    assert "It stays on Wed 12 Mar 2031, 10:00 EAT" in told
    assert NEW in await available_slots(world.runtime, world.sms_therapist_id, 50, NEW.date())  # released


async def test_on_sms_r_moves_the_one_movable_session_and_with_two_lists_them(make_world: MakeWorld) -> None:
    world = await make_world()
    booking = await booked(world, paid=True, channel="sms", user_key=SMS_CLIENT)
    chat = world.chat(SMS_CLIENT, channel="sms")
    await chat.send("R")
    assert chat.text.startswith(
        messages.say("move_intro", "sms", reference=booking.reference, when="Wed 12 Mar, 10:00")
    )
    await sms_number(chat, messages.day_label(NEW.date()))
    await sms_number(chat, messages.time_label(NEW))
    await sms_number(chat, messages.label("yes_move"))
    assert chat.text.startswith(f"Done: {booking.reference} is now on Thu 13 Mar, 11:00.")
    await booked(world, paid=False, starts_at=BOOKED + timedelta(days=1), channel="sms", user_key=SMS_CLIENT)
    await chat.send("r")
    assert chat.text.startswith(messages.say("my_header", "sms"))
    assert chat.labels.count(messages.label("reschedule")) == 2


@pytest.mark.parametrize("picked", ["pay", "cancel_booking"])
async def test_on_sms_my_then_a_session_s_number_then_r_moves_that_session(
    make_world: MakeWorld, picked: str
) -> None:
    world = await make_world()
    await booked(world, paid=True, channel="sms", user_key=SMS_CLIENT)
    later = await booked(
        world, paid=False, starts_at=BOOKED + timedelta(days=1), channel="sms", user_key=SMS_CLIENT
    )
    chat = world.chat(SMS_CLIENT, channel="sms")
    await chat.send("MY")
    await sms_number(chat, messages.label(picked))  # the second session's only such number
    assert later.reference in chat.text
    await chat.send("R")
    assert chat.text.startswith(
        messages.say("move_intro", "sms", reference=later.reference, when="Thu 13 Mar, 10:00")
    )
    await sms_number(chat, messages.day_label((NEW + timedelta(days=1)).date()))
    await sms_number(chat, messages.time_label(NEW))
    await sms_number(chat, messages.label("yes_move"))
    assert chat.text.startswith(f"Done: {later.reference} is now on Fri 14 Mar, 11:00.")
    moved = await reload(world, later.id)
    assert (moved.starts_at, moved.status) == (NEW + timedelta(days=1), BookingStatus.APPROVED)


async def test_on_sms_r_after_choosing_a_session_too_close_to_move_names_the_window(
    make_world: MakeWorld,
) -> None:
    world = await make_world()
    soon = await booked(
        world, paid=False, starts_at=START + timedelta(hours=3), channel="sms", user_key=SMS_CLIENT
    )
    await booked(world, paid=True, channel="sms", user_key=SMS_CLIENT)  # movable, but not chosen
    chat = world.chat(SMS_CLIENT, channel="sms")
    await chat.send("MY")
    await sms_number(chat, messages.label("pay"))
    await chat.send("R")
    assert chat.text == messages.say("move_too_late", "sms", reference=soon.reference, window="24 hours")
    assert (await reload(world, soon.id)).starts_at == START + timedelta(hours=3)


async def test_cancelling_a_booking_with_a_pending_move_releases_the_held_slot(make_world: MakeWorld) -> None:
    world = await make_world(RESCHEDULE_NEEDS_APPROVAL="true")
    booking = await booked(world, paid=False)
    chat = world.chat()
    await chat.send("/my")
    await choose_new_time(chat)
    await chat.press(messages.label("yes_move"))
    assert NEW not in await available_slots(world.runtime, world.therapist_id, 50, NEW.date())
    await chat.send("/my")
    await chat.press(messages.label("cancel_booking"))
    await chat.press(messages.label("yes_cancel"))
    assert (await reload(world, booking.id)).status == BookingStatus.CANCELLED
    assert NEW in await available_slots(world.runtime, world.therapist_id, 50, NEW.date())
    async with world.runtime.uow() as uow:
        request = (await uow.session.scalars(select(BookingReschedule))).one()
    assert request.status == "WITHDRAWN"
    [asked] = await world.outbox(template="reschedule_requested_therapist")
    therapist = world.therapist_chat()
    await therapist.choose(asked.data["buttons"][0][1])  # the old Approve button
    assert therapist.text == messages.say("move_request_gone")
