"""Forgetting a client keeps the money records and nothing that identifies them (Property 49)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db.models import AuditEntry, Booking, Client, DialogState, PaymentAttempt
from core.db.types import utcnow
from core.domain.states import PaymentStatus
from core.runtime import Runtime
from core.services.audit import verify_chain
from core.services.notifications.notify import notify_client
from core.services.ops.privacy import PrivacyError, anonymise_client
from tests.factories import make_attempt, make_booking, make_client


# Feature: mpesa-payment-integration, Property 49: Data Deletion Anonymizes Records
async def test_forgetting_a_client_clears_personal_fields_but_keeps_receipts_and_amounts(
    runtime: Runtime,
) -> None:
    async with runtime.uow() as uow:
        client = await make_client(
            uow.session,
            phone="254712345678",
            email="amina@example.org",
            name="Amina",
            telegram_user_id=424242,
        )
        booking = await make_booking(uow.session, client=client, email="amina@example.org")
        attempt = await make_attempt(
            uow.session,
            booking,
            status=PaymentStatus.PAID,
            phone="254712345678",
            mpesa_receipt="QKM0FXE6RK",
            paid_amount_kes=booking.price_kes,
            paid_phone="254712345678",
            transaction_time=utcnow(),
        )
        uow.session.add(
            DialogState(channel="telegram", user_key="424242", step="idle", data={}, expires_at=utcnow())
        )
        await notify_client(
            uow.session,
            client,
            template="payment_delayed_client",
            data={"reference": booking.reference, "test_mode": True},
            dedupe_key="x:1",
        )
        await uow.commit()

    report = await anonymise_client(runtime.uow(), client.id, actor="admin:1")
    assert report.attempts_masked == 1 and report.messages_dropped == 1

    async with runtime.uow() as uow:
        forgotten = await uow.session.get_one(Client, client.id)
        assert forgotten.anonymised
        assert (forgotten.name, forgotten.email, forgotten.phone, forgotten.telegram_user_id) == (None,) * 4
        kept = await uow.session.get_one(PaymentAttempt, attempt.id)
        assert kept.mpesa_receipt == "QKM0FXE6RK" and kept.paid_amount_kes == booking.price_kes
        assert kept.phone == "********5678" and kept.paid_phone == "********5678"
        assert (await uow.session.get_one(Booking, booking.id)).email is None
        assert (await uow.session.scalars(select(DialogState))).all() == []
        entry = await uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "client.anonymised"))
        assert entry is not None and entry.actor == "admin:1"
    assert (await verify_chain(runtime.uow())).ok
    # Forgetting twice is harmless.
    await anonymise_client(runtime.uow(), client.id)


async def test_forgetting_an_unknown_client_is_a_clear_error(runtime: Runtime) -> None:
    with pytest.raises(PrivacyError, match="no client with id 999"):
        await anonymise_client(runtime.uow(), 999)
