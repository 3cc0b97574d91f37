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
each request counted when its answer arrives; bounded by count and by time.

    .venv/bin/python bench/callback_ack.py [--requests 6000] [--concurrency 50] [--max-seconds 30]

Target: ours >= 0.5 x the bare handler's requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from settlement import checkout_of, seed, success_body  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from core.config import load_settings  # noqa: E402
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

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


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
                async with http.post(path, data=body) as response:
                    answer = await response.json(content_type=None)
                    if response.status == 200 and answer == ACCEPTED:
                        ok += 1

        await asyncio.gather(*[worker() for _ in range(concurrency)])
    return LoadResult(sent, ok, time.perf_counter() - started)


def bare_server(port: int) -> None:
    """The baseline: read the body, answer the acknowledgement."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(ACCEPTED)

    app = web.Application()
    app.router.add_post("/hooks/lnm/{secret}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def app_server(port: int, database_url: str) -> None:
    """Our application as ``serve`` runs it, but with the settlement worker paused (diagnostic)."""
    from core.logging import configure_logging
    from core.services.payments.intake import SettlementWorker
    from smiling_steps.app import create_app

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
    web.run_app(create_app(settings), host="127.0.0.1", port=port, print=None)


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


async def stored_and_settled(url: str) -> tuple[int, int]:
    runtime = build_runtime(load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY}))
    try:
        async with runtime.uow() as uow:
            stored = await uow.session.scalar(select(func.count(CallbackInbox.id)))
            settled = await uow.session.scalar(
                select(func.count(CallbackInbox.id)).where(CallbackInbox.processed_at.is_not(None))
            )
        return int(stored or 0), int(settled or 0)
    finally:
        await runtime.close()


async def run(count: int, concurrency: int, max_s: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        seeded = f"{tmp}/seeded.db"
        requests = await prepare(f"sqlite+aiosqlite:///{seeded}", count)
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        results: dict[str, object] = {}

        # 1. the real server: acknowledging while its settlement worker settles what was stored
        shutil.copy(seeded, f"{tmp}/serve.db")
        url = f"sqlite+aiosqlite:///{tmp}/serve.db"
        port = free_port()
        env = {
            **keep,
            "DATABASE_URL": url,
            "PORT": str(port),
            "SECRET_KEY": SECRET_KEY,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "MPESA_API_BASE_URL": f"http://127.0.0.1:{free_port()}",  # never called: no deadline passes
        }
        server = start([SCRIPT, "serve"], env, tmp)
        try:
            await wait_listening(f"http://127.0.0.1:{port}/healthz")
            results["serve"] = await load(f"http://127.0.0.1:{port}", requests, concurrency, max_s)
        finally:
            stop(server)
        results["stored"], results["settled"] = await stored_and_settled(url)

        # 2. the same application with settlement paused: the acknowledgement path alone
        shutil.copy(seeded, f"{tmp}/ack.db")
        port = free_port()
        app = start(
            [sys.executable, __file__, "--app-server", str(port), f"sqlite+aiosqlite:///{tmp}/ack.db"],
            keep,
            tmp,
        )
        try:
            await wait_listening(f"http://127.0.0.1:{port}/healthz")
            results["ack_only"] = await load(f"http://127.0.0.1:{port}", requests, concurrency, max_s)
        finally:
            stop(app)

        # 3. the baseline
        port = free_port()
        bare = start([sys.executable, __file__, "--bare-server", str(port)], keep, tmp)
        try:
            await wait_listening(f"http://127.0.0.1:{port}/")
            results["bare"] = await load(f"http://127.0.0.1:{port}", requests, concurrency, max_s)
        finally:
            stop(bare)
    return results


def print_table(result: dict[str, object], concurrency: int) -> None:
    bare: LoadResult = result["bare"]  # type: ignore[assignment]
    rows = (
        ("smiling-steps serve (settling meanwhile)", result["serve"]),
        ("same app, settlement paused (diagnostic)", result["ack_only"]),
        ("bare aiohttp handler", bare),
    )
    print(f"Callback acknowledgement throughput ({concurrency} concurrent clients, 127.0.0.1, SQLite)")
    print(f"  {'server':<42} {'sent':>6} {'200 OK':>7} {'seconds':>8} {'req/s':>8} {'x bare':>7}")
    for name, r in rows:
        assert isinstance(r, LoadResult)
        ratio = r.per_s / bare.per_s if bare.per_s else 0.0
        print(f"  {name:<42} {r.sent:>6} {r.ok:>7} {r.seconds:>8.2f} {r.per_s:>8.0f} {ratio:>7.2f}")
    serve: LoadResult = result["serve"]  # type: ignore[assignment]
    ratio = serve.per_s / bare.per_s if bare.per_s else 0.0
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"  target: serve >= {TARGET_RATIO} x bare: {verdict} ({ratio:.2f})")
    print(f"  serve: callbacks stored {result['stored']}, settled before shutdown {result['settled']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--app-server", nargs=2, metavar=("PORT", "URL"), help=argparse.SUPPRESS)
    # issue 13: `serve --role web` + `--role worker` against the bare handler (bench/callback_roles.py)
    parser.add_argument("--roles", choices=("all", "split"), default="all")
    parser.add_argument("--database-url", help="--roles split: a postgresql+asyncpg:// server URL")
    parser.add_argument("--settle-within", type=float, default=120.0, help="--roles split: bound (s)")
    args = parser.parse_args(argv)
    if args.roles == "split":
        from callback_roles import main_split

        return main_split(
            args.requests, args.concurrency, args.max_seconds, args.database_url, args.settle_within
        )
    if args.app_server:
        app_server(int(args.app_server[0]), args.app_server[1])
        return 0
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    result = asyncio.run(run(args.requests, args.concurrency, args.max_seconds))
    print_table(result, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
