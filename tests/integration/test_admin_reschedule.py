"""An admin moves a booking from the admin site: ``POST /admin/bookings/{id}/reschedule``.

The admin site over HTTP on 127.0.0.1 with a signed-in admin (both databases); the runtime's
clock starts at a fixed Nairobi Monday morning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.db.models import AuditEntry, PaymentAttempt
from core.runtime import Runtime, build_runtime
from tests.conftest import make_settings
from tests.integration.test_dialog_reschedule import BOOKED, NEW, START, booked, reload
from tests.integration.test_dialog_support import World, build_world
from tests.support.admin import AdminSite, admin_site
from tests.support.payments import Clock

NEW_FORM = "2031-03-13T11:00"  # NEW, as the datetime-local field sends it (Nairobi)


@pytest.fixture
async def site(database_url: str) -> AsyncIterator[tuple[World, AdminSite]]:
    runtime: Runtime = build_runtime(make_settings(database_url), clock=Clock(start=START))
    try:
        world = await build_world(runtime)
        async with admin_site(runtime) as admin:
            yield world, admin
    finally:
        await runtime.close()


async def _attempt_id(world: World, booking_id: int) -> int:
    async with world.runtime.uow() as uow:
        return int(
            await uow.session.scalar(select(PaymentAttempt.id).where(PaymentAttempt.booking_id == booking_id))
            or 0
        )


async def test_an_admin_moves_a_paid_booking_from_its_payment_page_and_everyone_is_told(
    site: tuple[World, AdminSite],
) -> None:
    world, admin = site
    booking = await booked(world, paid=True)
    attempt_id = await _attempt_id(world, booking.id)
    page = await (await admin.get(f"/admin/transactions/{attempt_id}")).text()
    assert f'action="/admin/bookings/{booking.id}/reschedule"' in page and 'name="starts_at"' in page
    back = f"/admin/transactions/{attempt_id}"
    response = await admin.post(
        f"/admin/bookings/{booking.id}/reschedule", {"starts_at": NEW_FORM, "back": back}
    )
    assert response.status == 303 and response.headers["Location"] == back
    moved = await reload(world, booking.id)
    assert moved.starts_at == NEW and moved.status == "CONFIRMED"
    shown = await (await admin.get(back)).text()
    assert "moved from Wed 12 Mar 2031, 10:00 EAT to Thu 13 Mar 2031, 11:00 EAT" in shown
    assert "booking.rescheduled" in shown  # on the booking's timeline
    async with world.runtime.uow() as uow:
        entry = await uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "booking.rescheduled"))
    assert entry is not None and entry.actor == f"admin:{admin.admin_id}"
    assert len(await world.outbox(template="booking_rescheduled_client")) == 1  # not in the chat: told
    assert len(await world.outbox(template="booking_rescheduled_therapist")) == 1
    assert len(await world.outbox(template="booking_rescheduled_email")) == 1


async def test_an_admin_may_move_a_booking_inside_the_clients_window_from_the_client_page(
    site: tuple[World, AdminSite],
) -> None:
    world, admin = site
    soon = START + timedelta(hours=20)
    booking = await booked(world, paid=False, starts_at=soon)
    page = await (await admin.get(f"/admin/clients/{booking.client_id}")).text()
    assert f'action="/admin/bookings/{booking.id}/reschedule"' in page
    back = f"/admin/clients/{booking.client_id}"
    response = await admin.post(
        f"/admin/bookings/{booking.id}/reschedule", {"starts_at": NEW_FORM, "back": back}
    )
    assert response.status == 303 and response.headers["Location"] == back
    assert (await reload(world, booking.id)).starts_at == NEW


@pytest.mark.parametrize(
    ("starts_at", "says"),
    [
        ("13/03/2031 11:00", "Give the new start as a date and time"),
        ("", "Give the new start as a date and time"),
        ("2031-03-15T11:00", "not a free slot"),  # a Saturday: outside the weekly hours
        ("2031-03-12T10:00", "current time"),
    ],
)
async def test_bad_or_refused_times_answer_400_and_change_nothing(
    site: tuple[World, AdminSite], starts_at: str, says: str
) -> None:
    world, admin = site
    booking = await booked(world, paid=True)
    response = await admin.post(f"/admin/bookings/{booking.id}/reschedule", {"starts_at": starts_at})
    assert response.status == 400 and says in await response.text()
    assert (await reload(world, booking.id)).starts_at == BOOKED


async def test_a_taken_slot_an_unknown_booking_and_a_missing_csrf_token_change_nothing(
    site: tuple[World, AdminSite],
) -> None:
    world, admin = site
    booking = await booked(world, paid=True)
    await booked(world, paid=False, starts_at=NEW, user_key="9002")
    taken = await admin.post(f"/admin/bookings/{booking.id}/reschedule", {"starts_at": NEW_FORM})
    assert taken.status == 400 and "taken by another booking" in await taken.text()
    unknown = await admin.post("/admin/bookings/999999/reschedule", {"starts_at": NEW_FORM})
    assert unknown.status == 400 and "no such booking" in await unknown.text()
    forged = await admin.post(
        f"/admin/bookings/{booking.id}/reschedule", {"starts_at": "2031-03-13T14:00"}, csrf=False
    )
    assert forged.status == 403
    assert (await reload(world, booking.id)).starts_at == BOOKED


async def test_the_return_address_is_only_ever_an_admin_page(site: tuple[World, AdminSite]) -> None:
    world, admin = site
    booking = await booked(world, paid=True)
    response = await admin.post(
        f"/admin/bookings/{booking.id}/reschedule", {"starts_at": NEW_FORM, "back": "https://evil.example/"}
    )
    assert response.status == 303 and response.headers["Location"] == "/admin/"
