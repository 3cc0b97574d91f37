"""Smoke test of bench/admin_queries.py: a small run prints its table and one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_admin_queries_benchmark_runs_small_and_ends_with_one_json_line():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "admin_queries.py"), "--count", "200", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == 200 and result["csv_rows"] == 180  # the production 90 %
    assert {"list (page 1)", "filter q=receipt", "detail", "csv export (all production)"} <= set(result["ms"])
    assert result["csv_peak_bytes"] > 0


def test_the_benchmark_refuses_a_count_it_cannot_seed():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "admin_queries.py"), "--count", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "--count must be at least 20" in done.stderr
