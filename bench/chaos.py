"""Chaos run (issue 14): bookings paid concurrently while the service is killed and M-Pesa misbehaves.

    .venv/bin/python -m bench chaos --seed 7                      # 1 000 bookings, SQLite, 3 kills
    .venv/bin/python -m bench chaos --seed 7 --bookings 30 --kills 1            # the smoke size
    .venv/bin/python -m bench chaos --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python -m bench chaos --pg-outage        # own PostgreSQL cluster, stopped mid-run

Clients book by SMS through the service's real Africa's Talking hook, practitioners approve by
SMS (A<code>), clients PAY with their own number; every push follows a script drawn from the
seed (``OUTCOMES``) that the Daraja stand-in plays. Meanwhile service processes are SIGKILLed
and restarted (``--kills``, one of them while callbacks are being delivered), Daraja's OAuth
goes down once, and with ``--pg-outage`` PostgreSQL stops for a few seconds. The end-of-run
checks are in bench/chaos_check.py. The last line is one JSON object; exit 1 on any violation.
The seed drives every choice of the run (the clients, outcomes, kill moments); the machine's
timing does not replay, so a replay repeats the same plan, not the same interleaving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import chaos_world  # noqa: E402
from bench.chaos_check import check_database, scan_logs  # noqa: E402
from bench.chaos_clients import ClientPlan, Hook, book_and_pay, practitioner  # noqa: E402
from bench.chaos_stack import (  # noqa: E402
    SCRIPT,
    PrivateCluster,
    ServiceProcess,
    StandIns,
    cleanup_everything,
    free_port,
    new_secrets,
    serve_has_roles,
    service_env,
    start_stand_ins,
)
from bench.settlement import scratch_database  # noqa: E402

DEADLINE_S = 5  # MPESA_PAYMENT_DEADLINE_SECONDS: the watchdog queries 5-10 s after a push
LATE_DELAY_S = 16.0  # late_success / delayed_callback: after the watchdog's query said failure


@asynccontextmanager
async def database(
    args: argparse.Namespace, workdir: Path
) -> AsyncIterator[tuple[str, PrivateCluster | None]]:
    """A fresh database: SQLite file, throw-away PostgreSQL database, or a private cluster."""
    if args.pg_outage:
        cluster = PrivateCluster(workdir / "pg")
        cluster.init()
        try:
            yield cluster.url(), cluster
        finally:
            cluster.destroy()
        return
    if args.database_url:
        async with scratch_database(args.database_url) as url:
            yield url, None
        return
    yield f"sqlite+aiosqlite:///{workdir}/chaos.db", None


def start_processes(
    args: argparse.Namespace, url: str, stand_ins: StandIns, keys: dict[str, str], workdir: Path
) -> list[ServiceProcess]:
    """SQLite: one process; PostgreSQL: two web + two worker (or two `all` before the roles exist)."""
    if url.startswith("sqlite"):
        roles: list[str | None] = [None]
    elif serve_has_roles():
        roles = ["web", "web", "worker", "worker"]
    else:
        roles = [None, None]
    ports = [free_port() for _ in roles]
    web_port = next(p for p, r in zip(ports, roles, strict=True) if r in (None, "web"))
    processes = []
    for i, (port, role) in enumerate(zip(ports, roles, strict=True)):
        env = service_env(url, port, stand_ins, keys, workdir, DEADLINE_S)
        if role == "worker":  # a worker's re-push must name a callback URL that a web process serves
            env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{web_port}"
        processes.append(ServiceProcess(f"serve{i + 1}{'-' + role if role else ''}", env, workdir, role))
    for process in processes:
        process.start()
    return processes


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    os.chmod(workdir, 0o755)  # a private cluster runs as user postgres and lives inside
    async with AsyncExitStack() as stack:
        url, cluster = await stack.enter_async_context(database(args, workdir))
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "DATABASE_URL": url}
        await asyncio.to_thread(
            subprocess.run, [SCRIPT, "db", "upgrade"], env=env, cwd=workdir, check=True, capture_output=True
        )
        practitioners = await chaos_world.seed_practice(url, args.bookings)
        stand_ins = await start_stand_ins(late_delay=LATE_DELAY_S, callback_retries=args.callback_retries)
        stack.push_async_callback(stand_ins.close)
        keys = new_secrets()
        processes = start_processes(args, url, stand_ins, keys, workdir)
        stack.callback(lambda: [p.stop() for p in processes])
        await asyncio.gather(*(p.wait_healthy() for p in processes))
        plans = chaos_world.draw_clients(rng, args.bookings, set(practitioners))
        for plan in plans:
            stand_ins.daraja.plans.add(plan.phone, [chaos_world.script_for(plan)])
        hook = Hook(
            lambda: [p.base_url for p in processes if p.serves_http_hooks and p.alive()],
            keys["at_webhook_secret"],
            args.seed,
        )
        chaos = chaos_world.Chaos(rng, processes, stand_ins, cluster, args.bookings, args.kills)
        report = await drive(args, hook, stand_ins, plans, practitioners, chaos)
        report["settled_within_s"] = await chaos_world.wait_until_settled(url, stand_ins, args.settle_timeout)
        for process in processes:
            process.stop()
        report.update(
            await final_checks(url, workdir, processes, stand_ins, keys, plans, practitioners, chaos)
        )
    report["duration_s"] = round(time.monotonic() - started, 1)
    if args.keep:
        report["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


async def drive(
    args: argparse.Namespace,
    hook: Hook,
    stand_ins: StandIns,
    plans: list[ClientPlan],
    practitioners: dict[str, int],
    chaos: chaos_world.Chaos,
) -> dict[str, Any]:
    """Run every client (at most ``--concurrency`` at once), the practitioners and the chaos."""
    stop = asyncio.Event()
    approved: list[str] = []
    helpers = [
        asyncio.create_task(
            practitioner(hook, stand_ins, phone, i, random.Random(args.seed + i), stop, approved)
        )
        for phone, i in practitioners.items()
    ]
    chaos_task = asyncio.create_task(chaos.run(stop))
    gate = asyncio.Semaphore(args.concurrency)

    async def one(plan: ClientPlan) -> None:
        async with gate:
            await book_and_pay(hook, stand_ins, plan, len(practitioners))

    await asyncio.gather(*(one(plan) for plan in plans))
    await chaos.finish()  # kills not yet made (few pushes reached their moment) happen now
    stop.set()
    await asyncio.gather(chaos_task, *helpers)
    await hook.http.aclose()
    return {"approved": len(approved), "sms_posts": hook.posts, "sms_reposts": hook.reposts}


async def final_checks(
    url: str,
    workdir: Path,
    processes: list[ServiceProcess],
    stand_ins: StandIns,
    keys: dict[str, str],
    plans: list[ClientPlan],
    practitioners: dict[str, int],
    chaos: chaos_world.Chaos,
) -> dict[str, Any]:
    evidence = chaos_world.evidence(stand_ins, keys["secret_key"])
    violations, counts = await check_database(url, evidence)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "DATABASE_URL": url}
    verify = await asyncio.to_thread(
        subprocess.run,
        [SCRIPT, "audit", "verify"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if verify.returncode != 0:
        violations.append(f"audit verify: {verify.stdout.strip()} {verify.stderr.strip()[-300:]}")
    lines: list[str] = []
    for process in processes:
        lines += process.log_path.read_text(errors="replace").splitlines()
    phones = [p.phone for p in plans] + list(practitioners)
    violations += scan_logs(lines, chaos_world.secrets_to_hide(keys, stand_ins, evidence, chaos), phones)
    statuses = await chaos_world.final_status_by_reference(url)
    per_outcome: dict[str, Counter[str]] = {}
    for plan in plans:
        final = statuses.get(plan.reference or "", "not booked" if plan.stalled else "?")
        per_outcome.setdefault(plan.outcome, Counter())[final] += 1
    return {
        **counts,
        "outcomes": {k: dict(v) for k, v in sorted(per_outcome.items())},
        "stalled": dict(Counter(p.stalled for p in plans if p.stalled)),
        "stalled_samples": [f"{p.stalled}: {_masked(p.last_reply)}" for p in plans if p.stalled][:5],
        "audit_verify": verify.stdout.strip(),
        "log_lines_scanned": len(lines),
        "pushes_processed": len(evidence.push_urls),
        "callbacks": dict(Counter(str(e.get("status") or "error") for e in evidence.callbacks)),
        "sms_sent": sum(evidence.sms_to.values()),
        "emails_sent": sum(evidence.mail_to.values()),
        **chaos.summary(evidence),
        "violation_list": violations[:50],
        "violations": len(violations),
    }


def _masked(text: str | None) -> str:
    return re.sub(r"\d{9,}", "<number>", text or "")[:200]


def print_report(report: dict[str, Any]) -> None:
    print(f"bookings by status: {report.get('bookings')}")
    print(f"attempts by status: {report.get('attempts')}")
    for outcome, finals in report.get("outcomes", {}).items():
        print(f"  {outcome:<20} {finals}")
    print(
        f"kills: {report.get('kills')} "
        f"(one with {report.get('burst_kill_callbacks_last_s')} callbacks in its last second); "
        f"OAuth outages: {report.get('oauth_outages')}; PostgreSQL outage: {report.get('pg_outage_s')} s, "
        f"callbacks answered 503 then accepted: {report.get('callbacks_503_then_accepted')}"
    )
    print(f"stalled conversations: {report.get('stalled')}; audit verify: {report.get('audit_verify')}")
    for sample in report.get("stalled_samples", []):
        print(f"  stalled: {sample}")
    for line in report.get("violation_list", []):
        print(f"VIOLATION {line}")
    print(f"violations: {report['violations']}  duration: {report['duration_s']} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="drives every random choice (printed)")
    parser.add_argument("--bookings", type=int, default=1000)
    parser.add_argument(
        "--database-url", help="a PostgreSQL server: the run uses a throw-away database on it"
    )
    parser.add_argument(
        "--pg-outage",
        action="store_true",
        help="run on a private PostgreSQL cluster and stop it for a few seconds mid-run",
    )
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of a service process (default 3)")
    parser.add_argument("--concurrency", type=int, default=60, help="clients in conversation at once")
    parser.add_argument(
        "--callback-retries", type=int, default=6, help="Daraja's retries of a refused callback"
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=240.0, help="seconds to wait for the end state"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite file)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**6)
    if args.pg_outage and args.database_url:
        parser.error("--pg-outage runs its own PostgreSQL cluster; leave out --database-url")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    where = (
        "private PostgreSQL cluster" if args.pg_outage else ("PostgreSQL" if args.database_url else "SQLite")
    )
    print(f"chaos run: seed {args.seed}, {args.bookings} bookings, {where}, {args.kills} kills", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally below runs
    try:
        report = asyncio.run(run(args))
    finally:
        cleanup_everything()
    report = {"seed": args.seed, "database": where, **report}
    print_report(report)
    hidden = ("violation_list", "stalled_samples")
    print(json.dumps({k: v for k, v in report.items() if k not in hidden}, sort_keys=True))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
