"""Clients for admins: search, one client's bookings and payments, and forgetting one."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db.models import AuditEntry, Booking, Client, PaymentAttempt
from core.db.types import utcnow
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services.ops import client_records
from core.services.ops.client_records import CLIENT_PAGE_SIZE, ClientRecordsError
from core.services.ops.privacy import PrivacyError, forget_client
from tests.factories import make_attempt, make_booking, make_client


async def _clients(runtime: Runtime, *specs: tuple[str | None, str | None]) -> list[int]:
    async with runtime.uow() as uow:
        made = [await make_client(uow.session, name=name, phone=phone) for name, phone in specs]
        await uow.commit()
        return [c.id for c in made]


async def test_clients_are_found_by_part_of_a_name_or_the_last_digits_of_a_phone(runtime: Runtime) -> None:
    amina, baraka, _ = await _clients(
        runtime, ("Amina Wairimu", "254712345678"), ("Baraka 100%_sure", "254733000111"), (None, None)
    )

    async def found(query: str) -> list[int]:
        return [r.id for r in (await client_records.client_page(runtime, query=query)).rows]

    assert await found("wairi") == [amina]
    assert await found("AMINA") == [amina]
    assert await found("5678") == [amina]
    assert await found("0712 345 678") == [amina]
    assert await found("+254712345678") == [amina]
    assert await found("100%_") == [baraka]
    assert await found("a%u") == []  # taken literally, not as a LIKE wildcard
    assert len(await found("")) == 3
    page = await client_records.client_page(runtime, query="5678")
    assert page.rows[0].phone == "********5678"


async def test_a_search_with_too_few_digits_or_too_many_characters_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ClientRecordsError, match="at least 4 digits"):
        await client_records.client_page(runtime, query="567")
    with pytest.raises(ClientRecordsError, match="at most 120 characters"):
        await client_records.client_page(runtime, query="x" * 121)
    assert client_records.check_query("  Amina   W ") == "Amina W"


async def test_the_client_list_pages_newest_first(runtime: Runtime) -> None:
    ids = await _clients(runtime, *[(f"Client {n}", None) for n in range(CLIENT_PAGE_SIZE + 2)])
    first = await client_records.client_page(runtime)
    second = await client_records.client_page(runtime, page=2)
    assert first.has_next and not second.has_next
    assert [r.id for r in first.rows + second.rows] == sorted(ids, reverse=True)


async def test_a_clients_record_lists_their_bookings_and_payments_with_masked_phones(
    runtime: Runtime,
) -> None:
    async with runtime.uow() as uow:
        client = await make_client(uow.session, name="Amina", phone="254712345678")
        booking = await make_booking(uow.session, client=client, status=BookingStatus.CONFIRMED)
        failed = await make_attempt(
            uow.session, booking, status=PaymentStatus.CANCELLED, phone="254712345678",
            result_desc="Request cancelled by user",
        )
        paid = await make_attempt(
            uow.session, booking, status=PaymentStatus.PAID, phone="254712345678", mpesa_receipt="QKM0FXE6RK",
            paid_amount_kes=booking.price_kes, paid_phone="254712345678", transaction_time=utcnow(),
        )
        await make_booking(uow.session)  # someone else's
        await uow.commit()
    record = await client_records.client_record(runtime, client.id)
    assert record.client.name == "Amina" and record.client.phone == "********5678"
    (shown,) = record.bookings
    assert (shown.reference, shown.status) == (booking.reference, "CONFIRMED")
    assert shown.price_kes == booking.price_kes
    assert {p.id for p in record.payments} == {failed.id, paid.id}
    by_id = {p.id: p for p in record.payments}
    assert by_id[paid.id].receipt == "QKM0FXE6RK" and by_id[paid.id].phone == "********5678"
    assert by_id[failed.id].result_desc == "Request cancelled by user"
    assert "254712345678" not in repr(record)
    with pytest.raises(ClientRecordsError, match="there is no client 999"):
        await client_records.client_record(runtime, 999)


# Feature: mpesa-payment-integration, Property 49: deletion anonymises
async def test_forgetting_a_client_needs_confirmation_then_clears_them_and_keeps_the_money_records(
    runtime: Runtime,
) -> None:
    paid_at = utcnow()
    async with runtime.uow() as uow:
        client = await make_client(uow.session, name="Amina", phone="254712345678", email="amina@example.org")
        booking = await make_booking(
            uow.session, client=client, status=BookingStatus.CONFIRMED, email="a@b.org"
        )
        attempt = await make_attempt(
            uow.session, booking, status=PaymentStatus.PAID, phone="254712345678", mpesa_receipt="QKM0FXE6RK",
            paid_amount_kes=booking.price_kes, paid_phone="254712345678", transaction_time=paid_at,
        )
        await uow.commit()

    with pytest.raises(PrivacyError, match="tick the confirmation box"):
        await forget_client(runtime.uow(), client.id, confirmed=False, actor="admin:2")
    async with runtime.uow() as uow:
        assert (await uow.session.get_one(Client, client.id)).name == "Amina"

    await forget_client(runtime.uow(), client.id, confirmed=True, actor="admin:2")
    async with runtime.uow() as uow:
        gone = await uow.session.get_one(Client, client.id)
        assert gone.anonymised and (gone.name, gone.phone, gone.email) == (None, None, None)
        kept = await uow.session.get_one(PaymentAttempt, attempt.id)
        assert (kept.mpesa_receipt, kept.paid_amount_kes, kept.transaction_time, kept.amount_kes) == (
            "QKM0FXE6RK", booking.price_kes, paid_at, booking.price_kes,
        )
        kept_booking = await uow.session.get_one(Booking, booking.id)
        assert (kept_booking.starts_at, kept_booking.price_kes, kept_booking.email) == (
            booking.starts_at, booking.price_kes, None,
        )
        entry = await uow.session.scalar(select(AuditEntry).where(AuditEntry.action == "client.anonymised"))
        assert entry is not None and entry.actor == "admin:2" and entry.subject_id == str(client.id)
    record = await client_records.client_record(runtime, client.id)
    assert record.client.anonymised and record.payments[0].phone == "********5678"
    with pytest.raises(PrivacyError, match="forgotten already"):
        await forget_client(runtime.uow(), client.id, confirmed=True, actor="admin:2")
    with pytest.raises(PrivacyError, match="no client with id 999"):
        await forget_client(runtime.uow(), 999, confirmed=True, actor="admin:2")


async def test_a_client_with_a_payment_in_progress_is_not_forgotten_until_it_has_finished(
    runtime: Runtime,
) -> None:
    async with runtime.uow() as uow:
        client = await make_client(uow.session, name="Amina", phone="254712345678")
        booking = await make_booking(uow.session, client=client, status=BookingStatus.APPROVED)
        attempt = await make_attempt(uow.session, booking, status=PaymentStatus.AWAITING_CUSTOMER)
        await uow.commit()
    with pytest.raises(PrivacyError, match="has a payment in progress"):
        await forget_client(runtime.uow(), client.id, confirmed=True, actor="admin:2")
    async with runtime.uow() as uow:
        assert (await uow.session.get_one(Client, client.id)).name == "Amina"
        (await uow.session.get_one(PaymentAttempt, attempt.id)).status = str(PaymentStatus.CANCELLED)
        await uow.commit()
    await forget_client(runtime.uow(), client.id, confirmed=True, actor="admin:2")
    async with runtime.uow() as uow:
        assert (await uow.session.get_one(Client, client.id)).anonymised
