"""Server time of the admin audit pages with N audit entries: browse (newest page, a page deep
in the trail, filtered by action, by actor, by day), chain verification and the JSONL export.

N entries (a valid hash chain, built with ``core.services.audit.make_record``) over the last
``--days`` days; actors: system 60 %, clients 30 %, admins 10 % (admin:7 holds 1 %); 8 actions.
Times the services the views call (``core.services.audit.browse``), in-process.

    .venv/bin/python bench/admin_audit.py [--count 200000] [--days 90] [--database-url URL] [--repeat 5]

Default database: a fresh SQLite file; with a PostgreSQL server URL, a throw-away database on
that server. Target: < 100 ms per page (verification and export are streamed actions, not
pages: their figure is entries per second). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from bench.settlement import scratch_database  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.db.models import AuditEntry  # noqa: E402
from core.runtime import Runtime, build_runtime  # noqa: E402
from core.services.audit import GENESIS_HASH, make_record  # noqa: E402
from core.services.audit.browse import AuditFilter, browse_audit, export_audit, verify_audit_chain  # noqa: E402

CHUNK = 5000
NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
ACTIONS = ["payment.initiated", "payment.status_changed", "payment.status_changed", "booking.created",
           "booking.status_changed", "admin.accessed", "notification.sent", "reconciliation.completed"]


def _actor(i: int) -> str:
    if i % 100 == 0:
        return "admin:7"
    if i % 10 == 1:
        return f"admin:{i % 5}"
    return f"client:{i % 997}" if i % 10 < 4 else "system"


async def seed(runtime: Runtime, count: int, days: int) -> None:
    step = timedelta(days=days) / count
    prev = GENESIS_HASH
    async with runtime.uow() as uow:
        for first in range(1, count + 1, CHUNK):
            rows = []
            for seq in range(first, min(first + CHUNK, count + 1)):
                at = NOW - timedelta(days=days) + step * seq
                rec = make_record(prev, seq=seq, at=at, actor=_actor(seq), action=ACTIONS[seq % len(ACTIONS)],
                                  subject_type="payment",
                                  subject_id=str(seq % 50_000), details={"n": seq, "reason": "bench"})
                prev = rec.hash
                rows.append({"seq": rec.seq, "at": rec.at, "actor": rec.actor, "action": rec.action,
                             "subject_type": rec.subject_type, "subject_id": rec.subject_id,
                             "details": rec.details, "prev_hash": rec.prev_hash, "hash": rec.hash})
            await uow.session.execute(insert(AuditEntry.__table__), rows)
        await uow.commit()


async def _timed(repeat: int, work: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await work()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


async def run(count: int, days: int, database_url: str | None, repeat: int) -> dict[str, object]:
    async with scratch_database(database_url) as url:
        runtime = build_runtime(load_settings({"DATABASE_URL": url}), clock=lambda: NOW)
        try:
            await upgrade(runtime.engine)
            started = time.perf_counter()
            await seed(runtime, count, days)
            seeded_s = time.perf_counter() - started
            day = (NOW - timedelta(days=days // 2)).date()
            pages = {
                "newest": AuditFilter(),
                "deep (before = N/2)": AuditFilter(before=count // 2),
                "action = booking.created": AuditFilter(action="booking.created"),
                "actor = admin:7 (1 %)": AuditFilter(actor="admin:7"),
                "actor = admin:99 (none)": AuditFilter(actor="admin:99"),
                "one day, mid-trail": AuditFilter(day_from=day, day_to=day),
            }
            page_ms = {}
            for name, filters in pages.items():
                page_ms[name] = await _timed(repeat, lambda f=filters: browse_audit(runtime, f))
            t0 = time.perf_counter()
            result = await verify_audit_chain(runtime, admin_id=1)
            verify_s = time.perf_counter() - t0
            written = 0

            async def sink(chunk: bytes) -> None:
                nonlocal written
                written += len(chunk)

            t0 = time.perf_counter()
            exported = await export_audit(runtime, sink)
            export_s = time.perf_counter() - t0
            return {
                "database": runtime.engine.dialect.name, "entries": count, "seed_s": round(seeded_s, 1),
                "page_ms_median": page_ms, "verify_ok": result.ok,
                "verify_entries_per_s": round(result.count / verify_s),
                "export_entries_per_s": round(exported / export_s), "export_mb": round(written / 1e6, 1),
            }
        finally:
            await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--database-url")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    r = asyncio.run(run(args.count, args.days, args.database_url, args.repeat))
    print(f"python {platform.python_version()}, {r['database']}, {r['entries']} audit entries "
          f"(seeded in {r['seed_s']} s)")
    for name, ms in r["page_ms_median"].items():  # type: ignore[attr-defined]
        print(f"{'browse: ' + name:40} {ms:>8} ms (median)")
    print(f"{'verify chain':40} {r['verify_entries_per_s']:>8} entries/s (ok={r['verify_ok']})")
    print(f"{'export JSONL':40} {r['export_entries_per_s']:>8} entries/s ({r['export_mb']} MB)")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
