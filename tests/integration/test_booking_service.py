"""The booking service on a real database (SQLite, and PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import select

from core.db.models import AuditEntry, Booking, Client, Outbox, Therapist
from core.domain.slots import NAIROBI
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services.audit import verify_chain
from core.services.booking.lifecycle import (
    approve_booking,
    cancel_booking,
    create_booking,
    decline_booking,
    find_or_create_client,
    link_therapist_telegram,
    list_client_bookings,
    list_therapist_sessions,
)
from core.services.booking.queries import available_days, available_slots
from core.services.booking.types import BookingError
from core.templates import render
from core.templates.gsm import contains_forbidden
from tests.factories import make_attempt, make_booking, make_client, make_session_type, make_therapist


async def _setup(runtime: Runtime, **therapist: object) -> tuple[int, int, int]:
    async with runtime.uow() as uow:
        t = await make_therapist(uow.session, **therapist)
        c = await make_client(uow.session)
        s = await make_session_type(uow.session, minutes=50, price_kes=2500)
        await uow.commit()
        return t.id, c.id, s.id


async def _first_slot(runtime: Runtime, therapist_id: int, minutes: int = 50, index: int = 0) -> datetime:
    day = (await available_days(runtime, therapist_id, minutes))[0]
    return (await available_slots(runtime, therapist_id, minutes, day))[index]


async def _outbox(runtime: Runtime, template: str) -> list[Outbox]:
    async with runtime.uow() as uow:
        return list((await uow.session.scalars(select(Outbox).where(Outbox.template == template))).all())


async def _status(runtime: Runtime, booking_id: int) -> str:
    async with runtime.uow() as uow:
        return (await uow.session.get_one(Booking, booking_id)).status


# -- creating ----------------------------------------------------------------------------------


# Feature: mpesa-payment-integration, Property 1: Session Creation Sets Pending Status
async def test_a_new_booking_is_pending_approval_with_a_short_reference_and_the_price_copied(
    runtime: Runtime,
) -> None:
    therapist_id, client_id, type_id = await _setup(runtime)
    start = await _first_slot(runtime, therapist_id)
    view = await create_booking(
        runtime,
        client_id=client_id,
        therapist_id=therapist_id,
        session_type_id=type_id,
        starts_at=start,
        email="client@example.org",
    )
    assert view.status is BookingStatus.PENDING_APPROVAL
    assert re.fullmatch(r"SS-[2-9B-Z]{6}", view.reference) and len(view.reference) <= 13
    assert re.fullmatch(r"[2-9B-Z]{5}", view.approval_code)
    assert view.price_kes == 2500 and view.ends_at - view.starts_at == timedelta(minutes=50)
    assert await _status(runtime, view.id) == BookingStatus.PENDING_APPROVAL
    async with runtime.uow() as uow:
        entry = await uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "booking.created"))
        assert entry is not None and entry.subject_id == str(view.id)
        assert (await uow.session.get_one(Client, client_id)).email == "client@example.org"
    assert (await verify_chain(runtime.uow())).ok


# Feature: mpesa-payment-integration, Property 2: Session Creation Triggers Therapist Notification
async def test_the_practitioner_is_asked_to_approve_on_telegram_with_approve_and_decline_buttons(
    runtime: Runtime,
) -> None:
    therapist_id, client_id, type_id = await _setup(runtime, telegram_user_id=4242)
    start = await _first_slot(runtime, therapist_id)
    view = await create_booking(
        runtime, client_id=client_id, therapist_id=therapist_id, session_type_id=type_id, starts_at=start
    )
    [row] = await _outbox(runtime, "booking_requested_therapist")
    assert row.channel == "telegram" and row.recipient == "4242"
    message = render(row.template, row.channel, row.data)
    assert [(b.label, b.callback_data) for b in message.buttons] == [
        ("Approve", f"v1:approve:{view.id}"),
        ("Decline", f"v1:decline:{view.id}"),
    ]
    assert view.reference in message.text


# Feature: mpesa-payment-integration, Property 2: Session Creation Triggers Therapist Notification
async def test_a_practitioner_without_telegram_is_asked_by_a_discreet_sms_with_the_approval_code(
    runtime: Runtime,
) -> None:
    therapist_id, client_id, type_id = await _setup(runtime, telegram_user_id=None)
    start = await _first_slot(runtime, therapist_id)
    view = await create_booking(
        runtime, client_id=client_id, therapist_id=therapist_id, session_type_id=type_id, starts_at=start
    )
    [row] = await _outbox(runtime, "booking_requested_therapist")
    assert row.channel == "sms"
    text = render(row.template, row.channel, row.data).text
    assert f"A{view.approval_code}" in text and f"D{view.approval_code}" in text
    assert not contains_forbidden(text)


@pytest.mark.parametrize("case", ["outside_hours", "too_soon", "too_far", "overlapping"])
async def test_a_start_that_is_not_a_free_slot_is_refused(runtime: Runtime, case: str) -> None:
    therapist_id, client_id, type_id = await _setup(runtime)
    now = runtime.clock()
    first = await _first_slot(runtime, therapist_id)
    if case == "overlapping":
        await create_booking(
            runtime, client_id=client_id, therapist_id=therapist_id, session_type_id=type_id, starts_at=first
        )
    start = {
        "outside_hours": datetime.combine(first.astimezone(NAIROBI).date(), time(3, 0), NAIROBI),
        "too_soon": (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0),
        "too_far": first + timedelta(days=21),
        "overlapping": first + timedelta(minutes=30),
    }[case]
    with pytest.raises(BookingError) as refused:
        await create_booking(
            runtime, client_id=client_id, therapist_id=therapist_id, session_type_id=type_id, starts_at=start
        )
    assert refused.value.code == "slot_unavailable"


async def test_two_clients_racing_for_one_slot_get_one_booking_and_one_slot_taken(runtime: Runtime) -> None:
    therapist_id, client_id, type_id = await _setup(runtime)
    async with runtime.uow() as uow:
        others = [await make_client(uow.session) for _ in range(4)]
        await uow.commit()
    start = await _first_slot(runtime, therapist_id)
    results = await asyncio.gather(
        *[
            create_booking(
                runtime, client_id=cid, therapist_id=therapist_id, session_type_id=type_id, starts_at=start
            )
            for cid in [client_id, *(c.id for c in others)]
        ],
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, BookingError)]
    assert len(won) == 1 and len(lost) == 4
    assert {e.code for e in lost} == {"slot_taken"}
    assert len(await _outbox(runtime, "booking_requested_therapist")) == 1


async def test_a_cancelled_slot_can_be_booked_again(runtime: Runtime) -> None:
    therapist_id, client_id, type_id = await _setup(runtime)
    start = await _first_slot(runtime, therapist_id)
    first = await create_booking(
        runtime, client_id=client_id, therapist_id=therapist_id, session_type_id=type_id, starts_at=start
    )
    await cancel_booking(runtime, booking_id=first.id, client_id=client_id)
    again = await create_booking(
        runtime, client_id=client_id, therapist_id=therapist_id, session_type_id=type_id, starts_at=start
    )
    assert again.status is BookingStatus.PENDING_APPROVAL and again.id != first.id


async def test_an_invalid_email_is_refused_before_anything_is_stored(runtime: Runtime) -> None:
    therapist_id, client_id, type_id = await _setup(runtime)
    start = await _first_slot(runtime, therapist_id)
    with pytest.raises(BookingError) as refused:
        await create_booking(
            runtime,
            client_id=client_id,
            therapist_id=therapist_id,
            session_type_id=type_id,
            starts_at=start,
            email="not an email",
        )
    assert refused.value.code == "invalid_email"
    async with runtime.uow() as uow:
        assert (await uow.session.scalars(select(Booking))).all() == []


# -- deciding --------------------------------------------------------------------------------------


async def _pending(runtime: Runtime, *, email: str | None = "client@example.org") -> tuple[int, int, int]:
    therapist_id, client_id, type_id = await _setup(runtime, telegram_user_id=None)
    async with runtime.uow() as uow:
        client = await uow.session.get_one(Client, client_id)
        client.telegram_user_id = 880000 + client_id
        await uow.commit()
    start = await _first_slot(runtime, therapist_id)
    view = await create_booking(
        runtime,
        client_id=client_id,
        therapist_id=therapist_id,
        session_type_id=type_id,
        starts_at=start,
        email=email,
    )
    return view.id, therapist_id, client_id


# Feature: mpesa-payment-integration, Property 3: Therapist Approval Updates Session Status
# Feature: mpesa-payment-integration, Property 4: Approval Triggers Payment Notification
# Feature: mpesa-payment-integration, Property 60: Approval Sends Email Notification
async def test_approval_by_the_practitioner_tells_the_client_to_pay_in_chat_and_by_email(
    runtime: Runtime,
) -> None:
    booking_id, therapist_id, client_id = await _pending(runtime)
    view = await approve_booking(runtime, therapist_id=therapist_id, booking_id=booking_id)
    assert view.status is BookingStatus.APPROVED
    assert await _status(runtime, booking_id) == BookingStatus.APPROVED
    [chat] = await _outbox(runtime, "booking_approved_client")
    assert chat.channel == "telegram" and chat.recipient == str(880000 + client_id)
    rendered = render(chat.template, chat.channel, chat.data)
    assert [(b.label, b.callback_data) for b in rendered.buttons] == [
        ("Pay with M-Pesa", f"v1:pay:{booking_id}")
    ]
    assert "TEST MODE" in rendered.text  # simulator mode marks payment messages
    [mail] = await _outbox(runtime, "booking_approved_email")
    assert mail.recipient == "client@example.org"
    email = render(mail.template, mail.channel, mail.data)
    assert view.reference in email.text and "M-Pesa" in email.text
    async with runtime.uow() as uow:
        entries = (
            await uow.session.scalars(
                select(AuditEntry).where(
                    AuditEntry.subject_type == "booking", AuditEntry.action == "booking.status_changed"
                )
            )
        ).all()
        assert [(e.details["previous"], e.details["new"]) for e in entries] == [
            ("PENDING_APPROVAL", "APPROVED")
        ]
        assert entries[0].actor == f"therapist:{therapist_id}"


async def test_without_an_email_address_no_approval_email_is_queued(runtime: Runtime) -> None:
    booking_id, therapist_id, _ = await _pending(runtime, email=None)
    await approve_booking(runtime, therapist_id=therapist_id, booking_id=booking_id)
    assert await _outbox(runtime, "booking_approved_email") == []
    assert len(await _outbox(runtime, "booking_approved_client")) == 1


async def test_only_the_bookings_own_practitioner_can_approve_it(runtime: Runtime) -> None:
    booking_id, _, _ = await _pending(runtime)
    async with runtime.uow() as uow:
        stranger = await make_therapist(uow.session)
        await uow.commit()
    with pytest.raises(BookingError) as refused:
        await approve_booking(runtime, therapist_id=stranger.id, booking_id=booking_id)
    assert refused.value.code == "not_found"
    assert await _status(runtime, booking_id) == BookingStatus.PENDING_APPROVAL


async def test_approving_twice_is_harmless_and_notifies_once(runtime: Runtime) -> None:
    booking_id, therapist_id, _ = await _pending(runtime)
    await approve_booking(runtime, therapist_id=therapist_id, booking_id=booking_id)
    for decide in (approve_booking, decline_booking):
        with pytest.raises(BookingError) as again:
            await decide(runtime, therapist_id=therapist_id, booking_id=booking_id)
        assert again.value.code == "already_approved"
    assert len(await _outbox(runtime, "booking_approved_client")) == 1


async def test_concurrent_approve_and_decline_apply_exactly_one_decision(runtime: Runtime) -> None:
    booking_id, therapist_id, _ = await _pending(runtime)
    results = await asyncio.gather(
        approve_booking(runtime, therapist_id=therapist_id, booking_id=booking_id),
        decline_booking(runtime, therapist_id=therapist_id, booking_id=booking_id),
        approve_booking(runtime, therapist_id=therapist_id, booking_id=booking_id),
        return_exceptions=True,
    )
    assert len([r for r in results if not isinstance(r, Exception)]) == 1
    assert all(isinstance(r, BookingError) for r in results if isinstance(r, Exception))
    assert await _status(runtime, booking_id) in (BookingStatus.APPROVED, BookingStatus.DECLINED)


async def test_declining_tells_the_client_and_frees_the_slot(runtime: Runtime) -> None:
    booking_id, therapist_id, _ = await _pending(runtime)
    view = await decline_booking(
        runtime, therapist_id=therapist_id, booking_id=booking_id, reason="Away that day"
    )
    assert view.status is BookingStatus.DECLINED
    [row] = await _outbox(runtime, "booking_declined_client")
    assert row.data["reason"] == "Away that day"
    with pytest.raises(BookingError) as again:
        await approve_booking(runtime, therapist_id=therapist_id, booking_id=booking_id)
    assert again.value.code == "already_declined"


# -- cancelling ------------------------------------------------------------------------------------


async def test_a_client_cancels_an_unpaid_booking_but_not_a_paid_one(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        client = await make_client(uow.session)
        unpaid = await make_booking(uow.session, client=client, status=BookingStatus.APPROVED)
        paid = await make_booking(uow.session, client=client, status=BookingStatus.CONFIRMED)
        await uow.commit()
    view = await cancel_booking(runtime, booking_id=unpaid.id, client_id=client.id)
    assert view.status is BookingStatus.CANCELLED
    with pytest.raises(BookingError) as refused:
        await cancel_booking(runtime, booking_id=paid.id, client_id=client.id)
    assert refused.value.code == "not_cancellable"
    admin = await cancel_booking(runtime, booking_id=paid.id, admin_id=1, reason="practitioner ill")
    assert admin.status is BookingStatus.CANCELLED


async def test_nobody_cancels_a_booking_while_its_payment_is_in_progress(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, status=BookingStatus.APPROVED)
        await make_attempt(uow.session, booking, status=PaymentStatus.AWAITING_CUSTOMER)
        await uow.commit()
    for who in ({"client_id": booking.client_id}, {"admin_id": 1}):
        with pytest.raises(BookingError) as refused:
            await cancel_booking(runtime, booking_id=booking.id, **who)
        assert refused.value.code == "payment_in_progress"


async def test_a_client_cannot_cancel_someone_elses_booking(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, status=BookingStatus.PENDING_APPROVAL)
        other = await make_client(uow.session)
        await uow.commit()
    with pytest.raises(BookingError) as refused:
        await cancel_booking(runtime, booking_id=booking.id, client_id=other.id)
    assert refused.value.code == "not_found"


# -- lists -------------------------------------------------------------------------------------------


# Feature: mpesa-payment-integration, Property 33: Dashboard Shows Payment Status
# Feature: mpesa-payment-integration, Property 34: Session Details Show Transaction ID
# Feature: mpesa-payment-integration, Property 36: Dashboard Distinguishes Payment Status
async def test_practitioner_lists_show_payment_status_and_receipts_per_scope(runtime: Runtime) -> None:
    now = runtime.clock()
    today_late = datetime.combine(now.astimezone(NAIROBI).date(), time(23, 0), NAIROBI)
    if today_late <= now:  # just before midnight in Nairobi: keep the test meaningful
        today_late = now + timedelta(minutes=5)
    async with runtime.uow() as uow:
        therapist = await make_therapist(uow.session)
        paid = await make_booking(
            uow.session, therapist=therapist, status=BookingStatus.CONFIRMED, starts_at=today_late
        )
        await make_attempt(uow.session, paid, status=PaymentStatus.PAID, mpesa_receipt="QKX1ABC234")
        unpaid = await make_booking(
            uow.session, therapist=therapist, status=BookingStatus.APPROVED, starts_at=now + timedelta(days=3)
        )
        await make_attempt(uow.session, unpaid, status=PaymentStatus.CANCELLED, checkout_request_id=None)
        declined = await make_booking(
            uow.session, therapist=therapist, status=BookingStatus.DECLINED, starts_at=now + timedelta(days=4)
        )
        await uow.commit()
    today = await list_therapist_sessions(runtime, therapist.id, "today")
    assert [(b.id, b.paid, b.receipt) for b in today] == [(paid.id, True, "QKX1ABC234")]
    upcoming = {b.id: b for b in await list_therapist_sessions(runtime, therapist.id, "upcoming")}
    assert set(upcoming) == {paid.id, unpaid.id}
    assert upcoming[unpaid.id].paid is False and upcoming[unpaid.id].receipt is None
    assert upcoming[unpaid.id].payment_status is PaymentStatus.CANCELLED
    everything = {b.id for b in await list_therapist_sessions(runtime, therapist.id, "all")}
    assert everything == {paid.id, unpaid.id, declined.id}


async def test_a_clients_list_shows_status_and_payment_status_of_each_booking(runtime: Runtime) -> None:
    now = runtime.clock()
    async with runtime.uow() as uow:
        client = await make_client(uow.session)
        waiting = await make_booking(
            uow.session,
            client=client,
            status=BookingStatus.PENDING_APPROVAL,
            starts_at=now + timedelta(days=1),
        )
        approved = await make_booking(
            uow.session, client=client, status=BookingStatus.APPROVED, starts_at=now + timedelta(days=2)
        )
        await make_attempt(uow.session, approved, status=PaymentStatus.TIMED_OUT)
        past = await make_booking(
            uow.session, client=client, status=BookingStatus.COMPLETED, starts_at=now - timedelta(days=2)
        )
        await uow.commit()
    views = await list_client_bookings(runtime, client.id)
    assert [(v.id, v.status, v.payment_status) for v in views] == [
        (waiting.id, BookingStatus.PENDING_APPROVAL, None),
        (approved.id, BookingStatus.APPROVED, PaymentStatus.TIMED_OUT),
    ]
    assert past.id in {v.id for v in await list_client_bookings(runtime, client.id, include_past=True)}


# -- people --------------------------------------------------------------------------------------------


async def test_a_telegram_link_code_works_once_and_then_only_for_its_owner(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        therapist = await make_therapist(uow.session, telegram_user_id=None, telegram_link_code="link-code-1")
        other = await make_therapist(uow.session, telegram_user_id=555, telegram_link_code=None)
        await uow.commit()
    linked = await link_therapist_telegram(runtime, "link-code-1", 1234)
    assert linked.id == therapist.id and linked.telegram_user_id == 1234
    async with runtime.uow() as uow:
        row = await uow.session.get_one(Therapist, therapist.id)
        assert row.telegram_link_code is None and row.telegram_user_id == 1234
    assert (await link_therapist_telegram(runtime, "link-code-1", 1234)).id == therapist.id  # harmless repeat
    with pytest.raises(BookingError) as used:
        await link_therapist_telegram(runtime, "link-code-1", 9999)
    assert used.value.code == "invalid_code"
    async with runtime.uow() as uow:
        (await uow.session.get_one(Therapist, therapist.id)).telegram_link_code = "link-code-2"
        await uow.commit()
    with pytest.raises(BookingError) as taken:
        await link_therapist_telegram(runtime, "link-code-2", other.telegram_user_id or 0)
    assert taken.value.code == "already_linked"


async def test_clients_are_found_by_telegram_id_or_by_sms_number_without_mixing_them(
    runtime: Runtime,
) -> None:
    first = await find_or_create_client(runtime, "telegram", "31337", "Wanjiru", phone="0711 082 300")
    again = await find_or_create_client(runtime, "telegram", "31337", "Someone else")
    assert again.id == first.id and again.name == "Wanjiru" and again.phone == "254711082300"
    texting = await find_or_create_client(runtime, "sms", "254711082300")
    assert texting.id != first.id  # a number known from Telegram does not open that account by SMS
    assert (await find_or_create_client(runtime, "sms", "254711082300")).id == texting.id
    racing = await asyncio.gather(*[find_or_create_client(runtime, "telegram", "4455") for _ in range(4)])
    assert len({c.id for c in racing}) == 1
