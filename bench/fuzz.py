"""Fuzz every public endpoint at volume and print what came back (issue 14, fuzzing and abuse).

    .venv/bin/python bench/fuzz.py                      # 10 000 cases per endpoint, fresh SQLite
    .venv/bin/python bench/fuzz.py --count 50           # the smoke size the test suite runs
    .venv/bin/python bench/fuzz.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

The whole application (local mode: webhooks, admin site, bot, stand-ins) runs on 127.0.0.1 on a
fresh migrated database; Hypothesis draws the requests from the strategies the tests use
(tests/support/fuzz.py, tests/support/fuzz_admin.py): mutated real Daraja and Africa's Talking
bodies, raw bytes, wrong content types, oversized and deeply nested bodies, and /admin forms
from a signed-in session. Every case is checked: a 5xx is a violation, and so is any changed row
after a refused (4xx) request; /healthz is asked every 100 cases and at the end. One line per
endpoint, then one JSON line (sent, answers by status class, violations); exit status 1 on any
violation. ``--seed`` replays a run.
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

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bench.settlement import scratch_database  # noqa: E402
from core.db.engine import create_engine  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from tests.support.fuzz import Answer, LiveApp, Tally, check_case, live_app, webhooks  # noqa: E402
from tests.support.fuzz_admin import ADMIN_FORMS, SIGN_IN_RECORDS, login_cases, send  # noqa: E402

HEALTH_EVERY = 100


def fuzz_one(app: LiveApp, label: str, cases: st.SearchStrategy[Any], deliver: Callable[[Any], Answer],
             count: int, run_seed: int, skip: frozenset[str] = frozenset()) -> Tally:
    """Send ``count`` generated cases to one endpoint and tally the answers."""
    tally = Tally()

    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @seed(run_seed)
    @given(case=cases)
    def one(case: Any) -> None:
        check_case(app, lambda: deliver(case), tally, label, skip)
        if tally.sent % HEALTH_EVERY == 0 and not app.healthy():
            tally.violations.append(f"{label}: /healthz stopped answering after {tally.sent} cases")

    one()
    return tally


Endpoint = tuple[str, st.SearchStrategy[Any], Callable[[Any], Answer], frozenset[str]]


def endpoints(app: LiveApp) -> list[Endpoint]:
    """label, cases, how to send one, tables a refusal may write on purpose."""
    out: list[Endpoint] = []
    for label, (path, headers, bodies) in webhooks().items():
        out.append((label, bodies, lambda body, p=path, h=headers: app.post(p, body, headers=h), frozenset()))
    out.append(("admin login", login_cases, lambda case: send(app, case), SIGN_IN_RECORDS))
    for label, cases in ADMIN_FORMS.items():
        out.append((label, cases, lambda case: send(app, case), frozenset()))
    return out


def run(database_url: str, count: int, run_seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    per_endpoint: dict[str, dict[str, Any]] = {}
    violations: list[str] = []
    with live_app(database_url) as app:
        for label, cases, deliver, skip in endpoints(app):
            t0 = time.perf_counter()
            tally = fuzz_one(app, label, cases, deliver, count, run_seed, skip)
            per_endpoint[label] = {"sent": tally.sent, **dict(sorted(tally.by_class.items())),
                                   "violations": len(tally.violations)}
            violations += tally.violations
            print(f"{label:24} sent {tally.sent:6}  {dict(sorted(tally.by_class.items()))}  "
                  f"violations {len(tally.violations)}  {time.perf_counter() - t0:6.1f} s", flush=True)
        healthy = app.healthy()
    if not healthy:
        violations.append("/healthz did not answer 200 at the end")
    by_class: dict[str, int] = {}
    for figures in per_endpoint.values():
        for key, value in figures.items():
            if key.endswith("xx"):
                by_class[key] = by_class.get(key, 0) + value
    for line in violations[:20]:
        print("VIOLATION", line, flush=True)
    return {
        "count_per_endpoint": count, "seed": run_seed, "endpoints": len(per_endpoint),
        "database": database_url.split(":", 1)[0],
        "sent": sum(f["sent"] for f in per_endpoint.values()), "by_class": dict(sorted(by_class.items())),
        "healthz_ok_at_end": healthy, "violations": len(violations),
        "seconds": round(time.perf_counter() - started, 1), "per_endpoint": per_endpoint,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    async with scratch_database(args.database_url) as url:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        return await asyncio.to_thread(run, url, args.count, args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=10_000, help="cases per endpoint (default 10 000)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (printed at the start)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL (default: SQLite)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    print(f"fuzz: seed {args.seed}, {args.count} cases per endpoint", flush=True)
    result = asyncio.run(_main(args))
    print(json.dumps(result), flush=True)
    return 1 if result["violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
