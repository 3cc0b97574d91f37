"""The admin dashboard's server time with N payment attempts spread over the last D days.

N attempts (90 % production, 10 % sandbox; 70 % PAID with 20-119 s to confirmation, 15 %
CANCELLED, 10 % FAILED, 5 % TIMED_OUT) evenly over the last ``--spread-days`` days (365: a
year of history, of which the dashboard reads its 30-day window; 30: the worst case, every
attempt in the window). Times ``core.services.reporting.dashboard.dashboard`` (one grouped
scan of the window and the counts behind the links) and the server-side chart (pygal SVG),
in-process: the time the view spends apart from rendering the template.

    .venv/bin/python bench/admin_dashboard.py [--count 100000] [--spread-days 365]
                                              [--database-url URL] [--repeat 5]

Default database: a fresh SQLite file in a temporary directory; with a PostgreSQL server URL,
a throw-away database on that server. Target: < 100 ms per page. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from admin_web.charts import daily_revenue_and_success_svg  # noqa: E402
from bench.settlement import scratch_database  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.db.models import Booking, Client, PaymentAttempt, SessionType, Therapist  # noqa: E402
from core.runtime import Runtime, build_runtime  # noqa: E402
from core.services.reporting.dashboard import dashboard  # noqa: E402

CHUNK = 5000
NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
STATUSES = ["PAID"] * 14 + ["CANCELLED"] * 3 + ["FAILED"] * 2 + ["TIMED_OUT"]
CODES = {"PAID": "0", "CANCELLED": "1032", "FAILED": "1", "TIMED_OUT": "1037"}


async def seed(runtime: Runtime, count: int, spread_days: int = 30) -> None:
    window = spread_days * 24 * 3600 - 60
    async with runtime.uow() as uow:
        s = uow.session
        stamps = {"created_at": NOW, "updated_at": NOW}
        await s.execute(insert(Therapist.__table__), [{
            "id": 1, "name": "P", "email": "p@example.org", "phone": "254712000000", "weekly_hours": {},
            "active": True, "telegram_unreachable": False, **stamps}])
        await s.execute(insert(Client.__table__), [{
            "id": 1, "name": "C", "phone": "254712000001", "telegram_unreachable": False, "anonymised": False,
            **stamps}])
        await s.execute(insert(SessionType.__table__), [{
            "id": 1, "name": "Individual", "minutes": 50, "price_kes": 2500, "active": True}])
        for first in range(1, count + 1, CHUNK):
            ids = range(first, min(first + CHUNK, count + 1))
            await s.execute(insert(Booking.__table__), [_booking(i) for i in ids])
            await s.execute(insert(PaymentAttempt.__table__), [_attempt(i, count, window) for i in ids])
        await uow.commit()


def _booking(i: int) -> dict[str, object]:
    starts = NOW + timedelta(hours=i)
    return {"id": i, "reference": f"SB{i:09d}", "client_id": 1, "therapist_id": 1, "session_type_id": 1,
            "starts_at": starts, "ends_at": starts + timedelta(minutes=50), "price_kes": 2500,
            "status": "COMPLETED", "channel": "telegram", "approval_code": f"{i:08X}",
            "created_at": NOW, "updated_at": NOW}


def _attempt(i: int, count: int, window: int) -> dict[str, object]:
    status = STATUSES[i % len(STATUSES)]
    created = NOW - timedelta(seconds=window * i / count)
    paid = status == "PAID"
    return {"id": i, "booking_id": i, "client_id": 1, "idempotency_key": f"k{i}", "status": status,
            "amount_kes": 2500, "phone": "254712000001",
            "environment": "sandbox" if i % 10 == 0 else "production",
            "callback_secret_hash": f"{i:064x}", "checkout_request_id": f"ws_CO_{i}",
            "mpesa_receipt": f"BND{i:07d}" if paid else None, "paid_amount_kes": 2500 if paid else None,
            "result_code": CODES[status], "deadline_at": created + timedelta(seconds=120),
            "settled_at": created + timedelta(seconds=20 + i % 100) if paid else None, "query_count": 0,
            "created_at": created, "updated_at": created}


async def run(count: int, spread_days: int, database_url: str | None, repeat: int) -> dict[str, object]:
    async with scratch_database(database_url) as url:
        runtime = build_runtime(load_settings({"DATABASE_URL": url}), clock=lambda: NOW)
        try:
            await upgrade(runtime.engine)
            started = time.perf_counter()
            await seed(runtime, count, spread_days)
            seeded_s = time.perf_counter() - started
            query_ms, chart_ms = [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                figures = await dashboard(runtime, environment="production")
                t1 = time.perf_counter()
                daily_revenue_and_success_svg(figures.days)
                query_ms.append((t1 - t0) * 1000)
                chart_ms.append((time.perf_counter() - t1) * 1000)
            month = figures.periods[2]
            return {
                "database": runtime.engine.dialect.name, "attempts": count, "spread_days": spread_days,
                "seed_s": round(seeded_s, 1), "in_window_production": month.finished,
                "dashboard_ms_median": round(statistics.median(query_ms), 1),
                "dashboard_ms_max": round(max(query_ms), 1),
                "chart_ms_median": round(statistics.median(chart_ms), 1),
            }
        finally:
            await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--spread-days", type=int, default=365)
    parser.add_argument("--database-url")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(run(args.count, args.spread_days, args.database_url, args.repeat))
    r = result
    print(f"python {platform.python_version()}, {r['database']}, {r['attempts']} attempts over "
          f"{r['spread_days']} days ({r['in_window_production']} finished production ones in the window)")
    timing = f"{r['dashboard_ms_median']:>8} / {r['dashboard_ms_max']} ms"
    print(f"{'dashboard queries (median / max)':34} {timing}")
    print(f"{'chart (pygal SVG, median)':34} {result['chart_ms_median']:>8} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
