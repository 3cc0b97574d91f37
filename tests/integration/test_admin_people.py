"""The admin site's people pages over HTTP: failed notifications, practitioners, clients.

Each test signs in through the real login form (tests/support/admin.py) and runs on SQLite and,
with TEST_DATABASE_URL, PostgreSQL. E-mail goes over real SMTP to the capture server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from markupsafe import escape
from sqlalchemy import func, select

from core.db.models import AuditEntry, Client, Outbox, PaymentAttempt, Therapist
from core.db.types import utcnow
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services.booking.queries import bookable_therapists
from core.services.notifications import notify
from senders.email import SmtpSender
from simulators.smtp import SmtpCaptureServer
from tests.factories import make_attempt, make_booking, make_client, make_therapist
from tests.integration.test_dialog_support import build_world
from tests.support.admin import AdminSite, admin_app

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ESCAPED = str(escape(HOSTILE))  # as Jinja's autoescape writes it
EMAIL_DATA = {
    "reference": "SS1A2B3C4D5E", "therapist_name": "Dr. Amani Wanjiku", "session_type": "Individual",
    "starts_at_local": "Mon 30 Nov 2026, 10:00 EAT", "amount_kes": 2500,
}
GET_PAGES = ("/admin/notifications", "/admin/practitioners", "/admin/clients", "/admin/clients/1")
POSTS = (
    ("/admin/notifications/1", {"action": "send_again"}),
    ("/admin/practitioners", {"name": "Neema", "email": "n@example.org", "phone": "0712345678"}),
    ("/admin/practitioners/1", {"action": "deactivate"}),
    ("/admin/clients/1/forget", {"confirm": "yes"}),
)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpCaptureServer]:
    async with SmtpCaptureServer() as server:
        yield server


async def _count(runtime: Runtime, column: object, *where: object) -> int:
    async with runtime.uow() as uow:
        return int(await uow.session.scalar(select(func.count(column)).where(*where)) or 0)  # type: ignore[arg-type]


async def _failed_email(
    runtime: Runtime, *, address: str = "akinyi@example.org", error: str = "550 no"
) -> int:
    async with runtime.uow() as uow:
        client = await make_client(uow.session, email=address)
        await notify.email_client(
            uow.session, client, email=address, template="booking_approved_email", data=EMAIL_DATA,
            dedupe_key=f"mail:{address}",
        )
        await uow.commit()
        row = await uow.session.scalar(select(Outbox).where(Outbox.recipient == address))
        assert row is not None
        row.status, row.last_error = "FAILED", error
        await uow.commit()
        return row.id


async def _access_entries(runtime: Runtime, what: str) -> list[AuditEntry]:
    async with runtime.uow() as uow:
        query = select(AuditEntry).where(AuditEntry.action == "admin.accessed").order_by(AuditEntry.seq)
        return [e for e in (await uow.session.scalars(query)).all() if e.details["what"] == what]


# -- the gate -------------------------------------------------------------------------------------


# Feature: mpesa-payment-integration, Property 50: endpoints require auth
async def test_every_people_page_needs_a_signed_in_admin(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        await make_client(uow.session, name="Amina")
        await make_therapist(uow.session)
        await uow.commit()
    await _failed_email(runtime)
    async with TestClient(TestServer(admin_app(runtime))) as anonymous:
        for path in GET_PAGES:
            response = await anonymous.get(path, allow_redirects=False)
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/admin/login?next=")
        for path, form in POSTS:
            assert (await anonymous.post(path, data=form, allow_redirects=False)).status == 403, path
    async with runtime.uow() as uow:
        assert (await uow.session.get_one(Outbox, 1)).status == "FAILED"
        assert (await uow.session.get_one(Therapist, 1)).active
        assert (await uow.session.get_one(Client, 1)).name == "Amina"
        assert await uow.session.scalar(select(func.count(Therapist.id))) == 1


async def test_every_people_post_without_the_csrf_token_is_refused_and_changes_nothing(
    admin: AdminSite,
) -> None:
    async with admin.runtime.uow() as uow:
        await make_client(uow.session, name="Amina")
        await make_therapist(uow.session)
        await uow.commit()
    await _failed_email(admin.runtime)
    for path, form in POSTS:
        assert (await admin.post(path, form, csrf=False)).status == 403, path
        assert (await admin.post(path, form, csrf="not-the-token")).status == 403, path
    async with admin.runtime.uow() as uow:
        assert (await uow.session.get_one(Outbox, 1)).status == "FAILED"
        assert (await uow.session.get_one(Therapist, 1)).active
        assert (await uow.session.get_one(Client, 1)).name == "Amina"
        assert await uow.session.scalar(select(func.count(Therapist.id))) == 1


# -- failed notifications -------------------------------------------------------------------------


async def test_a_failed_email_is_shown_with_its_error_and_sent_again_by_the_dispatcher(
    admin: AdminSite, smtp: SmtpCaptureServer
) -> None:
    outbox_id = await _failed_email(admin.runtime, error="recipient refused: 550 <b>mailbox</b> full")
    page = await (await admin.get("/admin/notifications")).text()
    assert "akinyi@example.org" in page and "booking_approved_email" in page
    assert "550 &lt;b&gt;mailbox&lt;/b&gt; full" in page and "<b>mailbox</b>" not in page
    assert f'action="/admin/notifications/{outbox_id}"' in page

    response = await admin.post(f"/admin/notifications/{outbox_id}", {"action": "send_again"})
    assert response.status == 303 and response.headers["Location"] == "/admin/notifications"
    listing = await (await admin.get("/admin/notifications")).text()
    assert f"Notification {outbox_id} is queued again" in listing
    sender = SmtpSender.for_capture(smtp.port, sender_address="Smiling Steps <no-reply@smilingsteps.example>")
    assert await notify.Dispatcher(admin.runtime, {"email": sender}, send_timeout=10).dispatch_once() == 1
    (mail,) = await smtp.mailbox.wait_for(1)
    assert mail.rcpt_tos == ["akinyi@example.org"]
    async with admin.runtime.uow() as uow:
        assert (await uow.session.get_one(Outbox, outbox_id)).status == "SENT"
        requeued = select(AuditEntry).where(AuditEntry.action == "notification.requeued")
        entry = await uow.session.scalar(requeued)
        assert entry is not None and entry.actor == f"admin:{admin.admin_id}"


async def test_send_again_refuses_a_notification_that_has_not_failed(admin: AdminSite) -> None:
    outbox_id = await _failed_email(admin.runtime)
    assert (await admin.post(f"/admin/notifications/{outbox_id}", {"action": "send_again"})).status == 303
    again = await admin.post(f"/admin/notifications/{outbox_id}", {"action": "send_again"})
    assert again.status == 409
    assert f"Notification {outbox_id} is pending, not failed" in await again.text()
    assert (await admin.post("/admin/notifications/999", {"action": "send_again"})).status == 409
    assert (await admin.post(f"/admin/notifications/{outbox_id}", {"action": "delete"})).status == 400
    assert await _count(admin.runtime, AuditEntry.id, AuditEntry.action == "notification.requeued") == 1


async def test_failed_sms_show_only_the_last_four_digits_and_bad_filters_get_a_message(
    admin: AdminSite,
) -> None:
    async with admin.runtime.uow() as uow:
        await notify.enqueue(
            uow.session, channel="sms", recipient="254711000123", template="payment_delayed_client",
            data={"reference": "SS1"}, dedupe_key="sms:1",
        )
        await uow.commit()
        row = await uow.session.get_one(Outbox, 1)
        row.status, row.last_error = "FAILED", "rejected: 254711000123 is blacklisted"
        await uow.commit()
    page = await (await admin.get("/admin/notifications?channel=sms")).text()
    assert "********0123" in page and "254711000123" not in page and "711000123" not in page
    assert "0123" not in await (await admin.get("/admin/notifications?channel=email")).text()
    for query in ("channel=fax", "page=0", "page=x", "page=99999999999"):
        response = await admin.get(f"/admin/notifications?{query}")
        assert response.status == 400, query
        assert 'class="error"' in await response.text()
    assert len(await _access_entries(admin.runtime, "/admin/notifications")) == 2


# -- practitioners --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "a name must be 2 to 120 characters"),
        ("email", "neema-at-example", "is not an e-mail address"),
        ("phone", "12345", "not a Kenyan mobile number"),
        ("hours", "mon-fri 17:00-09:00", "the end must be after the start"),
        ("email", "neema\x00@example.org", "not an e-mail address"),
    ],
)
async def test_adding_a_practitioner_with_bad_input_shows_why_and_adds_nothing(
    admin: AdminSite, field: str, value: str, message: str
) -> None:
    form = {"name": HOSTILE, "email": "neema@example.org", "phone": "0712345678", "hours": "", field: value}
    response = await admin.post("/admin/practitioners", form)
    assert response.status == 400
    page = await response.text()
    assert str(escape(message)) in page
    if field != "name":  # the form keeps what was typed, escaped
        assert ESCAPED in page and HOSTILE not in page
    assert await _count(admin.runtime, Therapist.id) == 0
    assert await _count(admin.runtime, AuditEntry.id, AuditEntry.action == "therapist.added") == 0


async def test_an_added_practitioner_is_listed_with_a_masked_phone_and_a_link_code(
    admin: AdminSite,
) -> None:
    form = {"name": HOSTILE, "email": "neema@example.org", "phone": "0712 345 678",
            "hours": "mon-fri 08:00-12:00"}
    response = await admin.post("/admin/practitioners", form)
    assert response.status == 303
    async with admin.runtime.uow() as uow:
        added = await uow.session.scalar(select(Therapist))
        assert added is not None and added.phone == "254712345678" and added.telegram_link_code
    page = await (await admin.get("/admin/practitioners")).text()
    assert ESCAPED in page and HOSTILE not in page  # in the table and in the notice
    assert "neema@example.org" in page and "********5678" in page
    assert "254712345678" not in page and "0712345678" not in page and "712 345 678" not in page
    assert added.telegram_link_code in page
    assert "mon 08:00-12:00; tue 08:00-12:00" in page
    entry_actor = f"admin:{admin.admin_id}"
    assert await _count(admin.runtime, AuditEntry.id, AuditEntry.action == "therapist.added",
                        AuditEntry.actor == entry_actor) == 1


async def test_a_deactivated_practitioner_is_not_offered_to_clients_until_reactivated(
    admin: AdminSite,
) -> None:
    async with admin.runtime.uow() as uow:
        staying = await make_therapist(uow.session, name="Amani")
        leaving = await make_therapist(uow.session, name="Brian")
        await uow.commit()
    response = await admin.post(f"/admin/practitioners/{leaving.id}", {"action": "deactivate"})
    assert response.status == 303
    assert [t.id for t in await bookable_therapists(admin.runtime)] == [staying.id]
    assert "Brian is no longer offered to clients." in await (await admin.get("/admin/practitioners")).text()
    twice = await admin.post(f"/admin/practitioners/{leaving.id}", {"action": "deactivate"})
    assert twice.status == 400 and "Brian is already inactive" in await twice.text()
    assert (await admin.post(f"/admin/practitioners/{leaving.id}", {"action": "reactivate"})).status == 303
    assert {t.id for t in await bookable_therapists(admin.runtime)} == {staying.id, leaving.id}
    assert (await admin.post("/admin/practitioners/999", {"action": "deactivate"})).status == 400
    assert (await admin.post(f"/admin/practitioners/{leaving.id}", {"action": "erase"})).status == 400
    actions = ("therapist.deactivated", "therapist.reactivated")
    assert await _count(admin.runtime, AuditEntry.id, AuditEntry.action.in_(actions)) == 2


async def test_a_practitioner_deactivated_on_the_site_is_no_longer_offered_in_the_booking_chat(
    admin: AdminSite,
) -> None:
    world = await build_world(admin.runtime)
    chat = world.chat()
    await chat.send("/start")
    await chat.press("Book a session")
    assert set(chat.labels) == {world.therapist_name, world.sms_therapist_name}
    response = await admin.post(f"/admin/practitioners/{world.sms_therapist_id}", {"action": "deactivate"})
    assert response.status == 303
    await chat.send("/start")
    await chat.press("Book a session")
    assert chat.labels == [world.therapist_name]


async def test_weekly_hours_change_only_with_valid_hours_and_a_new_link_code_is_shown(
    admin: AdminSite,
) -> None:
    async with admin.runtime.uow() as uow:
        therapist = await make_therapist(uow.session, name="Amani")
        await uow.commit()
    before = therapist.weekly_hours
    for bad in ("", "mon 09:00-25:00", "x" * 500):
        response = await admin.post(f"/admin/practitioners/{therapist.id}", {"action": "hours", "hours": bad})
        assert response.status == 400 and 'class="error"' in await response.text()
    async with admin.runtime.uow() as uow:
        assert (await uow.session.get_one(Therapist, therapist.id)).weekly_hours == before
    good = {"action": "hours", "hours": "sat 10:00-13:00; mon-tue 09:00-12:00; mon 13:00-17:00"}
    assert (await admin.post(f"/admin/practitioners/{therapist.id}", good)).status == 303
    shown = "mon 09:00-12:00; mon 13:00-17:00; tue 09:00-12:00; sat 10:00-13:00"
    assert f">{shown}</textarea>" in await (await admin.get("/admin/practitioners")).text()
    unchanged = {"action": "hours", "hours": shown}  # the pre-filled field saved as it is
    assert (await admin.post(f"/admin/practitioners/{therapist.id}", unchanged)).status == 303
    one_per_line = {"action": "hours", "hours": shown.replace("; ", "\r\n")}  # typed in the textarea
    assert (await admin.post(f"/admin/practitioners/{therapist.id}", one_per_line)).status == 303
    async with admin.runtime.uow() as uow:
        saved = await uow.session.get_one(Therapist, therapist.id)
        morning = [["09:00", "12:00"]]
        assert saved.weekly_hours == {
            "sat": [["10:00", "13:00"]], "mon": [*morning, ["13:00", "17:00"]], "tue": morning,
        }
    assert (await admin.post(f"/admin/practitioners/{therapist.id}", {"action": "link_code"})).status == 303
    async with admin.runtime.uow() as uow:
        code = (await uow.session.get_one(Therapist, therapist.id)).telegram_link_code
    assert code and code != therapist.telegram_link_code
    listing = await (await admin.get("/admin/practitioners")).text()
    assert f"New Telegram link code for Amani: {code}" in listing


# -- clients --------------------------------------------------------------------------------------


async def test_clients_are_searched_by_name_or_phone_digits_with_phones_masked(admin: AdminSite) -> None:
    async with admin.runtime.uow() as uow:
        amina = await make_client(uow.session, name=HOSTILE, phone="254712345678", email="amina@example.org")
        await make_client(uow.session, name="Baraka", phone="254733000111")
        await uow.commit()
    page = await (await admin.get("/admin/clients?q=5678")).text()
    assert f'href="/admin/clients/{amina.id}"' in page and "Baraka" not in page
    assert ESCAPED in page and HOSTILE not in page
    assert "********5678" in page and "254712345678" not in page
    assert "Baraka" in await (await admin.get("/admin/clients?q=bara")).text()
    for query in ("q=123", "page=-1", f"q={'x' * 200}", "q=ab%00c"):
        response = await admin.get(f"/admin/clients?{query}")
        assert response.status == 400, query
        assert 'class="error"' in await response.text()
    assert (await admin.get("/admin/clients?q=%E2%80&page=%FF")).status < 500  # broken UTF-8: never a 500
    first_search = (await _access_entries(admin.runtime, "/admin/clients"))[0]
    assert first_search.details["filters"] == {"q": "5678", "page": 1}


# Feature: mpesa-payment-integration, Property 69: admin access logged
async def test_a_clients_page_shows_their_bookings_and_payments_and_the_read_is_audited(
    admin: AdminSite,
) -> None:
    async with admin.runtime.uow() as uow:
        client = await make_client(uow.session, name="Amina", phone="254712345678")
        therapist = await make_therapist(uow.session, name=HOSTILE)
        booking = await make_booking(
            uow.session, client=client, therapist=therapist, status=BookingStatus.CONFIRMED
        )
        await make_attempt(
            uow.session, booking, status=PaymentStatus.PAID, phone="254712345678", mpesa_receipt="QKM0FXE6RK",
            paid_amount_kes=booking.price_kes, paid_phone="254712345678", transaction_time=utcnow(),
        )
        await uow.commit()
    response = await admin.get(f"/admin/clients/{client.id}")
    assert response.status == 200
    page = await response.text()
    assert booking.reference in page and "QKM0FXE6RK" in page and f"KES {booking.price_kes:,}" in page
    assert ESCAPED in page and HOSTILE not in page
    assert "********5678" in page and "254712345678" not in page
    (entry,) = await _access_entries(admin.runtime, f"/admin/clients/{client.id}")
    assert entry.actor == f"admin:{admin.admin_id}" and entry.details["filters"] == {"client_id": client.id}
    assert (await admin.get("/admin/clients/999")).status == 404


# Feature: mpesa-payment-integration, Property 49: deletion anonymises
async def test_forgetting_a_client_needs_the_confirmation_then_erases_them_and_keeps_the_money(
    admin: AdminSite,
) -> None:
    async with admin.runtime.uow() as uow:
        client = await make_client(uow.session, name=HOSTILE, phone="254712345678", email="amina@example.org")
        booking = await make_booking(uow.session, client=client, status=BookingStatus.CONFIRMED)
        attempt = await make_attempt(
            uow.session, booking, status=PaymentStatus.PAID, phone="254712345678", mpesa_receipt="QKM0FXE6RK",
            paid_amount_kes=booking.price_kes, paid_phone="254712345678", transaction_time=utcnow(),
        )
        await uow.commit()
    page = await (await admin.get(f"/admin/clients/{client.id}")).text()
    assert f'action="/admin/clients/{client.id}/forget"' in page and 'name="confirm"' in page
    assert ESCAPED in page and HOSTILE not in page

    unconfirmed = await admin.post(f"/admin/clients/{client.id}/forget", {})
    assert unconfirmed.status == 400 and "tick the confirmation box" in await unconfirmed.text()
    async with admin.runtime.uow() as uow:
        assert (await uow.session.get_one(Client, client.id)).name == HOSTILE

    done = await admin.post(f"/admin/clients/{client.id}/forget", {"confirm": "yes"})
    assert done.status == 303 and done.headers["Location"] == f"/admin/clients/{client.id}"
    after = await (await admin.get(f"/admin/clients/{client.id}")).text()
    assert "was forgotten" in after and "QKM0FXE6RK" in after and ESCAPED not in after
    assert 'name="confirm"' not in after
    async with admin.runtime.uow() as uow:
        gone = await uow.session.get_one(Client, client.id)
        assert gone.anonymised and (gone.name, gone.phone, gone.email, gone.telegram_user_id) == (None,) * 4
        kept = await uow.session.get_one(PaymentAttempt, attempt.id)
        assert (kept.mpesa_receipt, kept.paid_amount_kes, kept.transaction_time) == (
            "QKM0FXE6RK", booking.price_kes, attempt.transaction_time,
        )
        entry = await uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "client.anonymised"))
        assert entry is not None and entry.actor == f"admin:{admin.admin_id}"
    twice = await admin.post(f"/admin/clients/{client.id}/forget", {"confirm": "yes"})
    assert twice.status == 400 and "forgotten already" in await twice.text()
    assert (await admin.post("/admin/clients/999/forget", {"confirm": "yes"})).status == 404
