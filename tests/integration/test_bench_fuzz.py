"""bench/fuzz.py runs end to end at a smoke size and reports zero violations (issue 14)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_fuzz_bench_sends_every_endpoint_its_cases_and_finds_no_violation() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz.py"), "--count", "50", "--seed", "14"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout[-3000:]
    assert last["violations"] == 0
    assert last["healthz_ok_at_end"] is True
    assert last["endpoints"] == 13
    assert all(figures["sent"] == 50 for figures in last["per_endpoint"].values()), last["per_endpoint"]
    assert last["sent"] == sum(last["by_class"].values())
    assert "5xx" not in last["by_class"]
