"""Smoke test of bench/conversation.py (issue 13): a few whole booking conversations on Telegram and
SMS, on both databases, end with one JSON line and every conversation completes (no timing asserted)."""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS
from tests.support.bench import run_bench


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_few_whole_conversations_complete_on_telegram_and_sms(backend: str) -> None:
    figures = run_bench("conversation.py", "--count", "2", backend=backend)
    assert figures["bench"] == "conversation" and figures["count"] == 2
    assert figures["database"].startswith(backend)
    for channel, least_updates in (("telegram", 11), ("sms", 10)):
        result = figures[channel]
        assert result["completed"] == 2 and result["failed"] == 0, result["failures"]
        assert result["updates"] >= 2 * least_updates  # a slot lost to another client costs more turns
        assert result["updates_per_s"] > 0 and result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert figures["payment_attempts"] == 4
    assert figures["peak_rss_mb"]["bench+app"] > 0
