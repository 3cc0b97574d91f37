"""The practitioner's side of the conversation: linking, dashboard, Approve/Decline, session lists."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from core.db.models import Booking, Therapist
from core.dialog import messages
from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.templates import render
from tests.factories import make_attempt, make_booking, make_client, make_therapist
from tests.integration.test_dialog_support import (
    SMS_THERAPIST_PHONE,
    THERAPIST_PHONE,
    Chat,
    World,
    book,
    build_world,
)


@pytest.fixture
async def world(runtime: Runtime) -> World:
    return await build_world(runtime)


async def _requested(world: World, **kwargs: object) -> Booking:
    await book(world.chat(), world, **kwargs)  # type: ignore[arg-type]
    return (await world.bookings())[-1]


async def _status(world: World, booking_id: int) -> str:
    async with world.runtime.uow() as uow:
        return (await uow.session.get_one(Booking, booking_id)).status


# Feature: mpesa-payment-integration, Property 3: Therapist Approval Updates Session Status
# Feature: mpesa-payment-integration, Property 4: Approval Triggers Payment Notification
async def test_the_practitioner_approves_with_the_button_and_the_client_is_asked_to_pay(world: World) -> None:
    booking = await _requested(world, email="wanjiru@example.org")
    [request] = await world.outbox(template="booking_requested_therapist")
    approve = render(request.template, request.channel, request.data).buttons[0].callback_data
    therapist = world.therapist_chat()
    await therapist.choose(approve)
    assert therapist.last[0].text == f"Approved {booking.reference}. Wanjiru has been asked to pay."
    assert therapist.last[0].edit_previous  # the request message loses its buttons
    assert await _status(world, booking.id) == BookingStatus.APPROVED
    [to_client] = await world.outbox(template="booking_approved_client")
    assert [b.label for b in render(to_client.template, to_client.channel, to_client.data).buttons] == [
        "Pay with M-Pesa"
    ]
    assert len(await world.outbox(template="booking_approved_email")) == 1


async def test_approving_twice_or_from_a_stale_button_is_harmless(world: World) -> None:
    booking = await _requested(world)
    therapist = world.therapist_chat()
    await therapist.choose(f"approve:{booking.id}")  # the templates' unprefixed default form
    assert "Approved" in therapist.text
    await therapist.choose(f"v1:approve:{booking.id}")
    assert therapist.text == messages.say("already_approved", reference=booking.reference)
    await therapist.choose(f"v1:decline:{booking.id}")
    assert therapist.text == messages.say("already_approved", reference=booking.reference)
    assert await _status(world, booking.id) == BookingStatus.APPROVED
    assert len(await world.outbox(template="booking_approved_client")) == 1


async def test_nobody_but_the_bookings_practitioner_can_approve_it(world: World) -> None:
    booking = await _requested(world)
    client = world.chat()
    await client.choose(f"v1:approve:{booking.id}")
    assert client.text == messages.say("request_not_found")
    other = Chat(world.engine, "sms", SMS_THERAPIST_PHONE)
    await other.choose(f"v1:approve:{booking.id}")
    assert other.text == messages.say("request_not_found", "sms")
    await other.send(f"A{booking.approval_code}")  # not their request either
    assert other.text == messages.say("unknown_code", "sms", code=booking.approval_code)
    assert await _status(world, booking.id) == BookingStatus.PENDING_APPROVAL


async def test_declining_tells_the_client(world: World) -> None:
    booking = await _requested(world)
    therapist = world.therapist_chat()
    await therapist.choose(f"v1:decline:{booking.id}")
    assert therapist.text == f"Declined {booking.reference}. Wanjiru has been told."
    assert await _status(world, booking.id) == BookingStatus.DECLINED
    assert len(await world.outbox(template="booking_declined_client")) == 1


async def test_an_sms_practitioner_answers_with_a_and_d_codes(world: World) -> None:
    first = await _requested(world, therapist=world.sms_therapist_name)
    [request] = await world.outbox(template="booking_requested_therapist")
    assert request.channel == "sms" and request.recipient == SMS_THERAPIST_PHONE
    therapist = Chat(world.engine, "sms", SMS_THERAPIST_PHONE)
    await therapist.send(f"  a {first.approval_code.lower()}\n")
    assert f"Approved {first.reference}" in therapist.text
    assert await _status(world, first.id) == BookingStatus.APPROVED
    second = await _requested(world, therapist=world.sms_therapist_name)
    await therapist.send(f"D{second.approval_code}")
    assert await _status(world, second.id) == BookingStatus.DECLINED
    await therapist.send("AZZZZZ")
    assert therapist.text == messages.say("unknown_code", "sms", code="ZZZZZ")


async def test_a_client_texting_an_approval_code_approves_nothing(world: World) -> None:
    booking = await _requested(world, therapist=world.sms_therapist_name)
    client = Chat(world.engine, "sms", "254711082300")
    await client.send(f"A{booking.approval_code}")
    assert await _status(world, booking.id) == BookingStatus.PENDING_APPROVAL


async def test_start_with_the_link_code_links_the_telegram_account_once(world: World) -> None:
    async with world.runtime.uow() as uow:
        therapist = await make_therapist(
            uow.session, name="Dr. Njeri", telegram_user_id=None, telegram_link_code="one-time-code"
        )
        await uow.commit()
    chat = Chat(world.engine, "telegram", "6100")
    await chat.send("/start one-time-code")
    assert "Welcome, Dr. Njeri!" in chat.text and chat.labels == ["Today", "Upcoming", "All sessions"]
    async with world.runtime.uow() as uow:
        row = await uow.session.get_one(Therapist, therapist.id)
        assert row.telegram_user_id == 6100 and row.telegram_link_code is None
    intruder = Chat(world.engine, "telegram", "6200")
    await intruder.send("/start one-time-code")
    assert messages.say("link_invalid") in intruder.text
    await chat.send("/start")
    assert "Hello Dr. Njeri" in chat.text


async def test_the_dashboard_lists_requests_waiting_with_their_buttons(world: World) -> None:
    booking = await _requested(world)
    therapist = world.therapist_chat()
    await therapist.send("/start")
    assert "Waiting for your approval: 1" in therapist.text
    assert booking.reference in therapist.text
    assert therapist.option("Approve").value == f"v1:approve:{booking.id}"
    await therapist.press("Approve")
    assert await _status(world, booking.id) == BookingStatus.APPROVED


# Feature: mpesa-payment-integration, Property 33: Dashboard Shows Payment Status
# Feature: mpesa-payment-integration, Property 34: Session Details Show Transaction ID
# Feature: mpesa-payment-integration, Property 36: Dashboard Distinguishes Payment Status
async def test_session_lists_mark_paid_and_unpaid_and_show_receipts(world: World) -> None:
    now = world.runtime.clock()
    today_late = datetime.combine(now.astimezone(NAIROBI).date(), time(23, 30), NAIROBI)
    if today_late <= now:
        today_late = now + timedelta(minutes=5)
    async with world.runtime.uow() as uow:
        therapist = await uow.session.get_one(Therapist, world.therapist_id)
        paid = await make_booking(
            uow.session,
            therapist=therapist,
            status=BookingStatus.CONFIRMED,
            starts_at=today_late,
            client=await make_client(uow.session, name="Akinyi"),
        )
        await make_attempt(uow.session, paid, status=PaymentStatus.PAID, mpesa_receipt="QKX1ABC234")
        unpaid = await make_booking(
            uow.session,
            therapist=therapist,
            status=BookingStatus.APPROVED,
            starts_at=now + timedelta(days=2),
            client=await make_client(uow.session, name="Otieno"),
        )
        await uow.commit()
    chat = world.therapist_chat()
    await chat.send("/today")
    assert chat.text.startswith("Today's sessions:")
    assert "[PAID]" in chat.text and "Akinyi" in chat.text and "M-Pesa QKX1ABC234" in chat.text
    assert "Otieno" not in chat.text
    await chat.send("/upcoming")
    lines = chat.text.splitlines()
    assert any(line.startswith("[PAID]") and "QKX1ABC234" in line for line in lines)
    assert any(
        line.startswith("[UNPAID]") and "Otieno" in line and "awaiting payment" in line for line in lines
    )
    await chat.send("/sessions")
    assert chat.text.startswith("All sessions:")
    assert paid.reference in chat.text and unpaid.reference in chat.text
    sms = Chat(world.engine, "sms", THERAPIST_PHONE)
    await sms.send("upcoming")
    assert "[PAID]" in sms.text and "[UNPAID]" in sms.text
