"""The login lock rule: 5 failures within 15 minutes lock further attempts for 15 minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.throttle import locked_until

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def minutes(*values: float) -> list[datetime]:
    return [T0 + timedelta(minutes=v) for v in values]


def test_four_failures_never_lock() -> None:
    assert locked_until(minutes(0, 1, 2, 3), T0 + timedelta(minutes=4)) is None


def test_the_fifth_failure_within_fifteen_minutes_locks_for_fifteen_minutes_from_it() -> None:
    failures = minutes(0, 1, 2, 3, 14)
    assert locked_until(failures, T0 + timedelta(minutes=14)) == T0 + timedelta(minutes=29)
    assert locked_until(failures, T0 + timedelta(minutes=28, seconds=59)) == T0 + timedelta(minutes=29)
    assert locked_until(failures, T0 + timedelta(minutes=29)) is None


def test_five_failures_spread_over_more_than_fifteen_minutes_do_not_lock() -> None:
    assert locked_until(minutes(0, 4, 8, 12, 16), T0 + timedelta(minutes=16)) is None


def test_failures_in_the_future_of_now_are_ignored() -> None:
    assert locked_until(minutes(0, 1, 2, 3, 4), T0 + timedelta(minutes=3)) is None


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=3600), max_size=12), st.integers(0, 4000))
def test_a_lock_never_outlasts_fifteen_minutes_after_the_last_failure(seconds: list[int], now_s: int) -> None:
    failures = [T0 + timedelta(seconds=s) for s in seconds]
    now = T0 + timedelta(seconds=now_s)
    until = locked_until(failures, now)
    past = [f for f in failures if f <= now]
    if until is not None:
        assert until > now
        assert until <= max(past) + timedelta(minutes=15)
        assert len(past) >= 5
