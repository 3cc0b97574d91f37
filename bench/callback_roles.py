"""Callback acknowledgements with the roles split: ``serve --role web`` takes them, ``--role worker`` settles.

``bench/callback_ack.py --roles split`` runs this (a separate module so the default mode of
callback_ack.py stays as it is). Two real processes on one database (a fresh SQLite file, or a
throw-away PostgreSQL database with ``--database-url``) holding N live attempts: the web process
verifies, stores and acknowledges one valid success callback per attempt; the worker learns of
the stored rows (LISTEN/NOTIFY on PostgreSQL, a short sweep on SQLite) and settles them. Then,
in the same run, a bare aiohttp handler (read the body, answer the same JSON) takes the same load.

Printed: acknowledgements/s and × bare, ack latency p50/p99, errors (non-200 or failed requests),
callbacks settled by the end (waited for, bounded), settled/s (from the first request to the last
settlement), the lag from each acknowledgement to its attempt's ``settled_at`` (p50/p99), peak RSS
of web, worker and the load generator. Ends with one JSON line.

Targets (issue 13): acks >= 0.5 x bare, ack p99 <= 20 ms, every callback settled, zero errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from callback_ack import ACCEPTED, SCRIPT, SECRET_KEY, prepare  # noqa: E402
from harness import (  # noqa: E402
    child_peak_rss_mb,
    free_port,
    own_peak_rss_mb,
    percentile,
    start,
    stop,
    wait_listening,
    wait_up,
)
from settlement import scratch_database  # noqa: E402
from sqlalchemy import select  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.db.models import PaymentAttempt  # noqa: E402
from core.runtime import build_runtime  # noqa: E402

TARGET_RATIO, TARGET_P99_MS = 0.5, 20.0
KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


@dataclass
class TimedLoad:
    """Each answered request: its latency and the wall time of its answer (keyed by the path)."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    acked_at: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    sent: int = 0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def timed_load(
    base_url: str, requests: list[tuple[str, bytes]], concurrency: int, max_s: float
) -> TimedLoad:
    """POST every (path, body) with ``concurrency`` keep-alive clients; stop early after ``max_s``."""
    queue, result = iter(requests), TimedLoad()
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(base_url=base_url, connector=connector, headers=headers) as http:

        async def worker() -> None:
            for path, body in queue:
                if time.perf_counter() - started > max_s:
                    return
                result.sent += 1
                began = time.perf_counter()
                try:
                    async with http.post(path, data=body) as response:
                        answer = await response.json(content_type=None)
                except (aiohttp.ClientError, ValueError):
                    result.errors += 1
                    continue
                if response.status == 200 and answer == ACCEPTED:
                    result.latencies.append(time.perf_counter() - began)
                    result.acked_at[path] = time.time()
                else:
                    result.errors += 1

        await asyncio.gather(*[worker() for _ in range(concurrency)])
    result.seconds = time.perf_counter() - started
    return result


async def settled_at(url: str) -> dict[str, float]:
    """CheckoutRequestID -> settled_at (epoch s) of every PAID attempt."""
    runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY}))
    try:
        async with runtime.uow() as uow:
            rows = (
                await uow.session.execute(
                    select(PaymentAttempt.checkout_request_id, PaymentAttempt.settled_at).where(
                        PaymentAttempt.status == "PAID"
                    )
                )
            ).all()
    finally:
        await runtime.close()
    return {str(c): _epoch(at) for c, at in rows if at is not None}


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


async def wait_settled(url: str, count: int, within: float) -> dict[str, float]:
    deadline = time.monotonic() + within
    while True:
        done = await settled_at(url)
        if len(done) >= count or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.25)


def role_env(url: str, port: int, web_port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k in KEEP_ENV},
        "DATABASE_URL": url,
        "PORT": str(port),
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
        "MPESA_API_BASE_URL": f"http://127.0.0.1:{free_port()}",  # never called: no deadline passes
        "LOG_LEVEL": "WARNING",
    }


Requests = list[tuple[str, bytes]]


async def web_and_worker(
    url: str, requests: Requests, concurrency: int, max_s: float, settle_within: float, tmp: str
) -> tuple[TimedLoad, dict[str, float], float, dict[str, float | None]]:
    """The load on ``serve --role web`` while ``--role worker`` settles; then wait for settlement.

    Returns the acknowledgements, settled_at by CheckoutRequestID, the first request's wall time
    and the peak RSS of both processes."""
    web_port, worker_port = free_port(), free_port()
    web_log, worker_log = Path(tmp, "web.log"), Path(tmp, "worker.log")
    web = start([SCRIPT, "serve", "--role", "web"], role_env(url, web_port, web_port), tmp, web_log)
    worker = start(
        [SCRIPT, "serve", "--role", "worker"], role_env(url, worker_port, web_port), tmp, worker_log
    )
    try:
        await wait_up(f"http://127.0.0.1:{web_port}/healthz", web, web_log)
        await wait_up(f"http://127.0.0.1:{worker_port}/healthz", worker, worker_log)
        acks = await timed_load(f"http://127.0.0.1:{web_port}", requests, concurrency, max_s)
        first_request = time.time() - acks.seconds
        settled = await wait_settled(url, acks.ok, settle_within)
        rss = {"web": child_peak_rss_mb(web.pid), "worker": child_peak_rss_mb(worker.pid)}
    finally:
        stop(web)
        stop(worker)
    return acks, settled, first_request, rss


async def bare_handler(requests: Requests, concurrency: int, max_s: float, tmp: str) -> TimedLoad:
    """The same load on callback_ack.py's bare aiohttp handler."""
    port = free_port()
    keep = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
    script = str(Path(__file__).parent / "callback_ack.py")
    bare = start([sys.executable, script, "--bare-server", str(port), "auto"], keep, tmp)
    try:
        await wait_listening(f"http://127.0.0.1:{port}/")
        return await timed_load(f"http://127.0.0.1:{port}", requests, concurrency, max_s)
    finally:
        stop(bare)


async def run_split(
    count: int, concurrency: int, max_s: float, database_url: str | None, settle_within: float
) -> dict[str, Any]:
    """The split run, then the bare handler under the same load."""
    async with scratch_database(database_url) as url:
        requests = await prepare(url, count)
        with tempfile.TemporaryDirectory() as tmp:
            acks, settled, first_request, rss = await web_and_worker(
                url, requests, concurrency, max_s, settle_within, tmp
            )
            bare_load = await bare_handler(requests, concurrency, max_s, tmp)
    checkout_of_path = {
        p: json.loads(body)["Body"]["stkCallback"]["CheckoutRequestID"] for p, body in requests
    }
    lags = [
        settled[checkout_of_path[p]] - at for p, at in acks.acked_at.items() if checkout_of_path[p] in settled
    ]
    last = max(settled.values(), default=first_request)
    return {
        "database": url.split(":", 1)[0],
        "acks": acks,
        "bare": bare_load,
        "settled": len(settled),
        "settled_per_s": len(settled) / (last - first_request) if settled and last > first_request else 0.0,
        "lags_s": lags,
        "peak_rss_mb": {**rss, "load_generator": own_peak_rss_mb()},
    }


def figures(result: dict[str, Any], requests: int) -> dict[str, Any]:
    acks: TimedLoad = result["acks"]
    bare: TimedLoad = result["bare"]
    ms = [s * 1000 for s in acks.latencies]
    lag_ms = [s * 1000 for s in result["lags_s"]]
    ratio = acks.per_s / bare.per_s if bare.per_s else 0.0
    p99 = percentile(ms, 99)
    return {
        "bench": "callback_ack",
        "mode": "roles-split",
        "database": result["database"],
        "requests": requests,
        "sent": acks.sent,
        "ok": acks.ok,
        "errors": acks.errors,
        "ack_per_s": round(acks.per_s, 1),
        "bare_per_s": round(bare.per_s, 1),
        "ratio": round(ratio, 3),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(p99, 2),
        "bare_p99_ms": round(percentile([s * 1000 for s in bare.latencies], 99), 2),
        "settled": result["settled"],
        "settled_per_s": round(result["settled_per_s"], 1),
        "lag_p50_ms": round(percentile(lag_ms, 50), 1),
        "lag_p99_ms": round(percentile(lag_ms, 99), 1),
        "peak_rss_mb": result["peak_rss_mb"],
        "targets_met": {
            "ratio": ratio >= TARGET_RATIO,
            "ack_p99": p99 <= TARGET_P99_MS,
            "all_settled": result["settled"] == acks.ok == acks.sent,
            "zero_errors": acks.errors == 0,
        },
    }


def print_table(f: dict[str, Any], concurrency: int) -> None:
    print(
        f"Callback acknowledgements, roles split: serve --role web + serve --role worker ({f['database']}, "
        f"{concurrency} clients)"
    )
    print(
        f"  web: sent {f['sent']}, acknowledged {f['ok']}, errors {f['errors']}: {f['ack_per_s']:.0f} req/s; "
        f"bare handler {f['bare_per_s']:.0f} req/s; x bare {f['ratio']:.2f}"
    )
    print(
        f"  ack latency p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms "
        f"(bare p99 {f['bare_p99_ms']:.1f} ms)"
    )
    print(
        f"  worker: settled {f['settled']} of {f['ok']}, {f['settled_per_s']:.0f}/s; "
        f"ack -> settled p50 {f['lag_p50_ms']:.0f} ms, p99 {f['lag_p99_ms']:.0f} ms"
    )
    print(f"  peak RSS (MB): {f['peak_rss_mb']}")
    met = f["targets_met"]
    print(
        f"  targets: x bare >= {TARGET_RATIO}: {_word(met['ratio'])}; ack p99 <= {TARGET_P99_MS:.0f} ms: "
        f"{_word(met['ack_p99'])}; every callback settled: {_word(met['all_settled'])}; "
        f"zero errors: {_word(met['zero_errors'])}"
    )


def _word(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main_split(
    requests: int, concurrency: int, max_s: float, database_url: str | None, settle_within: float
) -> int:
    result = asyncio.run(run_split(requests, concurrency, max_s, database_url, settle_within))
    f = figures(result, requests)
    print_table(f, concurrency)
    print(json.dumps(f))
    return 0
