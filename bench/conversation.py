"""Whole booking conversations under load: Telegram (real PTB + the Bot API stand-in) and SMS.

The application is built as ``serve`` builds it in local mode (``create_app``: the dialog engine,
the real PTB application polling the Telegram stand-in, the Africa's Talking hook, the outbox
dispatcher, settlement, the Daraja simulator under /sim/daraja answering at once and calling
back after 1 s), in this process. N clients hold a whole conversation each, all at once:

* Telegram (11 updates): /start, Book a session, the practitioner, the session type, a day, the
  first time, Skip (e-mail), Confirm; the practitioner's Approve; Pay with M-Pesa; Share my
  phone number — until "Check your phone" (or already "Payment received").
* SMS (10 inbound messages to ``POST /hooks/sms/{secret}/inbound``, Africa's Talking's form):
  BOOK, the practitioner's name, 1 (type), the day's number, 1 (time), 1 (skip e-mail),
  1 (confirm); the practitioner's ``A<code>``; PAY, 1 (own number) — until "Check your phone"
  (or "... is already paid" when, under load, the payment settled before the turn answered).

Each client has its own day with its practitioner (one practitioner per 15 clients on Telegram,
per 7 on SMS: a page of days), so no two clients race for one slot. Per update: from the moment
the update is queued (Telegram) or posted (SMS) to the bot's answer being visible (the message
sent or edited; the SMS reply in the outbox). Updates/s: all updates over the run's wall time
(which also holds the waits for outbox-delivered notices, e.g. the approval). Peak RSS of the
process (everything runs in it) and its CPU time per update (all threads, the driving included:
less disturbed by other load on the host than the wall-clock figures).

    .venv/bin/python bench/conversation.py [--count 100] [--channel both|telegram|sms] [--database-url URL]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from chat_drivers import (  # noqa: E402
    AT_SECRET,
    PRACTITIONERS,
    TG_PRACTITIONER,
    Timings,
    practitioner_name,
    practitioner_phone,
    sms_conversation,
    tg_conversation,
)
from harness import ROOT, SECRET_KEY, free_port, own_peak_rss_mb, percentile  # noqa: E402
from settlement import scratch_database  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.db.models import PaymentAttempt, SessionType, Therapist  # noqa: E402
from core.domain.slots import SLOT_STEP_MINUTES, WEEKDAYS  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from core.runtime import Runtime, build_runtime  # noqa: E402

# -- seeding -----------------------------------------------------------------------------------------


async def seed_practitioners(runtime: Runtime, channel: str) -> None:
    """PRACTITIONERS practitioners free every day 06:00-21:00 (Telegram ones linked to a chat)."""
    hours = {day: [["06:00", "21:00"]] for day in WEEKDAYS}
    async with runtime.uow() as uow:
        for p in range(PRACTITIONERS):
            uow.session.add(
                Therapist(
                    name=practitioner_name(channel, p),
                    email=f"bench-{channel}-{p}@example.org",
                    phone=practitioner_phone(channel, p),
                    weekly_hours=hours,
                    telegram_user_id=TG_PRACTITIONER + p if channel == "telegram" else None,
                    telegram_link_code=None,
                )
            )
        if not await uow.session.scalar(select(func.count(SessionType.id))):
            # A session as long as the slot step: slots do not overlap, so a race is for one slot only.
            uow.session.add(SessionType(name="Bench", minutes=SLOT_STEP_MINUTES, price_kes=2500))
        await uow.commit()


# -- the run ------------------------------------------------------------------------------------------------


async def drive(channel: str, count: int, conversation: Callable[[Timings, int], Any]) -> dict[str, Any]:
    t = Timings()

    async def one(i: int) -> None:
        try:
            await conversation(t, i)
            t.completed += 1
        except Exception as exc:  # a failed conversation is a figure, not a crash of the bench
            t.failures.append(f"{channel} client {i}: {type(exc).__name__}: {str(exc)[:200]}")

    began, cpu_began = time.perf_counter(), time.process_time()
    await asyncio.gather(*[one(i) for i in range(count)])
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    ms = [s * 1000 for s in t.latencies]
    return {
        "conversations": count,
        "completed": t.completed,
        "failed": len(t.failures),
        "failures": t.failures[:5],
        "updates": len(ms),
        "seconds": round(wall, 2),
        "updates_per_s": round(len(ms) / wall, 1) if wall else 0.0,
        "cpu_ms_per_update": round(cpu * 1000 / len(ms), 2) if ms else 0.0,
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms, default=0.0), 1),
    }


async def run(count: int, channels: list[str], database_url: str | None) -> dict[str, Any]:
    from smiling_steps.app import SERVICES, TELEGRAM_SIMULATOR, create_app

    results: dict[str, Any] = {}
    async with scratch_database(database_url) as url:
        port = free_port()
        env = {
            "DATABASE_URL": url,
            "PORT": str(port),
            "SECRET_KEY": SECRET_KEY,
            "AT_WEBHOOK_SECRET": AT_SECRET,
            "LOG_LEVEL": "WARNING",
        }
        settings = load_settings(env)
        runtime = build_runtime(settings)
        await upgrade(runtime.engine)
        for channel in channels:
            await seed_practitioners(runtime, channel)
        app = create_app(settings, runtime)
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await app[SERVICES].bot.wait_ready(30.0)  # type: ignore[union-attr]
            sim = app[TELEGRAM_SIMULATOR]
            if "telegram" in channels:
                for p in range(PRACTITIONERS):  # they opened the bot earlier (linked accounts)
                    sim.add_user(TG_PRACTITIONER + p, f"Practitioner{p}", started=True)
                results["telegram"] = await drive(
                    "telegram", count, lambda t, i: tg_conversation(sim, runtime, t, i)
                )
            if "sms" in channels:
                connector = aiohttp.TCPConnector(limit=0)
                async with aiohttp.ClientSession(
                    base_url=f"http://127.0.0.1:{port}", connector=connector
                ) as http:
                    results["sms"] = await drive(
                        "sms", count, lambda t, i: sms_conversation(http, runtime, t, i)
                    )
            async with runtime.uow() as uow:
                results["payment_attempts"] = int(
                    await uow.session.scalar(select(func.count(PaymentAttempt.id))) or 0
                )
        finally:
            await runner.cleanup()
    results["database"] = url.split(":", 1)[0]
    results["peak_rss_mb"] = {"bench+app": own_peak_rss_mb()}
    return results


def print_table(f: dict[str, Any]) -> None:
    print(f"Booking conversations: {f['count']} clients at once per channel ({f['database']}, one process)")
    print(
        f"  {'channel':<9} {'done':>5} {'failed':>6} {'updates':>8} {'seconds':>8} {'upd/s':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU ms/upd':>10}"
    )
    for channel in ("telegram", "sms"):
        r = f.get(channel)
        if r:
            print(
                f"  {channel:<9} {r['completed']:>5} {r['failed']:>6} {r['updates']:>8} {r['seconds']:>8.2f} "
                f"{r['updates_per_s']:>7.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
                f"{r['cpu_ms_per_update']:>10.2f}"
            )
            for failure in r["failures"]:
                print(f"    {failure}")
    print(f"  payment attempts started: {f['payment_attempts']}; peak RSS (MB): {f['peak_rss_mb']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="conversations per channel")
    parser.add_argument("--channel", choices=("both", "telegram", "sms"), default="both")
    parser.add_argument("--database-url", help="a postgresql+asyncpg:// server URL (a throw-away database)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    os.chdir(ROOT)
    configure_logging("WARNING")  # the application's warnings, JSON on stderr
    channels = ["telegram", "sms"] if args.channel == "both" else [args.channel]
    result = asyncio.run(run(args.count, channels, args.database_url))
    f = {"bench": "conversation", "count": args.count, **result}
    print_table(f)
    print(json.dumps(f))
    return 0 if all(f[c]["failed"] == 0 for c in channels) else 1


if __name__ == "__main__":
    sys.exit(main())
