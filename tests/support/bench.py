"""Running a bench/ script at a smoke size from a test: its last line is the JSON of its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str, backend: str = "sqlite") -> dict[str, Any]:
    """Run ``bench/<script>`` (on a throw-away PostgreSQL database when ``backend`` says so)."""
    database = ["--database-url", PG_URL] if backend == "postgresql" and PG_URL else []
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, *database],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])
