"""The booking conversation at the engine level (Telegram-style input), on a real database."""

from __future__ import annotations

from datetime import datetime

import pytest

from core.db.models import Therapist
from core.dialog import messages
from core.dialog.types import OPTION_VALUE_MAX_BYTES, Reply
from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus
from core.runtime import Runtime
from core.services.booking.lifecycle import create_booking, find_or_create_client
from core.services.booking.queries import available_days, available_slots
from core.templates import render
from tests.integration.test_dialog_support import THERAPIST_TELEGRAM_ID, World, book, build_world


@pytest.fixture
async def world(runtime: Runtime) -> World:
    return await build_world(runtime)


def _values(replies: list[Reply]) -> list[str]:
    return [o.value for r in replies for o in r.options]


# Feature: mpesa-payment-integration, Property 1: Session Creation Sets Pending Status
# Feature: mpesa-payment-integration, Property 2: Session Creation Triggers Therapist Notification
async def test_a_client_books_step_by_step_and_the_practitioner_is_asked_to_approve(world: World) -> None:
    chat = world.chat()
    seen: list[str] = []

    await chat.send("/start")
    assert "Welcome to Smiling Steps" in chat.text and chat.labels == [
        "Book a session",
        "My sessions",
        "Help",
    ]
    await chat.press("Book a session")
    assert set(chat.labels) == {world.therapist_name, world.sms_therapist_name}
    seen += _values(chat.last)
    await chat.press(world.therapist_name)
    assert chat.labels == ["Individual · 50 min · KES 2,500"]
    seen += _values(chat.last)
    await chat.press_first()
    assert "Nairobi time" in chat.text
    days = await available_days(world.runtime, world.therapist_id, 50)
    assert chat.labels == [messages.day_label(d) for d in days][: len(chat.labels)]
    assert all(0 <= (d - datetime.now(NAIROBI).date()).days <= 14 for d in days)
    seen += _values(chat.last)
    await chat.press_first()
    slots = await available_slots(world.runtime, world.therapist_id, 50, days[0])
    assert chat.labels == [s.astimezone(NAIROBI).strftime("%H:%M") for s in slots]
    seen += _values(chat.last)
    await chat.press_first()
    assert "e-mail" in chat.text and chat.labels == ["Skip"]
    await chat.send("wanjiru@example.org")
    summary = chat.text
    assert "Individual (50 min) with Dr. Amani Wanjiku" in summary and "KES 2,500" in summary
    assert messages.when(slots[0]) in summary and "wanjiru@example.org" in summary
    assert chat.labels == ["Confirm", "Cancel"]
    seen += _values(chat.last)
    await chat.press("Confirm")

    [booking] = await world.bookings()
    assert booking.status == BookingStatus.PENDING_APPROVAL
    assert (
        booking.starts_at == slots[0]
        and booking.email == "wanjiru@example.org"
        and booking.channel == "telegram"
    )
    assert booking.reference in chat.text and "KES 2,500" in chat.text
    [request] = await world.outbox(template="booking_requested_therapist")
    assert request.recipient == str(THERAPIST_TELEGRAM_ID)
    buttons = render(request.template, request.channel, request.data).buttons
    assert [b.label for b in buttons] == ["Approve", "Decline"]
    assert all(v.startswith("v1:") and len(v.encode()) <= OPTION_VALUE_MAX_BYTES for v in seen)
    assert (await world.dialog("telegram", chat.user_key)).step == "idle"  # type: ignore[union-attr]


async def test_the_client_name_from_telegram_is_kept_for_the_practitioner(world: World) -> None:
    await book(world.chat(name="Achieng"), world)
    [request] = await world.outbox(template="booking_requested_therapist")
    assert request.data["client_name"] == "Achieng"


async def test_an_invalid_email_is_explained_and_skip_still_works(world: World) -> None:
    chat = world.chat()
    await chat.send("/book")
    await chat.press(world.therapist_name)
    for _ in range(3):
        await chat.press_first()
    await chat.send("not an address")
    assert chat.text == messages.say("invalid_email")
    await chat.press("Skip")
    assert "E-mail: none" in chat.text
    await chat.press("Confirm")
    [booking] = await world.bookings()
    assert booking.email is None


async def test_cancel_on_the_summary_books_nothing(world: World) -> None:
    chat = world.chat()
    await chat.send("/book")
    await chat.press(world.therapist_name)
    for _ in range(3):
        await chat.press_first()
    await chat.press("Skip")
    await chat.press("Cancel")
    assert messages.say("booking_dropped") in chat.text
    assert await world.bookings() == []


async def test_stop_cancel_and_slash_cancel_leave_any_step(world: World) -> None:
    for word in ("/cancel", "STOP", "cancel", " stop\n"):
        chat = world.chat()
        await chat.send("/book")
        await chat.press(world.therapist_name)
        await chat.send(word)
        assert chat.text == messages.say("stopped")
        state = await world.dialog("telegram", chat.user_key)
        assert state is not None and state.step == "idle"
    assert await world.bookings() == []


async def test_a_slot_taken_by_someone_else_meanwhile_sends_the_client_back_to_the_times(
    world: World,
) -> None:
    chat = world.chat()
    await chat.send("/book")
    await chat.press(world.therapist_name)
    for _ in range(3):
        await chat.press_first()
    await chat.press("Skip")
    state = await world.dialog("telegram", chat.user_key)
    assert state is not None
    start = datetime.fromisoformat(state.data["start"])
    other = await find_or_create_client(world.runtime, "telegram", "9002")
    await create_booking(
        world.runtime,
        client_id=other.id,
        therapist_id=world.therapist_id,
        session_type_id=world.session_type_id,
        starts_at=start,
    )
    await chat.press("Confirm")
    assert messages.say("slot_taken") in chat.text
    assert messages.when(start).split(",")[1].strip()[:5] not in chat.labels  # the taken time is gone
    await chat.press_first()  # another time — or, when the taken slot filled that day, another day
    if "Skip" not in chat.labels:
        await chat.press_first()
    await chat.press("Skip")
    await chat.press("Confirm")
    assert len(await world.bookings()) == 2


async def test_an_old_button_from_an_earlier_menu_does_nothing_harmful(world: World) -> None:
    chat = world.chat()
    await chat.send("/book")
    await chat.press(world.therapist_name)
    await chat.press_first()
    old_day = chat.option(chat.labels[0]).value
    await chat.press_first()  # now at the time step
    await chat.choose(old_day)
    assert messages.say("stale_option") in chat.text
    assert "Pick a start time" in chat.text  # the current menu is shown again
    await chat.choose("v1:tm:zzzz:202601010700")  # a forged time with a wrong token
    assert messages.say("stale_option") in chat.text
    await chat.choose("something-else-entirely")
    assert messages.say("stale_option") in chat.text
    assert await world.bookings() == []


async def test_input_that_fits_no_step_gets_a_short_help_reply(world: World) -> None:
    chat = world.chat()
    await chat.send("hello there")
    assert "/book" in chat.text and chat.labels == ["Book a session", "My sessions", "Help"]
    await chat.send("")
    assert chat.last and "/book" in chat.text
    await chat.send("/nonsense")
    assert "/book" in chat.text
    await chat.send("/book")
    await chat.send("I would like Thursday please")
    assert messages.say("help_step") in chat.text and world.therapist_name in chat.labels


# Feature: mpesa-payment-integration, Property 6: Approved Sessions Show Payment Option
async def test_my_sessions_shows_status_and_offers_pay_only_for_an_approved_booking(world: World) -> None:
    chat = world.chat()
    await chat.send("/my")
    assert chat.text == messages.say("my_none")
    await book(chat, world)
    await chat.send("/my")
    assert "Waiting for approval" in chat.text and "Pay with M-Pesa" not in chat.labels
    therapist = world.therapist_chat()
    [booking] = await world.bookings()
    await therapist.choose(f"v1:approve:{booking.id}")
    await chat.send("MY")
    assert "Approved, not paid yet (KES 2,500)" in chat.text
    assert chat.option("Pay with M-Pesa").value == f"v1:pay:{booking.id}"
    assert "Cancel booking" in chat.labels


async def test_a_client_cancels_a_booking_from_my_sessions(world: World) -> None:
    chat = world.chat()
    await book(chat, world)
    await chat.send("/my")
    await chat.press("Cancel booking")
    assert chat.labels == ["Yes, cancel it", "Keep it"]
    await chat.press("Keep it")
    assert chat.text == messages.say("cancel_kept")
    await chat.send("/my")
    await chat.press("Cancel booking")
    await chat.press("Yes, cancel it")
    [booking] = await world.bookings()
    assert booking.status == BookingStatus.CANCELLED and booking.reference in chat.text


async def test_a_practitioner_without_free_times_sends_the_client_back_to_the_list(world: World) -> None:
    # A practitioner with no hours at all: the client is told and offered the others.
    async with world.runtime.uow() as uow:
        t = await uow.session.get_one(Therapist, world.sms_therapist_id)
        t.weekly_hours = {}
        await uow.commit()
    chat = world.chat()
    await chat.send("/book")
    await chat.press(world.sms_therapist_name)
    await chat.press_first()
    assert "no free times in the next 14 days" in chat.text
    assert world.therapist_name in chat.labels
