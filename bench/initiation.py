"""Payment initiation under a burst: N clients press Pay at once (STK Push to the Daraja simulator).

N clients, each with one APPROVED booking, start paying at the same instant; the Daraja
simulator runs in its own process (``python -m simulators.daraja``) at zero latency (no fault,
no ``slow_seconds``; its callbacks are held back an hour so that only initiation is measured).
Two paths, both the real code:

* ``--path service`` (default): the application built by ``create_app`` in this process, and
  N concurrent ``PaymentService.initiate_payment`` calls — attempt row + audit entry committed,
  OAuth + STK Push over HTTP, the attempt marked sent. Latency: from the common start to the
  answer the chat side would show.
* ``--path sms``: the real ``smiling-steps serve`` process; each client has texted PAY (not
  timed) and then texts its M-Pesa number to the Africa's Talking hook
  (``POST /hooks/sms/{secret}/inbound``), all N at once. Latency: from the send to the turn's
  reply ("Check your phone") being queued in the outbox (its ``created_at``; the hook's HTTP
  answer itself waits at most 2 s); "push latency" is from the send to the simulator logging
  the push.

Checks after the run: exactly N pushes reached the simulator; no attempt is attached to the
wrong booking — each attempt's CheckoutRequestID is a push of the simulator for the attempt's
phone, amount, booking reference (TransactionDesc) and callback secret, one attempt per
booking, each booking's client's own phone. Peak RSS of every process, and the CPU time
the application's process spent per initiation (less disturbed by a busy host than latency).

    .venv/bin/python bench/initiation.py [--count 500] [--path service|sms] [--database-url URL]

Target: p99 <= 200 ms (the seed allows 3 s: Properties 51, 54). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from harness import (  # noqa: E402
    ROOT,
    SECRET_KEY,
    child_cpu_s,
    child_peak_rss_mb,
    free_port,
    own_peak_rss_mb,
    percentile,
    phone_of,
    seed_approved_bookings,
    start,
    stop,
    wait_listening,
    wait_up,
)
from settlement import scratch_database  # noqa: E402
from sqlalchemy import select  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.db.models import Booking, Outbox, PaymentAttempt  # noqa: E402
from core.mpesa.stk_request import safe_transaction_desc  # noqa: E402
from core.runtime import build_runtime  # noqa: E402
from core.services.payments.initiate import PaymentRefused  # noqa: E402
from core.services.payments.secrets import callback_secret_hash  # noqa: E402

TARGET_P99_MS = 200.0
SEED_LIMIT_MS = 3000.0
AT_SECRET = "bench-at-webhook-secret"
SCRIPT = shutil.which("smiling-steps", path=str(Path(sys.executable).parent)) or "smiling-steps"
KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def base_env(url: str, port: int, daraja_url: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k in KEEP_ENV},
        "DATABASE_URL": url,
        "PORT": str(port),
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "MPESA_API_BASE_URL": daraja_url,
        "AT_WEBHOOK_SECRET": AT_SECRET,
        "LOG_LEVEL": "WARNING",
    }


async def simulator_transactions(daraja_url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{daraja_url}/control/transactions") as r:
        return list((await r.json())["transactions"])


async def simulator_push_times(daraja_url: str) -> dict[str, float]:
    """CheckoutRequestID -> wall time (epoch s) the simulator logged the push."""
    from datetime import datetime

    async with aiohttp.ClientSession() as http, http.get(f"{daraja_url}/control/log") as r:
        entries = (await r.json())["entries"]
    return {
        e["checkout_request_id"]: datetime.fromisoformat(e["at"]).timestamp()
        for e in entries
        if e.get("endpoint") == "stk_push" and e.get("checkout_request_id")
    }


# -- the two paths -------------------------------------------------------------------------------


async def press_pay_in_process(url: str, daraja_url: str, ids: range) -> dict[str, Any]:
    """N concurrent initiate_payment calls on the application built as ``serve`` builds it."""
    from smiling_steps.app import SERVICES, create_app

    port = free_port()
    settings = load_settings(base_env(url, port, daraja_url))
    app = create_app(settings, with_bot=False, with_notifications=False)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    payments = app[SERVICES].payments
    statuses: dict[str, int] = {}
    try:
        await payments.active_environment()  # warm: the saved-settings read, as after any start

        async def pay(i: int, began: float) -> float:
            try:
                view = await payments.initiate_payment(i, i, phone_of(i))
                key = view.status.value
            except PaymentRefused as exc:
                key = f"refused:{exc.code}"
            except Exception as exc:  # escaped the service: a finding to report, not a crash of the bench
                key = f"error:{type(exc).__name__}"
            statuses[key] = statuses.get(key, 0) + 1
            return time.perf_counter() - began

        began, cpu_began = time.perf_counter(), time.process_time()
        latencies = await asyncio.gather(*[pay(i, began) for i in ids])
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    finally:
        await runner.cleanup()
    return {
        "latencies_s": list(latencies),
        "wall_s": wall,
        "cpu_s": cpu,
        "statuses": statuses,
        "processes": {},
    }


async def sms_post(http: aiohttp.ClientSession, path: str, i: int, text: str, tag: str) -> tuple[int, str]:
    form = {
        "from": "+" + phone_of(i),
        "to": "22384",
        "text": text,
        "id": f"bench-{tag}-{i}",
        "date": "2026-12-04 08:00:00",
        "linkId": "",
    }
    async with http.post(path, data=form) as response:
        return response.status, await response.text()


async def sms_replies(url: str, tag: str) -> dict[str, float]:
    """Message id -> when our reply to it was queued (epoch s): the end of that turn."""
    runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY}))
    try:
        async with runtime.uow() as uow:
            rows = (
                await uow.session.execute(
                    select(Outbox.dedupe_key, Outbox.created_at).where(
                        Outbox.dedupe_key.like(f"sms:bench-{tag}-%")
                    )
                )
            ).all()
    finally:
        await runtime.close()
    return {key.split(":")[1]: _epoch(at) for key, at in rows}


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


async def press_pay_by_sms(url: str, daraja_url: str, ids: range, tmp: str) -> dict[str, Any]:
    """PAY (untimed), then N numbers texted at once to the real ``serve`` process; each turn's
    latency is from its send to its reply being queued (the hook answers after at most 2 s)."""
    port = free_port()
    log = Path(tmp, "serve.log")
    server = start([SCRIPT, "serve"], base_env(url, port, daraja_url), tmp, log)
    path = f"/hooks/sms/{AT_SECRET}/inbound"
    try:
        await wait_up(f"http://127.0.0.1:{port}/healthz", server, log)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}", connector=connector) as http:
            await asyncio.gather(*[sms_post(http, path, i, "PAY", "pay") for i in ids])
            await wait_for_replies(url, "pay", len(ids))
            began_wall, began, cpu_began = time.time(), time.perf_counter(), child_cpu_s(server.pid)
            answers = await asyncio.gather(
                *[sms_post(http, path, i, "0" + phone_of(i)[3:], "number") for i in ids]
            )
        replied = await wait_for_replies(url, "number", len(ids))
        cpu = child_cpu_s(server.pid) - cpu_began
        wall = max(replied.values(), default=began_wall) - began_wall
        rss = child_peak_rss_mb(server.pid)
    finally:
        stop(server)
    bad = sum(1 for status, _ in answers if status != 200)
    return {
        "latencies_s": [at - began_wall for at in replied.values()],
        "wall_s": wall or (time.perf_counter() - began),
        "began_wall": began_wall,
        "cpu_s": cpu,
        "statuses": {"http_200": len(answers) - bad, "http_other": bad, "replied": len(replied)},
        "processes": {"serve": rss},
    }


async def wait_for_replies(url: str, tag: str, count: int, within: float = 120.0) -> dict[str, float]:
    """Until every ``bench-<tag>-*`` message has its reply queued (or ``within`` s): id -> when."""
    deadline = time.monotonic() + within
    while True:
        replied = await sms_replies(url, tag)
        if len(replied) >= count or time.monotonic() > deadline:
            return replied
        await asyncio.sleep(0.2)


# -- checks ----------------------------------------------------------------------------------------


async def check_against_simulator(url: str, daraja_url: str, ids: range) -> dict[str, Any]:
    """Pushes the simulator received vs the attempts in the database (see the module docstring)."""
    transactions = {t["CheckoutRequestID"]: t for t in await simulator_transactions(daraja_url)}
    runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY}))
    try:
        async with runtime.uow() as uow:
            rows = (
                await uow.session.execute(
                    select(PaymentAttempt, Booking).join(Booking, Booking.id == PaymentAttempt.booking_id)
                )
            ).all()
            replies = (
                await uow.session.scalars(select(Outbox).where(Outbox.dedupe_key.like("sms:bench-number-%")))
            ).all()
    finally:
        await runtime.close()
    mismatched, per_booking = 0, dict.fromkeys(ids, 0)
    for attempt, booking in rows:
        per_booking[booking.id] = per_booking.get(booking.id, 0) + 1
        tx = transactions.get(attempt.checkout_request_id or "")
        secret = (tx or {}).get("callback_url", "").rsplit("/", 1)[-1]
        if not (
            tx is not None
            and booking.client_id == attempt.client_id
            and attempt.phone == phone_of(booking.client_id) == tx["phone"]
            and tx["amount"] == attempt.amount_kes == booking.price_kes
            and tx["transaction_desc"] == safe_transaction_desc(booking.reference)
            and callback_secret_hash(SECRET_KEY, secret) == attempt.callback_secret_hash
        ):
            mismatched += 1
    return {
        "pushes": len(transactions),
        "attempts": len(rows),
        "mismatched": mismatched,
        "bookings_without_one_attempt": sum(1 for n in per_booking.values() if n != 1),
        "sms_replies_check_your_phone": sum(1 for r in replies if "Check your phone" in str(r.data["text"])),
        "push_checkouts": [a.checkout_request_id for a, _ in rows if a.checkout_request_id],
    }


# -- the run ---------------------------------------------------------------------------------------


async def run(count: int, path: str, database_url: str | None) -> dict[str, Any]:
    import tempfile

    sim_port = free_port()
    daraja_url = f"http://127.0.0.1:{sim_port}"
    keep = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
    sim = start(
        [sys.executable, "-m", "simulators.daraja", "--port", str(sim_port), "--callback-delay", "3600"],
        keep,
    )
    try:
        async with scratch_database(database_url) as url:
            runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY}))
            try:
                await upgrade(runtime.engine)
                ids = await seed_approved_bookings(runtime, count)
            finally:
                await runtime.close()
            await wait_listening(f"{daraja_url}/control/faults")
            with tempfile.TemporaryDirectory() as tmp:
                if path == "sms":
                    measured = await press_pay_by_sms(url, daraja_url, ids, tmp)
                else:
                    measured = await press_pay_in_process(url, daraja_url, ids)
            checked = await check_against_simulator(url, daraja_url, ids)
            if path == "sms":
                pushed_at = await simulator_push_times(daraja_url)
                measured["push_latencies_s"] = [
                    pushed_at[c] - measured["began_wall"] for c in checked["push_checkouts"] if c in pushed_at
                ]
        measured["processes"]["daraja_simulator"] = child_peak_rss_mb(sim.pid)
    finally:
        stop(sim)
    measured["processes"]["bench" if path == "sms" else "bench+app"] = own_peak_rss_mb()
    return {"database": url.split(":", 1)[0], **measured, **checked}


def figures(count: int, path: str, result: dict[str, Any]) -> dict[str, Any]:
    ms = [s * 1000 for s in result["latencies_s"]]
    out: dict[str, Any] = {
        "bench": "initiation",
        "path": path,
        "database": result["database"],
        "count": count,
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms, default=0.0), 1),
        "per_s": round(count / result["wall_s"], 1) if result["wall_s"] else 0.0,
        "cpu_ms_per_initiation": round(result["cpu_s"] * 1000 / count, 2),
        "pushes": result["pushes"],
        "attempts": result["attempts"],
        "mismatched": result["mismatched"],
        "bookings_without_one_attempt": result["bookings_without_one_attempt"],
        "statuses": result["statuses"],
        "peak_rss_mb": result["processes"],
        "target_p99_ms": TARGET_P99_MS,
        "target_met": percentile(ms, 99) <= TARGET_P99_MS,
    }
    if path == "sms":
        push_ms = [s * 1000 for s in result.get("push_latencies_s", [])]
        out["push_p50_ms"] = round(percentile(push_ms, 50), 1)
        out["push_p99_ms"] = round(percentile(push_ms, 99), 1)
        out["sms_replies_check_your_phone"] = result["sms_replies_check_your_phone"]
    return out


def print_table(f: dict[str, Any]) -> None:
    print(f"Payment initiation: {f['count']} clients press Pay at once ({f['path']} path, {f['database']})")
    print(f"  latency p50 {f['p50_ms']:.1f} ms   p99 {f['p99_ms']:.1f} ms   max {f['max_ms']:.1f} ms")
    if "push_p99_ms" in f:
        print(f"  send -> push at Daraja: p50 {f['push_p50_ms']:.1f} ms   p99 {f['push_p99_ms']:.1f} ms")
        print(f"  SMS replies 'Check your phone': {f['sms_replies_check_your_phone']} of {f['count']}")
    print(f"  initiations/s over the burst: {f['per_s']:.1f}   outcomes: {f['statuses']}")
    print(
        f"  CPU per initiation ({'serve' if f['path'] == 'sms' else 'this process'}): "
        f"{f['cpu_ms_per_initiation']:.2f} ms"
    )
    print(f"  pushes at the simulator: {f['pushes']} (expected {f['count']}), attempts {f['attempts']}")
    print(
        f"  attempts not matching their push/booking: {f['mismatched']}; "
        f"bookings without exactly one attempt: {f['bookings_without_one_attempt']}"
    )
    print(f"  peak RSS (MB): {f['peak_rss_mb']}")
    verdict = "met" if f["target_met"] else "NOT met"
    print(
        f"  target p99 <= {TARGET_P99_MS:.0f} ms: {verdict}; seed limit {SEED_LIMIT_MS:.0f} ms: "
        f"{'met' if f['p99_ms'] <= SEED_LIMIT_MS else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--path", choices=("service", "sms"), default="service")
    parser.add_argument("--database-url", help="a postgresql+asyncpg:// server URL (a throw-away database)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    os.chdir(ROOT)
    result = asyncio.run(run(args.count, args.path, args.database_url))
    f = figures(args.count, args.path, result)
    print_table(f)
    print(json.dumps(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
