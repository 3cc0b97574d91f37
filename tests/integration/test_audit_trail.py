"""The audit trail on a real database (SQLite and PostgreSQL): append, verify, tamper, export."""

from __future__ import annotations

import asyncio
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, update

from core.db.models import AuditEntry
from core.runtime import Runtime
from core.services import audit

T0 = datetime(2024, 3, 12, 7, 0, tzinfo=UTC)


async def _append(runtime: Runtime, n: int, *, start: datetime = T0) -> None:
    async with runtime.uow() as uow:
        for i in range(n):
            await audit.record(
                uow.session,
                actor="system",
                action="booking.status_changed",
                subject_type="booking",
                subject_id=i,
                details={"previous": "PENDING_APPROVAL", "new": "APPROVED", "reason": "therapist", "i": i},
                at=start + timedelta(minutes=i),
            )
        await uow.commit()


async def _entries(runtime: Runtime) -> list[AuditEntry]:
    async with runtime.uow() as uow:
        entries = list((await uow.session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all())
        uow.session.expunge_all()  # keep the loaded values after the unit of work rolls back
        return entries


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_long_chain_verifies_in_batches(runtime: Runtime) -> None:
    await _append(runtime, 57)
    result = await audit.verify_chain(runtime.uow(), batch_size=10)
    assert (result.ok, result.count) == (True, 57)
    assert audit.format_verify_result(result) == ("OK 57 entries", 0)
    entries = await _entries(runtime)
    assert [e.seq for e in entries] == list(range(1, 58))
    assert entries[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert result.last_hash == entries[-1].hash


async def test_empty_log_verifies(runtime: Runtime) -> None:
    assert audit.format_verify_result(await audit.verify_chain(runtime.uow())) == ("OK 0 entries", 0)


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_edited_details_are_detected(runtime: Runtime) -> None:
    await _append(runtime, 20)
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(AuditEntry).where(AuditEntry.seq == 13).values(details={"previous": "X", "new": "PAID"})
        )
        await uow.commit()
    line, code = audit.format_verify_result(await audit.verify_chain(runtime.uow(), batch_size=4))
    assert (line, code) == ("BROKEN at seq 13: hash mismatch (entry content was changed)", 1)


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_deleted_entry_is_detected(runtime: Runtime) -> None:
    await _append(runtime, 20)
    async with runtime.uow() as uow:
        await uow.session.execute(delete(AuditEntry).where(AuditEntry.seq == 8))
        await uow.commit()
    result = await audit.verify_chain(runtime.uow(), batch_size=5)
    assert (result.ok, result.first_broken_seq) == (False, 8)
    line = audit.format_verify_result(result)[0]
    assert line == "BROKEN at seq 8: entry missing (seq 8 absent, next is seq 9)"


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_swapped_entries_are_detected(runtime: Runtime) -> None:
    await _append(runtime, 10)
    async with runtime.uow() as uow:  # swap the seq numbers of entries 4 and 5 (through a free value)
        await uow.session.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(seq=-4))
        await uow.session.execute(update(AuditEntry).where(AuditEntry.seq == 5).values(seq=4))
        await uow.session.execute(update(AuditEntry).where(AuditEntry.seq == -4).values(seq=5))
        await uow.commit()
    result = await audit.verify_chain(runtime.uow())
    assert (result.ok, result.first_broken_seq) == (False, 4)


async def test_replaced_prev_hash_is_detected(runtime: Runtime) -> None:
    await _append(runtime, 6)
    async with runtime.uow() as uow:
        await uow.session.execute(update(AuditEntry).where(AuditEntry.seq == 1).values(prev_hash="f" * 64))
        await uow.commit()
    result = await audit.verify_chain(runtime.uow())
    assert result.first_broken_seq == 1
    assert result.reason == "prev_hash does not match the previous entry's hash"


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_concurrent_writers_keep_one_unbroken_chain(runtime: Runtime) -> None:
    async def one(i: int) -> int:
        async with runtime.uow() as uow:
            entry = await audit.record(
                uow.session, actor=f"client:{i}", action="payment.initiated", subject_id=i, details={"i": i}
            )
            await uow.commit()
            return entry.seq

    seqs = await asyncio.gather(*(one(i) for i in range(50)))
    assert sorted(seqs) == list(range(1, 51))
    entries = await _entries(runtime)
    assert [e.seq for e in entries] == list(range(1, 51))
    assert sorted(e.details["i"] for e in entries) == list(range(50))
    assert all(a.at <= b.at for a, b in zip(entries, entries[1:], strict=False))  # time never goes back
    expected = audit.VerifyResult(True, 50, None, None, entries[-1].hash)
    assert await audit.verify_chain(runtime.uow()) == expected


async def test_entry_commits_or_rolls_back_with_the_callers_transaction(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        await audit.record(uow.session, actor="system", action="payment.flagged", subject_id=1)
        # no commit: leaving the block rolls back the state change and its audit entry together
    async with runtime.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(AuditEntry)) == 0
        entry = await audit.record(uow.session, actor="system", action="payment.flagged", subject_id=1)
        await uow.commit()
    assert entry.seq == 1  # the rolled-back entry left no hole
    assert (await audit.verify_chain(runtime.uow())).ok


async def test_blocked_writer_continues_after_the_holder_rolls_back(runtime: Runtime) -> None:
    holder = runtime.uow()
    await holder.__aenter__()
    await audit.record(holder.session, actor="system", action="first.try")
    second_done = asyncio.Event()

    async def second() -> int:
        async with runtime.uow() as uow:
            entry = await audit.record(uow.session, actor="system", action="second")
            await uow.commit()
            second_done.set()
            return entry.seq

    task = asyncio.create_task(second())
    await asyncio.sleep(0.3)
    assert not second_done.is_set()  # waits for the chain lock held by the first transaction
    await holder.__aexit__(None, None, None)  # roll back
    assert await asyncio.wait_for(task, 10) == 1
    assert (await audit.verify_chain(runtime.uow())).count == 1


# Feature: mpesa-payment-integration, Property 66: Payment Action Logs Required Fields
# Feature: mpesa-payment-integration, Property 68: Status Change Logs Transition Details
async def test_status_change_entry_has_time_actor_action_and_transition(runtime: Runtime) -> None:
    before = datetime.now(UTC)
    async with runtime.uow() as uow:
        entry = await audit.record_transition(
            uow.session,
            actor="system",
            subject_type="payment",
            subject_id=42,
            previous="AWAITING_CUSTOMER",
            new="PAID",
            reason="callback ResultCode 0",
            receipt="QKJ4ABC123",
        )
        entry_hash = entry.hash
        await uow.commit()
    [stored] = await _entries(runtime)
    assert stored.action == "payment.status_changed"
    assert stored.hash == entry_hash
    assert stored.actor == "system"
    assert before <= stored.at <= datetime.now(UTC)
    assert (stored.subject_type, stored.subject_id) == ("payment", "42")
    assert stored.details == {
        "previous": "AWAITING_CUSTOMER",
        "new": "PAID",
        "reason": "callback ResultCode 0",
        "receipt": "QKJ4ABC123",
    }


# Feature: mpesa-payment-integration, Property 66: Payment Action Logs Required Fields
# Feature: mpesa-payment-integration, Property 67: Payment Initiation Records Required Fields
async def test_payment_initiation_entry_has_client_booking_amount_and_masked_phone(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        await audit.record_payment_initiated(
            uow.session,
            actor="client:5",
            booking_id=9,
            client_id=5,
            attempt_id=31,
            amount_kes=2500,
            phone="254708374149",
        )
        await uow.commit()
    [stored] = await _entries(runtime)
    assert (stored.actor, stored.action, stored.subject_type, stored.subject_id) == (
        "client:5",
        "payment.initiated",
        "payment",
        "31",
    )
    assert stored.details == {
        "booking_id": 9,
        "client_id": 5,
        "attempt_id": 31,
        "amount_kes": 2500,
        "phone": "********4149",
    }
    assert stored.at.tzinfo is not None
    with pytest.raises(ValueError):
        async with runtime.uow() as uow:
            await audit.record_payment_initiated(
                uow.session,
                actor="system",
                booking_id=1,
                client_id=1,
                attempt_id=1,
                amount_kes=25.5,  # type: ignore[arg-type]
                phone="x",
            )


# Feature: mpesa-payment-integration, Property 69: Admin Access Logs Required Fields
async def test_admin_access_entry_has_admin_what_and_when(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        await audit.record_admin_access(
            uow.session,
            admin_id=3,
            what="payments",
            filters={"status": "PAID", "q": "254712345678", "phone": "0712345678"},
        )
        await uow.commit()
    [stored] = await _entries(runtime)
    assert stored.actor == "admin:3"
    assert stored.action == "admin.accessed"
    assert stored.details == {
        "what": "payments",
        "filters": {"status": "PAID", "q": "********5678", "phone": "******5678"},
    }
    assert stored.at <= datetime.now(UTC)


async def test_raw_phone_is_never_stored(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        await audit.record(
            uow.session, actor="system", action="x.y", details={"client": {"phone": "254712345678"}}
        )
        with pytest.raises(ValueError, match="raw phone"):
            await audit.record(uow.session, actor="system", action="x.y", details={"note": "254712345678"})
        await uow.commit()
    [stored] = await _entries(runtime)
    assert stored.details == {"client": {"phone": "********5678"}}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"actor": "bob", "action": "x"},
        {"actor": "admin:", "action": "x"},
        {"actor": "system", "action": ""},
        {"actor": "system", "action": "x" * 61},
        {"actor": "system", "action": "x", "subject_id": "y" * 41},
        {"actor": "system", "action": "x", "at": datetime(2024, 1, 1)},  # noqa: DTZ001 - naive on purpose
    ],
)
async def test_bad_entries_are_refused(runtime: Runtime, kwargs: dict[str, object]) -> None:
    async with runtime.uow() as uow:
        with pytest.raises(ValueError):
            await audit.record(uow.session, **kwargs)  # type: ignore[arg-type]


# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_export_jsonl_round_trips_and_verifies(runtime: Runtime) -> None:
    await _append(runtime, 25)
    out = io.StringIO()
    assert await audit.export_jsonl(runtime.uow(), out, batch_size=7) == 25
    lines = out.getvalue().splitlines()
    assert len(lines) == 25
    first = json.loads(lines[0])
    assert set(first) == {"seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash"}
    assert first["subject"] == {"type": "booking", "id": "0"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", first["at"])
    assert audit.verify_jsonl(lines) == await audit.verify_chain(runtime.uow())

    # a time slice is a contiguous seq range that verifies on its own
    sliced = io.StringIO()
    n = await audit.export_jsonl(
        runtime.uow(), sliced, since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=10)
    )
    seqs = [json.loads(line)["seq"] for line in sliced.getvalue().splitlines()]
    assert (n, seqs) == (5, [6, 7, 8, 9, 10])
    assert audit.verify_jsonl(sliced.getvalue().splitlines()).ok
    assert await audit.export_jsonl(runtime.uow(), io.StringIO(), since=T0 + timedelta(days=1)) == 0


async def test_export_accepts_an_async_writer_and_an_open_session(runtime: Runtime) -> None:
    await _append(runtime, 3)

    class AsyncSink:
        def __init__(self) -> None:
            self.chunks: list[str] = []

        async def write(self, data: str) -> None:
            self.chunks.append(data)

    sink = AsyncSink()
    async with runtime.uow() as uow:
        assert await audit.export_jsonl(uow.session, sink) == 3
        assert (await audit.verify_chain(uow)).count == 3  # a unit of work the caller already entered
    assert len(sink.chunks) == 3
