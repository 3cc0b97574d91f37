"""Callback acknowledgement throughput: POST /hooks/lnm/{secret} on the real server vs a bare handler.

Our side is the real ``smiling-steps serve`` process (one process, one event loop, as in
production) on a fresh SQLite database holding N live attempts; every request is a valid,
distinct success callback for one of them (right secret, CheckoutRequestID and amount), so
each is verified, stored in the inbox (group commit) and acknowledged - and the settlement
worker in the same process settles them meanwhile, as it would. The baseline is a bare
aiohttp handler in its own process that reads the body and answers the same JSON.

A third row isolates the acknowledgement path: the same application (``create_app``, run
the way ``serve`` runs it) with the settlement worker paused, so nothing competes with the
intake for the event loop and the SQLite write lock. This is a diagnostic, not a mode of
the product.

The load comes from this process: C concurrent aiohttp clients over keep-alive connections,
each request counted (and its latency taken) when its answer arrives; bounded by count and by
time. After the serve run the inbox tells how many callbacks were settled before shutdown,
at what rate, and the lag from storing each callback to settling it (p50/p99).

    .venv/bin/python bench/callback_ack.py [--requests 6000] [--concurrency 50] [--max-seconds 30]
        [--database-url URL] [--event-loop auto|uvloop|asyncio] [--rows serve,ack_only,bare]

``--database-url`` (a PostgreSQL server URL): the servers use throw-away databases on it
(one seeded, then one copy per server row) instead of SQLite files. ``--event-loop`` is
passed to the servers as EVENT_LOOP. Each server row is one entry of ``SERVERS`` (how to
start it, which database copy it needs), so a row for other processes (e.g. ``serve --role
web`` plus ``--role worker``) is one more entry. Ends with one JSON line of the figures.

Target: ours >= 0.5 x the bare handler's requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from settlement import checkout_of, scratch_database, seed, success_body  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.db.engine import create_engine  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.db.models import CallbackInbox  # noqa: E402
from core.runtime import build_runtime  # noqa: E402
from core.services.payments.secrets import callback_secret_hash  # noqa: E402

SECRET_KEY = "bench-secret-key-0123456789abcdef"
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
TARGET_RATIO = 0.5
SCRIPT = shutil.which("smiling-steps", path=str(Path(sys.executable).parent)) or "smiling-steps"


def secret_of(i: int) -> str:
    return f"bench-callback-secret-{i:08d}"


@dataclass
class LoadResult:
    sent: int
    ok: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.sent - self.ok

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_listening(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def load(
    base_url: str, requests: list[tuple[str, bytes]], concurrency: int, max_s: float
) -> LoadResult:
    """POST every (path, body) with ``concurrency`` workers; stop early after ``max_s``."""
    queue = iter(requests)
    ok = sent = 0
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + max_s
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        base_url=base_url, connector=connector, headers={"Content-Type": "application/json"}
    ) as http:

        async def worker() -> None:
            nonlocal ok, sent
            for path, body in queue:
                if time.perf_counter() > stop_at:
                    return
                sent += 1
                asked = time.perf_counter()
                async with http.post(path, data=body) as response:
                    answer = await response.json(content_type=None)
                    if response.status == 200 and answer == ACCEPTED:
                        ok += 1
                        latencies.append((time.perf_counter() - asked) * 1000)

        await asyncio.gather(*[worker() for _ in range(concurrency)])
    return LoadResult(sent, ok, time.perf_counter() - started, latencies)


def bare_server(port: int, event_loop: str) -> None:
    """The baseline: read the body, answer the acknowledgement (on the same kind of loop)."""
    from smiling_steps.server import new_event_loop

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(ACCEPTED)

    app = web.Application()
    app.router.add_post("/hooks/lnm/{secret}", handle)
    loop = new_event_loop(event_loop)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


def app_server(port: int, database_url: str, event_loop: str) -> None:
    """Our application as ``serve`` runs it, but with the settlement worker paused (diagnostic)."""
    from core.logging import configure_logging
    from core.services.payments.intake import SettlementWorker
    from smiling_steps.app import create_app
    from smiling_steps.server import run_server

    async def paused(_self: SettlementWorker, stop: asyncio.Event) -> None:
        await stop.wait()

    SettlementWorker.run = paused  # type: ignore[method-assign]
    settings = load_settings(
        {
            "DATABASE_URL": database_url,
            "PORT": str(port),
            "SECRET_KEY": SECRET_KEY,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "MPESA_API_BASE_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    configure_logging(settings.log_level)
    run_server(create_app(settings), "127.0.0.1", port, event_loop=event_loop)


def start(argv: list[str], env: dict[str, str], cwd: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def prepare(url: str, count: int) -> list[tuple[str, bytes]]:
    runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY}))
    try:
        await upgrade(runtime.engine)
        ids = await seed(
            runtime,
            count,
            secret_hash_of=lambda i: callback_secret_hash(SECRET_KEY, secret_of(i)),
            store_callbacks=False,
        )
    finally:
        await runtime.close()
    return [
        (f"/hooks/lnm/{secret_of(i)}", success_body(checkout_of(i), f"A{i:09d}", f"2547{i:08d}").encode())
        for i in ids
    ]


@dataclass
class InboxFigures:
    stored: int
    settled: int
    settled_per_s: float
    lag_p50_ms: float
    lag_p99_ms: float


async def inbox_figures(url: str) -> InboxFigures:
    """How many callbacks were stored and settled, how fast, and the store-to-settle lag."""
    runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY}))
    try:
        async with runtime.uow() as uow:
            stored = await uow.session.scalar(select(func.count(CallbackInbox.id)))
            rows = (
                await uow.session.execute(
                    select(CallbackInbox.received_at, CallbackInbox.processed_at).where(
                        CallbackInbox.processed_at.is_not(None)
                    )
                )
            ).all()
    finally:
        await runtime.close()
    pairs = [(got, done) for got, done in rows if done is not None]
    lags = [(done - got).total_seconds() * 1000 for got, done in pairs]
    span = (max(d for _g, d in pairs) - min(g for g, _d in pairs)).total_seconds() if pairs else 0.0
    return InboxFigures(
        stored=int(stored or 0),
        settled=len(pairs),
        settled_per_s=len(pairs) / span if span else 0.0,
        lag_p50_ms=statistics.median(lags) if lags else 0.0,
        lag_p99_ms=percentile(lags, 99),
    )


# -- databases: one seeded, one copy per server row ---------------------------------------------


@contextlib.asynccontextmanager
async def database_copies(seeded: str, tmp: str) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """``copy(name)`` makes a fresh copy of the seeded database and returns its URL
    (a file copy for SQLite; ``CREATE DATABASE … TEMPLATE`` on PostgreSQL, dropped after)."""
    made: list[str] = []
    if seeded.startswith("sqlite"):

        async def copy_sqlite(name: str) -> str:
            shutil.copy(seeded.removeprefix("sqlite+aiosqlite:///"), f"{tmp}/{name}.db")
            return f"sqlite+aiosqlite:///{tmp}/{name}.db"

        yield copy_sqlite
        return
    base = make_url(seeded)

    async def admin(sql: str) -> None:
        engine = create_engine(
            base.set(database="postgres").render_as_string(hide_password=False), isolation_level="AUTOCOMMIT"
        )
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    async def copy_pg(name: str) -> str:
        database = f"{base.database}_{name}_{secrets.token_hex(3)}"
        await admin(f'CREATE DATABASE "{database}" TEMPLATE "{base.database}"')
        made.append(database)
        return base.set(database=database).render_as_string(hide_password=False)

    try:
        yield copy_pg
    finally:
        for database in made:
            await admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# -- the server rows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """One row of the table: how to start it (argv, env) given a port and a database copy."""

    key: str
    title: str
    needs_database: bool
    argv: Callable[[int, str, str], list[str]]  # (port, database URL, event loop) -> argv
    settles: bool = False  # its inbox is read afterwards (stored, settled, lag)


SERVERS: list[Server] = [
    Server("serve", "smiling-steps serve (settling meanwhile)", True,
           lambda _port, _url, _loop: [SCRIPT, "serve"], settles=True),
    Server("ack_only", "same app, settlement paused (diagnostic)", True,
           lambda port, url, loop: [sys.executable, __file__, "--app-server", str(port), url, loop]),
    Server("bare", "bare aiohttp handler", False,
           lambda port, _url, loop: [sys.executable, __file__, "--bare-server", str(port), loop]),
]


async def run_server_row(
    server: Server, url: str, requests: list[tuple[str, bytes]], args: argparse.Namespace, tmp: str
) -> LoadResult:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    port = free_port()
    env = {
        **keep,
        "DATABASE_URL": url,
        "PORT": str(port),
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "MPESA_API_BASE_URL": f"http://127.0.0.1:{free_port()}",  # never called: no deadline passes
        "EVENT_LOOP": args.event_loop,
    }
    process = start(server.argv(port, url, args.event_loop), env, tmp)
    try:
        await wait_listening(f"http://127.0.0.1:{port}/healthz")
        return await load(f"http://127.0.0.1:{port}", requests, args.concurrency, args.max_seconds)
    finally:
        stop(process)


async def run(args: argparse.Namespace) -> dict[str, object]:
    wanted = [s for s in SERVERS if s.key in args.rows.split(",")]
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with scratch_database(args.database_url) as seeded:
            requests = await prepare(seeded, args.requests)
            async with database_copies(seeded, tmp) as copy:
                for server in wanted:
                    url = await copy(server.key) if server.needs_database else ""
                    results[server.key] = await run_server_row(server, url, requests, args, tmp)
                    if server.settles:
                        results[f"{server.key}_inbox"] = await inbox_figures(url)
    return results


def print_table(result: dict[str, object], args: argparse.Namespace, db: str) -> None:
    bare = result.get("bare")
    print(f"Callback acknowledgement throughput ({args.concurrency} concurrent clients, 127.0.0.1, {db}, "
          f"EVENT_LOOP={args.event_loop})")
    print(f"  {'server':<42} {'sent':>6} {'200 OK':>7} {'seconds':>8} {'req/s':>8} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'x bare':>7}")
    for server in SERVERS:
        r = result.get(server.key)
        if not isinstance(r, LoadResult):
            continue
        ratio = r.per_s / bare.per_s if isinstance(bare, LoadResult) and bare.per_s else 0.0
        print(f"  {server.title:<42} {r.sent:>6} {r.ok:>7} {r.seconds:>8.2f} {r.per_s:>8.0f} "
              f"{r.percentile_ms(50):>7.1f} {r.percentile_ms(99):>7.1f} {ratio:>7.2f}")
    serve, inbox = result.get("serve"), result.get("serve_inbox")
    if isinstance(serve, LoadResult) and isinstance(bare, LoadResult) and bare.per_s:
        ratio = serve.per_s / bare.per_s
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"  target: serve >= {TARGET_RATIO} x bare: {verdict} ({ratio:.2f})")
    if isinstance(inbox, InboxFigures):
        print(f"  serve: callbacks stored {inbox.stored}, settled before shutdown {inbox.settled} "
              f"({inbox.settled_per_s:.0f}/s); store-to-settle lag p50 {inbox.lag_p50_ms:.0f} ms, "
              f"p99 {inbox.lag_p99_ms:.0f} ms")


def json_line(result: dict[str, object], args: argparse.Namespace, db: str) -> str:
    """The one machine-readable line the benchmark ends with."""
    figures: dict[str, object] = {"bench": "callback_ack", "db": db, "event_loop": args.event_loop,
                                  "requests": args.requests, "concurrency": args.concurrency}
    for server in SERVERS:
        r = result.get(server.key)
        if isinstance(r, LoadResult):
            figures[server.key] = {
                "sent": r.sent, "ok": r.ok, "errors": r.errors, "per_s": round(r.per_s, 1),
                "p50_ms": round(r.percentile_ms(50), 2), "p99_ms": round(r.percentile_ms(99), 2),
            }
    serve, bare, inbox = result.get("serve"), result.get("bare"), result.get("serve_inbox")
    if isinstance(serve, LoadResult):
        figures |= {"ack_per_s": round(serve.per_s, 1), "p99_ms": round(serve.percentile_ms(99), 2),
                    "sent": serve.sent, "errors": serve.errors}
        if isinstance(bare, LoadResult) and bare.per_s:
            figures |= {"bare_per_s": round(bare.per_s, 1), "ratio": round(serve.per_s / bare.per_s, 3)}
    if isinstance(inbox, InboxFigures):
        figures |= {"stored": inbox.stored, "settled": inbox.settled,
                    "settled_per_s": round(inbox.settled_per_s, 1),
                    "lag_p50_ms": round(inbox.lag_p50_ms, 1), "lag_p99_ms": round(inbox.lag_p99_ms, 1)}
    return json.dumps(figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite files)")
    parser.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    parser.add_argument("--rows", default=",".join(s.key for s in SERVERS),
                        help="which server rows to run (default: all)")
    parser.add_argument("--bare-server", nargs=2, metavar=("PORT", "LOOP"), help=argparse.SUPPRESS)
    parser.add_argument("--app-server", nargs=3, metavar=("PORT", "URL", "LOOP"), help=argparse.SUPPRESS)
    # issue 13: `serve --role web` + `--role worker` against the bare handler (bench/callback_roles.py)
    parser.add_argument("--roles", choices=("all", "split"), default="all")
    parser.add_argument("--settle-within", type=float, default=120.0, help="--roles split: bound (s)")
    args = parser.parse_args(argv)
    if args.roles == "split":
        from callback_roles import main_split

        return main_split(
            args.requests, args.concurrency, args.max_seconds, args.database_url, args.settle_within
        )
    if args.app_server:
        app_server(int(args.app_server[0]), args.app_server[1], args.app_server[2])
        return 0
    if args.bare_server:
        bare_server(int(args.bare_server[0]), args.bare_server[1])
        return 0
    unknown = set(args.rows.split(",")) - {s.key for s in SERVERS}
    if unknown or args.requests < 1:
        parser.error(f"--rows: unknown {sorted(unknown)}" if unknown else "--requests must be at least 1")
    db = "postgresql" if args.database_url else "sqlite"
    result = asyncio.run(run(args))
    print_table(result, args, db)
    print(json_line(result, args, db))
    return 0


if __name__ == "__main__":
    sys.exit(main())
