"""Settlement throughput: how many stored STK callbacks per second become PAID bookings.

K live attempts (AWAITING_CUSTOMER, each with its own APPROVED booking) and one stored
success callback each in the inbox, as the intake leaves them; then
``SettlementWorker.settle_pending()`` runs until the inbox is empty. Each settlement is the
real thing: attempt PAID, booking CONFIRMED, two audit entries on the hash chain, two
reminders, three notifications in the outbox, the inbox row marked.

    .venv/bin/python bench/settlement.py [--count 2000] [--database-url URL] [--workers N]
        [--batch-size N] [--raw-only] [--profile]

Default database: a fresh SQLite file in a temporary directory; with a PostgreSQL URL, a
throw-away database on that server (created and dropped; the URL's own database is left
alone). ``--batch-size 0`` settles one by one (``settle_in_session`` per row, as before the
batch path). ``--workers N`` starts N worker processes on the seeded database at once (each
claims chunks of the inbox, payments.inbox.claim) and reports their combined rate.
``--raw-only`` stores the bodies only, as rows from before migration 0006 (parsed again).
Targets, one worker: >= 2000 callbacks/s on SQLite, >= 1500/s on PostgreSQL. The output ends
with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import subprocess
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

TARGET_PER_S = 2000  # SQLite, one worker
TARGET_PG_PER_S = 1500  # PostgreSQL, one worker
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
    runtime: Runtime, batch_size: int
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


async def drain_in_process(url: str, batch_size: int, profile: bool) -> dict[str, object]:
    """One worker in this process: settle until the inbox is empty."""
    runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": "bench"}))
    try:
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="enabled")
            profiler.start()
        started = time.time()
        elapsed, cpu, totals, batched = await settle_all(runtime, batch_size)
        if profile:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
    finally:
        await runtime.close()
    outcomes = {k.value: v for k, v in totals.items()}
    return {"start": started, "end": started + elapsed, "cpu": cpu, "batched": batched, "outcomes": outcomes}


def drain_worker_process(url: str, batch_size: int) -> None:
    """A child worker: connect, say "ready", wait for "go", drain, print its figures as JSON."""

    async def work() -> dict[str, object]:
        runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": "bench"}))
        try:
            async with runtime.uow() as uow:  # connect (and warm up) before the clock starts
                await uow.session.execute(text("SELECT 1"))
        finally:
            await runtime.close()
        print("ready", flush=True)
        sys.stdin.readline()
        return await drain_in_process(url, batch_size, profile=False)

    print(json.dumps(asyncio.run(work())), flush=True)


def drain_in_processes(url: str, workers: int, batch_size: int) -> list[dict[str, object]]:
    """N worker processes started together on the seeded database; their figures."""
    argv = [sys.executable, __file__, "--drain-worker", url, "--batch-size", str(batch_size)]
    children = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    for child in children:
        assert child.stdout and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin
        child.stdin.write("go\n")
        child.stdin.flush()
    results = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


async def run(
    count: int, database_url: str | None, profile: bool, batch_size: int, workers: int, raw_only: bool
) -> dict[str, object]:
    async with scratch_database(database_url) as url:
        settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": "bench"})
        runtime = build_runtime(settings)
        try:
            await upgrade(runtime.engine)
            await seed(runtime, count, raw_only=raw_only)
            if workers == 1:
                parts = [await drain_in_process(url, batch_size, profile)]
            else:
                parts = await asyncio.to_thread(drain_in_processes, url, workers, batch_size)
            async with runtime.uow() as uow:
                paid = await uow.session.scalar(
                    select(func.count(PaymentAttempt.id)).where(PaymentAttempt.status == "PAID")
                )
        finally:
            await runtime.close()
    elapsed = max(float(p["end"]) for p in parts) - min(float(p["start"]) for p in parts)  # type: ignore[arg-type]
    cpu = sum(float(p["cpu"]) for p in parts)  # type: ignore[arg-type]
    outcomes: dict[str, int] = {}
    for p in parts:
        for outcome, n in p["outcomes"].items():  # type: ignore[attr-defined]
            outcomes[outcome] = outcomes.get(outcome, 0) + n
    return {
        "database": settings.database_url.split(":", 1)[0],
        "callbacks": count,
        "workers": workers,
        "stored_fields": not raw_only,
        "paid": int(paid or 0),
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "per_s": count / elapsed,
        "per_cpu_s": count / cpu if cpu else 0.0,
        "batched": sum(int(p["batched"]) for p in parts),  # type: ignore[call-overload]
        "per_worker": [p["outcomes"] for p in parts],
        "outcomes": outcomes,
    }


def target_of(database: str) -> int:
    return TARGET_PER_S if database.startswith("sqlite") else TARGET_PG_PER_S


def print_table(result: dict[str, object]) -> None:
    target = target_of(str(result["database"]))
    rows = [
        ("database", result["database"]),
        ("worker processes", result["workers"]),
        ("inbox rows with stored fields", "yes" if result["stored_fields"] else "no (raw bodies)"),
        ("stored callbacks", result["callbacks"]),
        ("settled PAID", result["paid"]),
        ("settled by the batch path", result["batched"]),
        ("time (s)", f"{result['seconds']:.2f}"),
        ("CPU time of the workers, all threads (s)", f"{result['cpu_seconds']:.2f}"),
        ("callbacks/s", f"{result['per_s']:.0f}"),
        ("callbacks per CPU-second", f"{result['per_cpu_s']:.0f}"),
        ("target callbacks/s (one worker)", f">= {target}"),
        ("target met", "yes" if float(result["per_s"]) >= target else "NO"),  # type: ignore[arg-type]
    ]
    width = max(len(k) for k, _ in rows)
    print("Settlement throughput (SettlementWorker.settle_pending over stored success callbacks)")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def json_line(result: dict[str, object]) -> str:
    """The one machine-readable line the benchmark ends with."""
    database = str(result["database"])
    return json.dumps({
        "bench": "settlement",
        "db": "sqlite" if database.startswith("sqlite") else "postgresql",
        "count": result["callbacks"],
        "workers": result["workers"],
        "stored_fields": result["stored_fields"],
        "paid": result["paid"],
        "batched": result["batched"],
        "seconds": round(float(result["seconds"]), 3),  # type: ignore[arg-type]
        "settled_per_s": round(float(result["per_s"]), 1),  # type: ignore[arg-type]
        "settled_per_cpu_s": round(float(result["per_cpu_s"]), 1),  # type: ignore[arg-type]
        "target_per_s": target_of(database),
        "target_met": float(result["per_s"]) >= target_of(database),  # type: ignore[arg-type]
        "per_worker": result["per_worker"],
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--workers", type=int, default=1, help="worker processes at once (default 1)")
    parser.add_argument("--raw-only", action="store_true", help="store bodies only (rows from before 0006)")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument profile (one worker)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=SETTLE_BATCH,
        help=f"rows per batch transaction (default {SETTLE_BATCH}; 0: one by one, as before 2026-11-26)",
    )
    parser.add_argument("--drain-worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drain_worker:
        drain_worker_process(args.drain_worker, args.batch_size)
        return 0
    if args.count < 1 or args.workers < 1:
        parser.error("--count and --workers must be at least 1")
    result = asyncio.run(
        run(args.count, args.database_url, args.profile, args.batch_size, args.workers, args.raw_only)
    )
    print_table(result)
    print(json_line(result))
    return 0 if result["paid"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
