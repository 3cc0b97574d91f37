"""Admin money pages' server time with N payment attempts: list, filters, detail, CSV export.

Seeds N attempts (one booking each; 40 practitioners, N/20 clients with distinct phones;
90 % production, 10 % sandbox; 70 % PAID, 15 % CANCELLED, 10 % FAILED, 5 % TIMED_OUT; spread
over a year) and two audit entries per attempt, then times the services the admin views call
(core.services.reporting, core.services.review) in-process: the time a view spends apart from
rendering. The CSV export streams every production row and reports its peak traced memory
(tracemalloc) next to the size of the text it produced.

    .venv/bin/python bench/admin_queries.py [--count 100000] [--database-url URL] [--repeat 5]

Default database: a fresh SQLite file in a temporary directory; with a PostgreSQL server URL,
a throw-away database on that server, ANALYZEd after seeding (as autovacuum would have done on
a live database). Target: every page < 100 ms; CSV memory flat.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text  # noqa: E402

from bench.settlement import scratch_database  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.db.engine import create_engine  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.db.models import AuditEntry, Booking, Client, PaymentAttempt, SessionType, Therapist  # noqa: E402
from core.domain.slots import DEFAULT_WEEKLY_HOURS  # noqa: E402
from core.runtime import Runtime, build_runtime  # noqa: E402
from core.services.reporting import test_summary, transaction_detail, transactions, transactions_csv  # noqa: E402
from core.services.review import queue  # noqa: E402

CHUNK = 5000
PRICE = 2500
THERAPISTS = 40
STATUSES = ["PAID"] * 14 + ["CANCELLED"] * 3 + ["FAILED"] * 2 + ["TIMED_OUT"]
START = datetime(2026, 1, 1, tzinfo=UTC)


def phone_of(client: int) -> str:
    return f"2547{client:08d}"


def receipt_of(i: int) -> str:
    return f"BNC{i:07d}"


async def seed(runtime: Runtime, count: int) -> None:
    """Bulk inserts, in chunks, one transaction per table."""
    clients = max(1, count // 20)
    spread = 365 * 24 * 3600 / max(count, 1)
    async with runtime.uow() as uow:
        s = uow.session
        hours = {d: [list(r) for r in ranges] for d, ranges in DEFAULT_WEEKLY_HOURS.items()}
        await s.execute(
            insert(Therapist.__table__),
            [
                {
                    "id": t,
                    "name": f"Practitioner {t}",
                    "email": f"p{t}@example.org",
                    "phone": "254712000000",
                    "weekly_hours": hours,
                    "active": True,
                    "telegram_unreachable": False,
                    "created_at": START,
                    "updated_at": START,
                }
                for t in range(1, THERAPISTS + 1)
            ],
        )
        s.add(SessionType(id=1, name="Individual", minutes=50, price_kes=PRICE))
        await _chunks(
            s,
            Client,
            clients,
            lambda c: {
                "id": c,
                "phone": phone_of(c),
                "name": f"Client {c} Wanjiru",
                "telegram_unreachable": False,
                "anonymised": False,
                "created_at": START,
                "updated_at": START,
            },
        )
        await _chunks(
            s,
            Booking,
            count,
            lambda i: {
                "id": i,
                "reference": f"SSB{i:08d}",
                "client_id": 1 + i % clients,
                "therapist_id": 1 + i % THERAPISTS,
                "session_type_id": 1,
                "starts_at": START + timedelta(hours=i),
                "ends_at": START + timedelta(hours=i, minutes=50),
                "price_kes": PRICE,
                "status": "COMPLETED" if STATUSES[i % 20] == "PAID" else "EXPIRED",
                "channel": "telegram",
                "approval_code": f"{i:08X}",
                "created_at": START,
                "updated_at": START,
            },
        )
        await _chunks(s, PaymentAttempt, count, lambda i: _attempt(i, clients, spread))
        await _chunks(s, AuditEntry, 2 * count, _audit)
        await uow.commit()


def _attempt(i: int, clients: int, spread: float) -> dict[str, Any]:
    status = STATUSES[i % 20]
    at = START + timedelta(seconds=i * spread)
    paid = status == "PAID"
    return {
        "id": i,
        "booking_id": i,
        "client_id": 1 + i % clients,
        "idempotency_key": f"k{i}",
        "status": status,
        "amount_kes": PRICE,
        "phone": phone_of(1 + i % clients),
        "environment": "sandbox" if i % 10 == 0 else "production",
        "callback_secret_hash": hashlib.sha256(b"%d" % i).hexdigest(),
        "checkout_request_id": f"ws_CO_bench{i:012d}",
        "mpesa_receipt": receipt_of(i) if paid else None,
        "paid_amount_kes": PRICE if paid else None,
        "result_code": "0" if paid else {"CANCELLED": "1032", "FAILED": "1", "TIMED_OUT": "1037"}[status],
        "result_desc": "ok" if paid else "Request cancelled by user",
        "deadline_at": at + timedelta(seconds=120),
        "settled_at": at + timedelta(seconds=40),
        "transaction_time": at + timedelta(seconds=40) if paid else None,
        "query_count": 0,
        "created_at": at,
        "updated_at": at + timedelta(seconds=40),
    }


def _audit(n: int) -> dict[str, Any]:
    attempt = 1 + (n - 1) // 2
    first = n % 2 == 1
    details = {
        "previous": "QUEUED" if first else "AWAITING_CUSTOMER",
        "new": "AWAITING_CUSTOMER" if first else STATUSES[attempt % 20],
        "reason": "bench",
    }
    return {
        "id": n,
        "seq": n,
        "at": START + timedelta(seconds=n),
        "actor": "system",
        "action": "payment.status_changed",
        "subject_type": "payment",
        "subject_id": str(attempt),
        "details": details,
        "prev_hash": hashlib.sha256(b"%d" % (n - 1)).hexdigest(),
        "hash": hashlib.sha256(b"%d" % n).hexdigest(),
    }


async def _chunks(session: Any, model: Any, count: int, row: Callable[[int], dict[str, Any]]) -> None:
    for first in range(1, count + 1, CHUNK):
        await session.execute(
            insert(model.__table__), [row(i) for i in range(first, min(first + CHUNK, count + 1))]
        )


async def timed(repeat: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Median milliseconds over ``repeat`` calls (after one warm-up), and the last result."""
    result = await call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = await call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def parsed(**params: str) -> transactions.ParsedFilter:
    return transactions.parse_filter(params, active_environment="production")


async def measure(runtime: Runtime, count: int, repeat: int) -> dict[str, Any]:
    uow = runtime.uow
    mid = max(1, count // 2 // 10 * 10 + 1)  # a production, PAID attempt
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "list (page 1)": lambda: transactions.transactions_page(uow, parsed()),
        "list (page 100)": lambda: transactions.transactions_page(uow, parsed(page="100")),
        "filter q=receipt": lambda: transactions.transactions_page(uow, parsed(q=receipt_of(mid))),
        "filter q=phone last 4": lambda: transactions.transactions_page(uow, parsed(q=phone_of(7)[-4:])),
        "filter q=whole phone": lambda: transactions.transactions_page(uow, parsed(q="0" + phone_of(7)[3:])),
        "filter q=client name": lambda: transactions.transactions_page(uow, parsed(q="Client 7 ")),
        "filter status+month": lambda: transactions.transactions_page(
            uow, parsed(status="FAILED", **{"from": "2026-03-01", "to": "2026-03-31"})
        ),
        "filter practitioner": lambda: transactions.transactions_page(uow, parsed(therapist="7")),
        "detail": lambda: transaction_detail.detail_of(uow, mid),
        "review queue": lambda: queue.queue_of(uow),
        "test summary (month)": lambda: test_summary.summary_of(
            uow,
            test_summary.parse_summary_filter(
                {"from": "2026-03-01", "to": "2026-03-31"}, active_environment="sandbox", today=START.date()
            ),
        ),
    }
    figures: dict[str, float] = {}
    for name, call in cases.items():
        figures[name], result = await timed(repeat, call)
        if name == "filter q=receipt":
            assert result.total == 1, result.errors
        if name == "detail":
            assert result is not None and len(result.timeline) == 2
    figures["csv export (all production)"], rows, size, peak = await export(runtime)
    return {"ms": figures, "csv_rows": rows, "csv_bytes": size, "csv_peak_bytes": peak}


async def export(runtime: Runtime) -> tuple[float, int, int, int]:
    export = await transactions_csv.open_export(runtime.uow, parsed())
    rows = size = 0
    tracemalloc.start()
    t0 = time.perf_counter()
    async for chunk in export.chunks():
        rows += chunk.count("\r\n")
        size += len(chunk.encode())
    elapsed = (time.perf_counter() - t0) * 1000
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, rows - 1, size, peak


async def run(count: int, database_url: str | None, repeat: int) -> dict[str, Any]:
    async with scratch_database(database_url) as url:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        runtime = build_runtime(load_settings({"DATABASE_URL": url}))
        try:
            t0 = time.perf_counter()
            await seed(runtime, count)
            seeded = time.perf_counter() - t0
            if url.startswith("postgresql"):
                # A live PostgreSQL has planner statistics (autovacuum analyses after bulk changes);
                # a freshly bulk-loaded one has none yet. SQLite keeps none unless asked: left as is.
                async with runtime.engine.connect() as conn:
                    await conn.execute(text("ANALYZE"))
                    await conn.commit()
            result = await measure(runtime, count, repeat)
        finally:
            await runtime.close()
    return {
        "bench": "admin_queries",
        "database": url.split(":", 1)[0],
        "attempts": count,
        "seed_seconds": round(seeded, 1),
        "repeat": repeat,
        **result,
        "python": platform.python_version(),
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{result['attempts']} attempts on {result['database']} (seeded in {result['seed_seconds']} s); "
        f"median of {result['repeat']} runs"
    )
    print(f"{'query':32} {'ms':>9}")
    for name, ms in result["ms"].items():
        print(f"{name:32} {ms:9.1f}")
    print(
        f"csv: {result['csv_rows']} rows, {result['csv_bytes'] / 1e6:.1f} MB of text, "
        f"peak traced memory {result['csv_peak_bytes'] / 1e6:.2f} MB"
    )
    result["ms"] = {k: round(v, 1) for k, v in result["ms"].items()}
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if args.count < 20 or args.repeat < 1:
        parser.error("--count must be at least 20 and --repeat at least 1")
    print_table(asyncio.run(run(args.count, args.database_url, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
