"""Smoke test of bench/initiation.py (issue 13): a tiny burst of Pay presses, on both paths and
both databases, ends with one JSON line whose correctness fields hold (no timing is asserted)."""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS
from tests.support.bench import run_bench


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", ["service", "sms"])
def test_a_small_burst_of_pay_presses_reaches_the_simulator_once_each_and_on_the_right_booking(
    path: str, backend: str
) -> None:
    figures = run_bench("initiation.py", "--count", "4", "--path", path, backend=backend)
    assert figures["bench"] == "initiation" and figures["path"] == path and figures["count"] == 4
    assert figures["database"].startswith(backend)
    assert figures["pushes"] == figures["attempts"] == 4
    assert figures["mismatched"] == 0 and figures["bookings_without_one_attempt"] == 0
    assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert all(mb and mb > 0 for mb in figures["peak_rss_mb"].values()), figures["peak_rss_mb"]
    if path == "sms":
        assert figures["statuses"] == {"http_200": 4, "http_other": 0, "replied": 4}
        assert figures["sms_replies_check_your_phone"] == 4
    else:
        assert figures["statuses"] == {"AWAITING_CUSTOMER": 4}
