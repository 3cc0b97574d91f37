"""Settlement throughput: how many stored STK callbacks per second become PAID bookings.

K live attempts (AWAITING_CUSTOMER, each with its own APPROVED booking) and one stored
success callback each in the inbox, as the intake leaves them; then
``SettlementWorker.settle_pending()`` runs until the inbox is empty. Each settlement is the
real thing: attempt PAID, booking CONFIRMED, two audit entries on the hash chain, two
reminders, three notifications in the outbox, the inbox row marked.

    .venv/bin/python bench/settlement.py [--count 2000] [--database-url URL] [--profile]

Default database: a fresh SQLite file in a temporary directory; with a PostgreSQL URL, a
throw-away database on that server (created and dropped; the URL's own database is left
alone). ``--batch-size 0`` settles one by one (``settle_in_session`` per row, as before the
batch path). Target: >= 2000 callbacks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.db.engine import create_engine  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.db.models import (  # noqa: E402
    Booking,
    CallbackInbox,
    Client,
    PaymentAttempt,
    SessionType,
    Therapist,
)
from core.domain.slots import DEFAULT_WEEKLY_HOURS  # noqa: E402
from core.mpesa.callback import parse_callback_fields  # noqa: E402
from core.runtime import Runtime, build_runtime  # noqa: E402
from core.services.payments.inbox import inbox_row  # noqa: E402
from core.services.payments.intake import PROVIDER, SETTLE_BATCH, SettlementWorker, inbox_key  # noqa: E402
from core.services.payments.settlement import Settled  # noqa: E402

TARGET_PER_S = 2000
PRICE = 2500


def success_body(checkout: str, receipt: str, phone: str) -> str:
    return json.dumps(
        {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": "29115-34620561-1",
                    "CheckoutRequestID": checkout,
                    "ResultCode": 0,
                    "ResultDesc": "The service request is processed successfully.",
                    "CallbackMetadata": {
                        "Item": [
                            {"Name": "Amount", "Value": PRICE},
                            {"Name": "MpesaReceiptNumber", "Value": receipt},
                            {"Name": "Balance"},
                            {"Name": "TransactionDate", "Value": 20261126101500},
                            {"Name": "PhoneNumber", "Value": int(phone)},
                        ]
                    },
                }
            }
        }
    )


def checkout_of(i: int) -> str:
    return f"ws_CO_bench{i:012d}"


def stored_callback(i: int, now: datetime, *, raw_only: bool = False) -> dict[str, object]:
    """The inbox row the intake stores for attempt i's success callback."""
    body = success_body(checkout_of(i), f"B{i:09d}", f"2547{i:08d}")
    key = inbox_key(checkout_of(i), 0)
    row = (
        {"provider": PROVIDER, "provider_id": key, "raw_body": body}
        if raw_only
        else inbox_row(key, body, parse_callback_fields(body.encode()))
    )
    return row | {"received_at": now, "attempts": 0}


async def seed(
    runtime: Runtime,
    count: int,
    *,
    secret_hash_of: Callable[[int], str] | None = None,
    store_callbacks: bool = True,
    raw_only: bool = False,
) -> range:
    """K clients, bookings and live attempts, and (``store_callbacks``) one stored success
    callback each, in one transaction of bulk inserts; returns the ids used (attempt = booking).

    The callbacks are stored as the intake stores them (raw body and parsed fields), or with
    ``raw_only`` as rows stored before migration 0006 (settlement parses the body)."""
    now = datetime.now(UTC)
    async with runtime.uow() as uow:
        s = uow.session
        therapist = Therapist(
            name="Bench Practitioner",
            email=f"bench-{secrets.token_hex(4)}@example.org",
            phone="254712000000",
            weekly_hours={d: [list(r) for r in ranges] for d, ranges in DEFAULT_WEEKLY_HOURS.items()},
        )
        kind = SessionType(name=f"Bench {secrets.token_hex(3)}", minutes=50, price_kes=PRICE)
        s.add_all([therapist, kind])
        await s.flush()
        first = int(await s.scalar(select(func.coalesce(func.max(Client.id), 0)))) + 1
        ids = range(first, first + count)
        await s.execute(
            insert(Client),
            [
                {
                    "id": i,
                    "phone": f"2547{i:08d}",
                    "name": f"Client {i}",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        start = now.replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
        await s.execute(
            insert(Booking),
            [
                {
                    "id": i,
                    "reference": f"SSB{i:010d}"[:13],
                    "client_id": i,
                    "therapist_id": therapist.id,
                    "session_type_id": kind.id,
                    "starts_at": start + timedelta(minutes=i),  # one live booking per slot
                    "ends_at": start + timedelta(minutes=i + 50),
                    "price_kes": PRICE,
                    "status": "APPROVED",
                    "channel": "sms",
                    "approval_code": f"{i:08X}",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        await s.execute(
            insert(PaymentAttempt),
            [
                {
                    "id": i,
                    "booking_id": i,
                    "client_id": i,
                    "idempotency_key": f"booking:{i}:1",
                    "status": "AWAITING_CUSTOMER",
                    "amount_kes": PRICE,
                    "phone": f"2547{i:08d}",
                    "environment": "simulator",
                    "callback_secret_hash": secret_hash_of(i) if secret_hash_of else secrets.token_hex(32),
                    "checkout_request_id": checkout_of(i),
                    "deadline_at": now + timedelta(hours=1),
                    "query_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        if not store_callbacks:
            await uow.commit()
            return ids
        await s.execute(insert(CallbackInbox), [stored_callback(i, now, raw_only=raw_only) for i in ids])
        await uow.commit()
        return ids


async def settle_all(
    runtime: Runtime, count: int, batch_size: int
) -> tuple[float, float, dict[Settled, int], int]:
    """Wall seconds, process CPU seconds (all threads), outcomes, rows settled by the batch path."""
    worker = SettlementWorker(runtime, batch_size=batch_size)
    totals: dict[Settled, int] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    while True:
        counts = await worker.settle_pending()
        if not counts:
            break
        for outcome, n in counts.items():
            totals[outcome] = totals.get(outcome, 0) + n
    return time.perf_counter() - started, time.process_time() - cpu_started, totals, worker.batched


@contextlib.asynccontextmanager
async def scratch_database(database_url: str | None) -> AsyncIterator[str]:
    """A fresh SQLite file, or a throw-away database on the given PostgreSQL server (dropped after)."""
    if database_url is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    if not database_url.startswith("postgresql"):
        raise SystemExit("--database-url: a postgresql+asyncpg:// server URL (its database is left alone)")
    base = make_url(load_settings({"DATABASE_URL": database_url}).database_url)
    name = f"ss_bench_{secrets.token_hex(5)}"

    async def admin(sql: str) -> None:
        engine = create_engine(base.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run(count: int, database_url: str | None, profile: bool, batch_size: int) -> dict[str, object]:
    async with scratch_database(database_url) as url:
        settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": "bench"})
        runtime = build_runtime(settings)
        try:
            await upgrade(runtime.engine)
            await seed(runtime, count)
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="enabled")
                profiler.start()
            elapsed, cpu, totals, batched = await settle_all(runtime, count, batch_size)
            if profile:
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False))
            async with runtime.uow() as uow:
                paid = await uow.session.scalar(
                    select(func.count(PaymentAttempt.id)).where(PaymentAttempt.status == "PAID")
                )
        finally:
            await runtime.close()
    return {
        "database": settings.database_url.split(":", 1)[0],
        "callbacks": count,
        "paid": int(paid or 0),
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "per_s": count / elapsed,
        "per_cpu_s": count / cpu if cpu else 0.0,
        "batched": batched,
        "outcomes": {k.value: v for k, v in totals.items()},
    }


def print_table(result: dict[str, object]) -> None:
    rows = [
        ("database", result["database"]),
        ("stored callbacks", result["callbacks"]),
        ("settled PAID", result["paid"]),
        ("settled by the batch path", result["batched"]),
        ("time (s)", f"{result['seconds']:.2f}"),
        ("CPU time, all threads (s)", f"{result['cpu_seconds']:.2f}"),
        ("callbacks/s", f"{result['per_s']:.0f}"),
        ("callbacks per CPU-second", f"{result['per_cpu_s']:.0f}"),
        ("target callbacks/s", f">= {TARGET_PER_S}"),
        ("target met", "yes" if float(result["per_s"]) >= TARGET_PER_S else "NO"),  # type: ignore[arg-type]
    ]
    width = max(len(k) for k, _ in rows)
    print("Settlement throughput (SettlementWorker.settle_pending over stored success callbacks)")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument profile")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=SETTLE_BATCH,
        help=f"rows per batch transaction (default {SETTLE_BATCH}; 0: one by one, as before 2026-11-26)",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.count, args.database_url, args.profile, args.batch_size))
    assert result["paid"] == args.count, result
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
