"""Cancelling from "my sessions" in the conversation: unpaid always, paid only inside the window.

The engine on a real database; the runtime's clock starts at a fixed Nairobi morning and is
moved by the test (no wall-clock dependence).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from core.db.models import Booking, Client, SessionType, Therapist
from core.dialog import messages, values
from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime, build_runtime
from core.services.booking.lifecycle import find_or_create_client
from core.services.notifications.reminders import create_reminders
from tests.conftest import make_settings
from tests.factories import make_attempt, make_booking
from tests.integration.test_dialog_support import (
    CLIENT_TELEGRAM_ID,
    THERAPIST_TELEGRAM_ID,
    World,
    build_world,
)
from tests.support.payments import Clock

START = datetime(2031, 3, 10, 8, 0, tzinfo=NAIROBI)  # a Monday morning in Nairobi
RECEIPT = "QKX1ABC234"
SMS_CLIENT = "254722333444"

MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(database_url: str) -> AsyncIterator[MakeWorld]:
    """Worlds (one practice, one database) with CLIENT_CANCEL_WINDOW_HOURS set or not."""
    made: list[Runtime] = []

    async def build(window_hours: str | None = None) -> World:
        extra = {} if window_hours is None else {"CLIENT_CANCEL_WINDOW_HOURS": window_hours}
        runtime = build_runtime(make_settings(database_url, **extra), clock=Clock(start=START))
        made.append(runtime)
        return await build_world(runtime)

    yield build
    for runtime in made:
        await runtime.close()


async def _paid_booking(
    world: World, *, starts_in: timedelta, channel: str = "telegram", user_key: str = CLIENT_TELEGRAM_ID
) -> Booking:
    """A CONFIRMED, paid booking (with reminders) of the chat user ``user_key`` on ``channel``."""
    runtime = world.runtime
    ref = await find_or_create_client(runtime, channel, user_key, "Wanjiru")
    async with runtime.uow() as uow:
        session = uow.session
        booking = await make_booking(
            session,
            status=BookingStatus.CONFIRMED,
            client=await session.get_one(Client, ref.id),
            therapist=await session.get_one(Therapist, world.therapist_id),
            session_type=await session.get_one(SessionType, world.session_type_id),
            starts_at=runtime.clock() + starts_in,
        )
        await make_attempt(
            session,
            booking,
            status=PaymentStatus.PAID,
            mpesa_receipt=RECEIPT,
            paid_amount_kes=booking.price_kes,
        )
        await create_reminders(session, booking, now=runtime.clock())
        await uow.commit()
        return booking


async def _status(world: World, booking_id: int) -> str:
    async with world.runtime.uow() as uow:
        return (await uow.session.get_one(Booking, booking_id)).status


async def test_without_a_window_a_paid_session_offers_no_cancel_and_an_old_button_is_refused(
    make_world: MakeWorld,
) -> None:
    world = await make_world()
    booking = await _paid_booking(world, starts_in=timedelta(days=5))
    chat = world.chat()
    await chat.send("/my")
    assert "Paid and confirmed (M-Pesa QKX1ABC234)" in chat.text
    assert "Cancel booking" not in chat.labels
    await chat.choose(values.action(values.CANCEL_BOOKING, booking.id))
    assert chat.text == messages.say("cancel_paid_not_allowed", reference=booking.reference)
    assert "contact the practice" in chat.text
    assert await _status(world, booking.id) == BookingStatus.CONFIRMED
    assert await world.outbox(template="booking_cancelled_therapist") == []


async def test_inside_the_window_a_client_cancels_a_paid_session_and_is_told_the_refund_is_arranged(
    make_world: MakeWorld,
) -> None:
    world = await make_world("24")
    booking = await _paid_booking(world, starts_in=timedelta(hours=25))
    chat = world.chat()
    await chat.send("/my")
    assert chat.option("Cancel booking").value == values.action(values.CANCEL_BOOKING, booking.id)
    await chat.press("Cancel booking")
    assert "the practice will arrange your refund" in chat.text and "KES 2,500" in chat.text
    assert chat.labels == ["Yes, cancel it", "Keep it"]
    await chat.press("Yes, cancel it")
    assert booking.reference in chat.text
    assert "The practice will arrange the refund of your KES 2,500 (M-Pesa QKX1ABC234)." in chat.text
    assert "[TEST MODE]" in chat.text  # a refund is a payment message (simulator mode)
    assert await _status(world, booking.id) == BookingStatus.CANCELLED
    [notice] = await world.outbox(template="booking_cancelled_therapist")
    assert notice.channel == "telegram" and notice.recipient == str(THERAPIST_TELEGRAM_ID)
    assert await world.outbox(template="booking_cancelled_client") == []  # the chat reply is enough


async def test_closer_than_the_window_a_paid_session_offers_no_cancel_and_says_why(
    make_world: MakeWorld,
) -> None:
    world = await make_world("24")
    booking = await _paid_booking(world, starts_in=timedelta(hours=23))
    chat = world.chat()
    await chat.send("/my")
    assert "Cancel booking" not in chat.labels
    await chat.choose(values.action(values.CANCEL_BOOKING, booking.id))
    assert chat.text == messages.say("cancel_too_late", reference=booking.reference, window="24 hours")
    assert await _status(world, booking.id) == BookingStatus.CONFIRMED


async def test_when_the_window_closes_between_asking_and_confirming_nothing_is_cancelled(
    make_world: MakeWorld,
) -> None:
    world = await make_world("1")
    booking = await _paid_booking(world, starts_in=timedelta(minutes=70))
    chat = world.chat()
    await chat.send("/my")
    await chat.press("Cancel booking")
    clock = world.runtime.clock
    assert isinstance(clock, Clock)
    clock.advance(20 * 60)  # 50 minutes before the start (and before the chat's 30-minute expiry)
    await chat.press("Yes, cancel it")
    assert chat.text == messages.say("cancel_too_late", reference=booking.reference, window="1 hour")
    assert await _status(world, booking.id) == BookingStatus.CONFIRMED
    assert await world.outbox(template="booking_cancelled_therapist") == []


async def test_an_sms_client_cancels_a_paid_session_by_numbers_inside_the_window(
    make_world: MakeWorld,
) -> None:
    world = await make_world("24")
    booking = await _paid_booking(world, starts_in=timedelta(days=3), channel="sms", user_key=SMS_CLIENT)
    chat = world.chat(SMS_CLIENT, channel="sms")
    await chat.send("MY")
    assert "Cancel booking" in chat.labels
    await chat.press("Cancel booking")
    assert "refund of KES 2,500" in chat.text
    await chat.press("Yes, cancel it")
    assert chat.text.endswith("The practice will arrange the refund of KES 2,500.")
    assert await _status(world, booking.id) == BookingStatus.CANCELLED
    assert len(await world.outbox(template="booking_cancelled_therapist")) == 1


async def test_a_client_cancelling_a_pending_request_in_the_chat_tells_the_practitioner(
    make_world: MakeWorld,
) -> None:
    world = await make_world()
    runtime = world.runtime
    ref = await find_or_create_client(runtime, "telegram", CLIENT_TELEGRAM_ID, "Wanjiru")
    async with runtime.uow() as uow:
        session = uow.session
        booking = await make_booking(
            session,
            status=BookingStatus.PENDING_APPROVAL,
            client=await session.get_one(Client, ref.id),
            therapist=await session.get_one(Therapist, world.therapist_id),
            session_type=await session.get_one(SessionType, world.session_type_id),
            starts_at=runtime.clock() + timedelta(days=2),
        )
        await uow.commit()
    chat = world.chat()
    await chat.send("/my")
    await chat.press("Cancel booking")
    assert chat.text == messages.say(
        "cancel_confirm", reference=booking.reference, when=messages.when(booking.starts_at)
    )
    await chat.press("Yes, cancel it")
    assert chat.text == messages.say("cancel_done", reference=booking.reference)
    [notice] = await world.outbox(template="booking_cancelled_therapist")
    assert notice.recipient == str(THERAPIST_TELEGRAM_ID) and notice.data["refund_due"] is False
