"""Login throttling rule: 5 failures within 15 minutes lock further attempts for 15 minutes.

Pure: given the times of recent failures for one key (an account or an address) and the
current time, say until when that key is locked. The store and the clock live elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
LOCK = timedelta(minutes=15)
# Failures older than this can no longer start or extend a lock: the store may forget them.
LOOKBACK = WINDOW + LOCK


def locked_until(
    failures: Iterable[datetime],
    now: datetime,
    *,
    limit: int = MAX_FAILURES,
    window: timedelta = WINDOW,
    lock: timedelta = LOCK,
) -> datetime | None:
    """The end of the lock in force at ``now``, or None when attempts are allowed.

    A lock starts at the failure that makes ``limit`` failures within ``window`` and lasts
    ``lock`` from then. Attempts refused during a lock are not failures, so they do not
    extend it.
    """
    times = sorted(t for t in failures if t <= now)
    until: datetime | None = None
    for index in range(limit - 1, len(times)):
        if times[index] - times[index - limit + 1] <= window:
            until = max(until or times[index], times[index] + lock)
    return until if until is not None and until > now else None
