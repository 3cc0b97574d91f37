"""Smoke tests of bench/settlement.py and bench/callback_ack.py: a tiny run ends with one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_settlement_benchmark_settles_a_small_inbox_and_ends_with_one_json_line() -> None:
    figures = bench("settlement.py", "--count", "40")
    assert figures["bench"] == "settlement" and figures["db"] == "sqlite"
    assert figures["count"] == figures["paid"] == figures["batched"] == 40
    assert figures["workers"] == 1 and figures["stored_fields"] is True
    assert figures["settled_per_s"] > 0 and figures["target_per_s"] == 2000


def test_the_settlement_benchmark_also_settles_rows_stored_before_the_parsed_fields() -> None:
    figures = bench("settlement.py", "--count", "20", "--raw-only", "--batch-size", "0")
    assert figures["paid"] == 20 and figures["stored_fields"] is False and figures["batched"] == 0


@pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL not set (PostgreSQL tests run in .ci/run)")
def test_two_settlement_worker_processes_share_a_postgresql_inbox() -> None:
    assert PG_URL
    figures = bench("settlement.py", "--count", "60", "--workers", "2", "--database-url", PG_URL)
    assert figures["db"] == "postgresql" and figures["workers"] == 2 and figures["paid"] == 60
    assert sum(sum(w.values()) for w in figures["per_worker"]) == 60  # each row settled once
    assert figures["target_per_s"] == 1500


def test_the_callback_benchmark_acknowledges_stores_and_settles_a_small_burst() -> None:
    figures = bench("callback_ack.py", "--requests", "40", "--concurrency", "4", "--max-seconds", "60")
    assert figures["bench"] == "callback_ack" and figures["db"] == "sqlite"
    assert figures["sent"] == figures["serve"]["ok"] == figures["stored"] == 40
    assert figures["errors"] == 0 and figures["bare"]["ok"] == figures["ack_only"]["ok"] == 40
    assert 0 <= figures["settled"] <= 40
    expected = {"ack_per_s", "bare_per_s", "ratio", "p99_ms", "settled_per_s", "lag_p50_ms", "lag_p99_ms"}
    assert expected <= set(figures)


@pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL not set (PostgreSQL tests run in .ci/run)")
def test_the_callback_benchmark_runs_serve_on_a_postgresql_copy() -> None:
    assert PG_URL
    figures = bench("callback_ack.py", "--requests", "30", "--concurrency", "3", "--rows", "serve",
                    "--database-url", PG_URL, "--event-loop", "asyncio")
    assert figures["db"] == "postgresql" and figures["event_loop"] == "asyncio"
    assert figures["sent"] == figures["stored"] == 30 and figures["errors"] == 0
    assert "bare" not in figures
