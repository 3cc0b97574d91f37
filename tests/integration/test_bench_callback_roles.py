"""Smoke test of `bench/callback_ack.py --roles split` (issue 13): one `serve --role web` and one
`serve --role worker` on both databases take a few callbacks; every one is acknowledged without
error and settled by the worker, and the JSON line carries the figures (no timing is asserted)."""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS
from tests.support.bench import run_bench


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_split_roles_acknowledge_and_settle_every_callback(backend: str) -> None:
    figures = run_bench(
        "callback_ack.py", "--roles", "split", "--requests", "20", "--concurrency", "5", backend=backend
    )
    assert figures["bench"] == "callback_ack" and figures["mode"] == "roles-split"
    assert figures["database"].startswith(backend)
    assert figures["sent"] == figures["ok"] == figures["settled"] == 20 and figures["errors"] == 0
    assert figures["targets_met"]["all_settled"] and figures["targets_met"]["zero_errors"]
    assert figures["ack_per_s"] > 0 and figures["bare_per_s"] > 0 and figures["p50_ms"] <= figures["p99_ms"]
    assert figures["lag_p50_ms"] <= figures["lag_p99_ms"]
    assert set(figures["peak_rss_mb"]) == {"web", "worker", "load_generator"}
    assert all(mb and mb > 0 for mb in figures["peak_rss_mb"].values())
