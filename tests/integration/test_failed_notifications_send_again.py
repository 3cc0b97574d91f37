"""Failed notifications for admins: listed with their error, phones masked, and sent again on request.

The e-mail goes over real SMTP to the capture server (simulators/smtp.py): it refuses the
address first (a permanent failure), then accepts it after the admin's "send again".
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from core.db.models import AuditEntry, Outbox
from core.runtime import Runtime
from core.services.audit import verify_chain
from core.services.notifications import notify as notifications
from core.services.notifications.notify import Dispatcher, SendAgainRefused
from core.services.ops.privacy import anonymise_client
from senders.email import SmtpSender
from simulators.smtp import SmtpCaptureServer
from tests.factories import make_booking, make_client

ADDRESS = "akinyi@example.org"
DATA = {
    "reference": "SS1A2B3C4D5E", "therapist_name": "Dr. Amani Wanjiku", "session_type": "Individual",
    "starts_at_local": "Mon 30 Nov 2026, 10:00 EAT", "amount_kes": 2500,
}
SMS_DATA = {"reference": "SS1A2B3C4D5E"}


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpCaptureServer]:
    async with SmtpCaptureServer() as server:
        yield server


def _dispatcher(runtime: Runtime, smtp: SmtpCaptureServer) -> Dispatcher:
    sender = SmtpSender.for_capture(smtp.port, sender_address="Smiling Steps <no-reply@smilingsteps.example>")
    return Dispatcher(runtime, {"email": sender}, send_timeout=10)


async def _queue_email(runtime: Runtime, *, address: str = ADDRESS, key: str = "mail:1") -> int:
    async with runtime.uow() as uow:
        client = await make_client(uow.session, email=address)
        await notifications.email_client(
            uow.session, client, email=address, template="booking_approved_email", data=DATA, dedupe_key=key
        )
        await uow.commit()
        return client.id


async def _outbox(runtime: Runtime) -> Outbox:
    async with runtime.uow() as uow:
        row = await uow.session.scalar(select(Outbox))
        assert row is not None
        return row


async def test_a_refused_email_is_listed_with_its_error_then_sent_again_on_request(
    runtime: Runtime, smtp: SmtpCaptureServer
) -> None:
    await _queue_email(runtime)
    smtp.mailbox.reject[ADDRESS] = "550 5.1.1 mailbox unavailable"
    dispatcher = _dispatcher(runtime, smtp)
    assert await dispatcher.dispatch_once() == 1
    failed = await _outbox(runtime)
    assert failed.status == "FAILED" and "550" in (failed.last_error or "")

    page = await notifications.failed_notice_page(runtime)
    (notice,) = page.rows
    assert (notice.id, notice.recipient, notice.channel) == (failed.id, ADDRESS, "email")
    assert notice.error and "mailbox unavailable" in notice.error and not page.has_next

    smtp.mailbox.reject.clear()
    await notifications.send_again(runtime, failed.id, actor="admin:7")
    requeued = await _outbox(runtime)
    assert (requeued.status, requeued.attempts, requeued.last_error) == ("PENDING", 0, None)
    assert (await notifications.failed_notice_page(runtime)).rows == []

    assert await dispatcher.dispatch_once() == 1
    assert (await _outbox(runtime)).status == "SENT"
    (mail,) = await smtp.mailbox.wait_for(1)
    assert mail.rcpt_tos == [ADDRESS]
    async with runtime.uow() as uow:
        requeued_entry = select(AuditEntry).where(AuditEntry.action == "notification.requeued")
        entry = await uow.session.scalar(requeued_entry)
        assert entry is not None and entry.actor == "admin:7" and entry.subject_id == str(failed.id)
    assert (await verify_chain(runtime.uow())).ok


async def test_send_again_refuses_a_row_that_has_not_failed_and_changes_nothing(runtime: Runtime) -> None:
    await _queue_email(runtime)
    row = await _outbox(runtime)
    with pytest.raises(SendAgainRefused, match=f"Notification {row.id} is pending, not failed"):
        await notifications.send_again(runtime, row.id, actor="admin:1")
    with pytest.raises(SendAgainRefused, match="There is no notification 999"):
        await notifications.send_again(runtime, 999, actor="admin:1")
    after = await _outbox(runtime)
    assert (after.status, after.due_at, after.attempts) == ("PENDING", row.due_at, row.attempts)
    async with runtime.uow() as uow:
        assert (await uow.session.scalars(select(AuditEntry))).all() == []


async def test_two_admins_sending_again_at_once_requeue_the_row_once(runtime: Runtime) -> None:
    await _queue_email(runtime)
    row = await _outbox(runtime)
    async with runtime.uow() as uow:
        row_now = await uow.session.get_one(Outbox, row.id)
        row_now.status, row_now.last_error = "FAILED", "gave up"
        await uow.commit()
    await notifications.send_again(runtime, row.id, actor="admin:1")
    with pytest.raises(SendAgainRefused, match="is pending, not failed"):
        await notifications.send_again(runtime, row.id, actor="admin:2")
    async with runtime.uow() as uow:
        actions = (await uow.session.scalars(select(AuditEntry.actor))).all()
    assert actions == ["admin:1"]


async def test_failed_sms_recipients_show_only_the_last_four_digits(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        await notifications.enqueue(
            uow.session, channel="sms", recipient="254711000123", template="payment_delayed_client",
            data=SMS_DATA, dedupe_key="sms:1",
        )
        await uow.commit()
    async with runtime.uow() as uow:
        row = await uow.session.get_one(Outbox, 1)
        row.status, row.last_error = "FAILED", "delivery report: Failed (to 254711000123)"
        await uow.commit()
    (notice,) = (await notifications.failed_notice_page(runtime)).rows
    assert notice.recipient == "********0123"
    assert "254711000123" not in repr(notice)


async def test_a_forgotten_clients_failed_messages_go_with_them_and_are_never_sent_again(
    runtime: Runtime,
) -> None:
    async with runtime.uow() as uow:
        client = await make_client(uow.session, email=None)
        booking = await make_booking(uow.session, client=client, email="booking-only@example.org")
        await notifications.email_client(
            uow.session, client, email=booking.email, template="booking_approved_email", data=DATA,
            dedupe_key="m:1",
        )
        await uow.commit()
    async with runtime.uow() as uow:
        (await uow.session.get_one(Outbox, 1)).status = "FAILED"
        await uow.commit()
    report = await anonymise_client(runtime.uow(), client.id, actor="admin:1")
    assert report.messages_dropped == 1
    assert (await notifications.failed_notice_page(runtime)).rows == []


async def test_send_again_refuses_a_message_to_a_client_who_was_forgotten(runtime: Runtime) -> None:
    client_id = await _queue_email(runtime, address="other@example.org")
    async with runtime.uow() as uow:
        row = await uow.session.get_one(Outbox, 1)
        row.status, row.recipient = "FAILED", "kept-elsewhere@example.org"  # not one of the client's contacts
        await uow.commit()
    await anonymise_client(runtime.uow(), client_id, actor="admin:1")
    with pytest.raises(SendAgainRefused, match="for a client who has been forgotten"):
        await notifications.send_again(runtime, 1, actor="admin:1")
    assert (await _outbox(runtime)).status == "FAILED"
