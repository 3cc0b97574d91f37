"""Batch settlement writes exactly what one-by-one settlement writes (core/services/settlement_batch.py).

The same stored callbacks — plain successes for clients reached every way, late successes
(after a cancellation or a failure), and in between the cases the batch must leave to
``settle_in_session`` (failures, wrong amounts, reused receipts, unknown and not-yet-pushed
attempts, bookings no longer payable, reminders already planned) — are settled on two fresh
databases: one by one on the first, in batches on the second. Every row written must be the
same, apart from ids, wall-clock stamps and the random meeting rooms.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from core.db.migrate import upgrade
from core.db.models import (
    AuditEntry,
    Booking,
    CallbackInbox,
    Client,
    Outbox,
    PaymentAttempt,
    Reminder,
    SessionType,
    Therapist,
)
from core.domain.slots import DEFAULT_WEEKLY_HOURS
from core.mpesa.callback import parse_callback_fields
from core.runtime import Runtime, build_runtime
from core.services.audit import verify_chain
from core.services.payments import settlement_batch
from core.services.payments.inbox import inbox_row
from core.services.payments.intake import PROVIDER, SettlementWorker, inbox_key
from core.services.payments.settlement import Settled
from tests.conftest import PG_URL, make_settings
from tests.factories import create_pg_database, drop_pg_database

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # 09:00 in Nairobi
PRICE = 2500
MEETING_TEMPLATE = "https://meet.example.org/{room}"


def _frozen() -> datetime:
    return NOW


# -- the same rows on both databases ----------------------------------------------------------


def _client(cid: int, **values: Any) -> dict[str, Any]:
    row = {"id": cid, "phone": f"2547220000{cid:02d}", "name": f"Client {cid}", "email": None,
           "telegram_user_id": None, "telegram_unreachable": False, "anonymised": False}
    row.update(values)
    return row


CLIENTS = [
    _client(1),  # SMS
    _client(2, telegram_user_id=9002),  # Telegram, SMS as fallback
    _client(3, telegram_user_id=9003, telegram_unreachable=True),  # blocked the bot: SMS
    _client(4, telegram_user_id=9004, phone=None),  # Telegram only
    _client(5, anonymised=True, email="gone@example.org"),  # nobody to tell
    _client(6, email="six@example.org"),  # and an e-mail
    _client(7, email="not an address"),  # an address that is not one: no e-mail
    _client(8, phone=None, name=None),  # no way to reach them, no name
    _client(9), _client(10), _client(11), _client(12), _client(13), _client(14), _client(15),
    _client(16), _client(17), _client(18), _client(19), _client(20),
]
THERAPISTS = [
    {"id": 1, "name": "Practitioner SMS", "email": "t1@example.org", "phone": "254712000001",
     "telegram_user_id": None, "telegram_unreachable": False},
    {"id": 2, "name": "Practitioner Telegram", "email": "t2@example.org", "phone": "254712000002",
     "telegram_user_id": 8002, "telegram_unreachable": False},
    {"id": 3, "name": "Practitioner Blocked", "email": "t3@example.org", "phone": "254712000003",
     "telegram_user_id": 8003, "telegram_unreachable": True},
]


def _booking(bid: int, *, therapist: int = 1, starts_in: timedelta = timedelta(days=3),
             **values: Any) -> dict[str, Any]:
    starts = NOW + starts_in + timedelta(minutes=bid)  # one live booking per slot
    row = {"id": bid, "reference": f"SSB{bid:010d}", "client_id": bid, "therapist_id": therapist,
           "session_type_id": 1, "starts_at": starts, "ends_at": starts + timedelta(minutes=50),
           "price_kes": PRICE, "status": "APPROVED", "channel": "sms", "email": None,
           "approval_code": f"{bid:08X}"}
    row.update(values)
    return row


BOOKINGS = [
    _booking(1),
    _booking(2, therapist=2),
    _booking(3, therapist=3),
    _booking(4, therapist=2, starts_in=timedelta(hours=5)),  # the 1 h reminder only
    _booking(5),
    _booking(6, email="booking-six@example.org"),  # the booking's address wins
    _booking(7, starts_in=timedelta(minutes=30)),  # too soon for any reminder
    _booking(8),
    _booking(9),
    _booking(10),
    _booking(11, status="CANCELLED"),  # money for a booking no longer payable
    _booking(12),
    _booking(13),
    _booking(14),
    _booking(15),
    _booking(16),
    _booking(17),
    _booking(18),
    _booking(19),
    _booking(20),
]


def _attempt(aid: int, *, booking: int | None = None, status: str = "AWAITING_CUSTOMER",
             **values: Any) -> dict[str, Any]:
    bid = booking or aid
    row = {"id": aid, "booking_id": bid, "client_id": bid, "idempotency_key": f"booking:{bid}:{aid}",
           "status": status, "amount_kes": PRICE, "phone": f"2547080000{aid:02d}", "environment": "simulator",
           "callback_secret_hash": f"{aid:064x}", "checkout_request_id": f"ws_CO_{aid:06d}",
           "deadline_at": NOW + timedelta(minutes=2), "query_count": 0}
    row.update(values)
    return row


ATTEMPTS = [
    *(_attempt(i, status="UNCLEAR" if i == 2 else "AWAITING_CUSTOMER") for i in range(1, 13)),
    _attempt(13, status="QUEUED"),  # its callback raced the push's answer: not ready yet
    *(_attempt(i) for i in range(14, 21)),
    # An earlier, paid attempt of booking 12 (paid twice? its receipt is reused below).
    _attempt(21, booking=12, status="PAID", mpesa_receipt="RCPTOLD001"),
]
SESSION_TYPES = [{"id": 1, "name": "Individual", "minutes": 50, "price_kes": PRICE}]
# Booking 16 was confirmed once before (reminders planned), then came back to APPROVED.
REMINDERS = [{"booking_id": 16, "kind": "24h", "due_at": NOW + timedelta(days=1), "status": "SENT"}]


def _body(checkout: str, *, code: int = 0, amount: object = PRICE, receipt: str | None = None,
          desc: str = "The service request is processed successfully.") -> str:
    stk: dict[str, Any] = {"MerchantRequestID": "29115-1-1", "CheckoutRequestID": checkout,
                           "ResultCode": code, "ResultDesc": desc}
    if code == 0:
        items: list[dict[str, Any]] = [{"Name": "Amount", "Value": amount},
                                       {"Name": "TransactionDate", "Value": 20261126091500},
                                       {"Name": "PhoneNumber", "Value": 254708000001}]
        if receipt:
            items.append({"Name": "MpesaReceiptNumber", "Value": receipt})
        stk["CallbackMetadata"] = {"Item": items}
    return json.dumps({"Body": {"stkCallback": stk}})


def _ok(aid: int, receipt: str | None = None) -> tuple[str, int, str]:
    checkout = f"ws_CO_{aid:06d}"
    return checkout, 0, _body(checkout, receipt=receipt or f"RCPT{aid:06d}")


# Inbox order matters: the batch settles runs of plain successes and stops at anything else.
CALLBACKS: list[tuple[str, int, str]] = [
    _ok(1), _ok(2), _ok(3),
    ("ws_CO_000009", 1032, _body("ws_CO_000009", code=1032, desc="Request cancelled by user")),
    _ok(4), _ok(5), _ok(6), _ok(7), _ok(8),
    ("ws_CO_000010", 0, _body("ws_CO_000010", amount=PRICE - 1, receipt="RCPT000010")),  # wrong amount
    _ok(9),  # late success after the cancellation above
    _ok(11),  # booking cancelled meanwhile
    _ok(12, receipt="RCPTOLD001"),  # receipt already on attempt 21
    ("ws_CO_000013", 0, _body("ws_CO_000013", receipt="RCPT000013")),  # QUEUED: not ready
    ("ws_CO_unknown", 0, _body("ws_CO_unknown", receipt="RCPT999999")),  # no such attempt
    _ok(14), _ok(15),
    _ok(16),  # reminders exist already: rearmed by create_reminders
    _ok(17), _ok(18, receipt="RCPT000017"),  # the same receipt twice in one run
    ("ws_CO_000019", 0, _body("ws_CO_000019", amount="2500.50", receipt="RCPT000019")),  # not whole
    ("ws_CO_000020", 9999, _body("ws_CO_000020", code=9999, desc="Something new")),
    ("ws_CO_000020", 0, _body("ws_CO_000020", receipt="RCPT000020")),  # success after that failure
]


def _inbox_rows(stored_fields: bool) -> list[dict[str, Any]]:
    """The inbox as the intake leaves it (parsed fields next to the body), or as rows stored
    before migration 0006 left it (the body only: settlement parses it)."""
    if stored_fields:
        return [inbox_row(inbox_key(checkout, code), body, parse_callback_fields(body.encode()))
                | {"received_at": NOW} for checkout, code, body in CALLBACKS]
    return [{"provider": PROVIDER, "provider_id": inbox_key(checkout, code), "raw_body": body,
             "received_at": NOW} for checkout, code, body in CALLBACKS]


async def _seed(runtime: Runtime, *, stored_fields: bool) -> None:
    async with runtime.uow() as uow:
        s = uow.session
        await s.execute(insert(SessionType), SESSION_TYPES)
        hours = {d: [list(r) for r in ranges] for d, ranges in DEFAULT_WEEKLY_HOURS.items()}
        await s.execute(insert(Therapist), [t | {"weekly_hours": hours} for t in THERAPISTS])
        await s.execute(insert(Client), CLIENTS)
        await s.execute(insert(Booking), BOOKINGS)
        await s.execute(insert(PaymentAttempt), ATTEMPTS)
        await s.execute(insert(Reminder), REMINDERS)
        await s.execute(insert(CallbackInbox), _inbox_rows(stored_fields))
        await uow.commit()


async def _snapshot(runtime: Runtime) -> dict[str, Any]:
    """Every row settlement writes, without ids, wall-clock stamps or the random meeting rooms."""

    def plain(obj: Any, *skip: str) -> dict[str, Any]:
        return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key not in skip}

    async with runtime.uow() as uow:
        s = uow.session
        bookings = (await s.scalars(select(Booking).order_by(Booking.id))).all()
        urls = {b.meeting_url: f"<room of booking {b.id}>" for b in bookings if b.meeting_url}
        assert all(url.startswith("https://meet.example.org/") for url in urls)

        def unroom(data: dict[str, Any]) -> dict[str, Any]:
            url = data.get("meeting_url")
            assert url is None or url in urls, "a message quotes a room its booking does not have"
            return data | ({"meeting_url": urls[url]} if url else {})

        async def rows(model: Any, *order: Any) -> list[Any]:
            return list((await s.scalars(select(model).order_by(*order))).all())

        return {
            "attempts": [plain(a, "created_at", "updated_at")
                         for a in await rows(PaymentAttempt, PaymentAttempt.id)],
            "bookings": [plain(b, "created_at", "updated_at") | {"meeting_url": urls.get(b.meeting_url)}
                         for b in bookings],
            "reminders": [plain(r, "id") for r in await rows(Reminder, Reminder.booking_id, Reminder.kind)],
            "outbox": [plain(o, "id", "due_at", "created_at") | {"data": unroom(o.data)}
                       for o in await rows(Outbox, Outbox.id)],
            "audit": [plain(e, "id", "at", "prev_hash", "hash")
                      for e in await rows(AuditEntry, AuditEntry.seq)],
            "inbox": [plain(i, "received_at") for i in await rows(CallbackInbox, CallbackInbox.id)],
        }


@pytest.fixture
async def two_databases(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two empty, migrated databases of the same backend, each with a frozen clock."""
    if database_url.startswith("sqlite"):
        other = tmp_path / "other.db"
        shutil.copy(database_url.removeprefix("sqlite+aiosqlite:///"), other)
        other_url, drop = f"sqlite+aiosqlite:///{other}", None
    else:
        assert PG_URL
        other_url = await create_pg_database(PG_URL)
        drop = other_url
    runtimes = [
        build_runtime(make_settings(url, MEETING_URL_TEMPLATE=MEETING_TEMPLATE), clock=_frozen)
        for url in (database_url, other_url)
    ]
    try:
        if drop:
            await upgrade(runtimes[1].engine)
        yield runtimes[0], runtimes[1]
    finally:
        for rt in runtimes:
            await rt.close()
        if drop:
            await drop_pg_database(drop)


async def _settle(runtime: Runtime, *, batch_size: int) -> tuple[dict[Settled, int], int]:
    """One pass over the inbox (the not-ready row stays for a later sweep)."""
    worker = SettlementWorker(runtime, batch_size=batch_size)
    return await worker.settle_pending(), worker.batched


STORED = pytest.mark.parametrize("stored_fields", [True, False], ids=["stored fields", "raw body only"])


@STORED
async def test_batch_settlement_writes_exactly_the_rows_one_by_one_settlement_writes(
    two_databases: tuple[Runtime, Runtime], stored_fields: bool
) -> None:
    one_by_one, batched = two_databases
    for runtime in (one_by_one, batched):
        await _seed(runtime, stored_fields=stored_fields)

    reference_counts, none = await _settle(one_by_one, batch_size=0)
    counts, settled_in_batches = await _settle(batched, batch_size=256)

    assert none == 0
    assert counts == reference_counts
    assert reference_counts == {
        Settled.PAID: 14, Settled.FLAGGED: 5, Settled.FAILED: 2, Settled.NOT_READY: 1,
        Settled.UNKNOWN_ATTEMPT: 1,
    }
    # Not vacuous: the plain successes (the two late ones too: a success may settle a cancelled
    # or failed attempt, says the transition table) went through the batch path, the rest one by one.
    assert settled_in_batches == 13
    expected, actual = await _snapshot(one_by_one), await _snapshot(batched)
    for table in expected:
        assert actual[table] == expected[table], table
    for runtime in (one_by_one, batched):
        assert (await verify_chain(runtime.uow())).ok


@STORED
async def test_a_batch_that_loses_a_race_is_rolled_back_and_settled_one_by_one(
    two_databases: tuple[Runtime, Runtime], monkeypatch: pytest.MonkeyPatch, stored_fields: bool
) -> None:
    one_by_one, batched = two_databases
    for runtime in (one_by_one, batched):
        await _seed(runtime, stored_fields=stored_fields)
    load: Callable[..., Any] = settlement_batch._load
    raced: list[int] = []

    async def load_then_lose_the_race(session: Any, items: Any) -> Any:
        state = await load(session, items)
        if not raced:  # the first batch only
            # "Another writer" ends attempt 1 between our read and our compare-and-set (in our
            # own transaction, so the rollback undoes it too): nothing of the batch may stay.
            raced.append(1)
            lost = update(PaymentAttempt).where(PaymentAttempt.id == 1).values(status="FAILED")
            await session.execute(lost)
        return state

    monkeypatch.setattr(settlement_batch, "_load", load_then_lose_the_race)
    reference_counts, _ = await _settle(one_by_one, batch_size=0)
    counts, settled_in_batches = await _settle(batched, batch_size=256)

    assert raced and settled_in_batches == 13 - 3  # the first run (attempts 1-3) went one by one
    assert counts == reference_counts
    expected, actual = await _snapshot(one_by_one), await _snapshot(batched)
    for table in expected:
        assert actual[table] == expected[table], table
    assert (await verify_chain(batched.uow())).ok


async def test_settling_from_the_stored_fields_writes_what_parsing_the_raw_body_writes(
    two_databases: tuple[Runtime, Runtime],
) -> None:
    from_fields, from_bodies = two_databases
    await _seed(from_fields, stored_fields=True)
    await _seed(from_bodies, stored_fields=False)
    async with from_fields.uow() as uow:
        kept = (await uow.session.scalars(select(CallbackInbox.result_code))).all()
    assert sum(code is not None for code in kept) == len(CALLBACKS) - 1  # all but the 2500.50 Amount

    counts, _ = await _settle(from_fields, batch_size=256)
    reference_counts, _ = await _settle(from_bodies, batch_size=256)

    assert counts == reference_counts
    expected, actual = await _snapshot(from_bodies), await _snapshot(from_fields)
    stored = {"checkout_request_id", "result_code", "result_desc", "amount", "receipt", "phone",
              "transaction_time"}
    for table in expected:
        if table == "inbox":
            expected[table] = [{k: v for k, v in row.items() if k not in stored} for row in expected[table]]
            actual[table] = [{k: v for k, v in row.items() if k not in stored} for row in actual[table]]
        assert actual[table] == expected[table], table
