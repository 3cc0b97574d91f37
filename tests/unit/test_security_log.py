"""The rate-limited security log: the first few events per interval in full, then one counted summary."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from webhooks.security_log import MAX_SOURCES_TRACKED, SecurityLog


class DrivenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> DrivenClock:
    return DrivenClock()


class Lines(Sequence[logging.LogRecord]):
    """The lines written so far by the logger under test (read live from caplog)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def _lines(self) -> Lines:
        return [r for r in self._caplog.records if r.name == "test.security"]

    def __len__(self) -> int:
        return len(self._lines())

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        return self._lines()[index]


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Lines:
    caplog.set_level(logging.WARNING, logger="test.security")
    return Lines(caplog)


def _log(clock: DrivenClock, **kwargs: float) -> SecurityLog:
    return SecurityLog(logging.getLogger("test.security"), clock=clock, **kwargs)  # type: ignore[arg-type]


def test_500_events_in_one_interval_give_the_first_five_in_full_and_one_summary_with_the_count(
    clock: DrivenClock, records: Lines
) -> None:
    log = _log(clock, burst=5, interval_s=60)
    for n in range(500):
        log.warning("unknown_callback_secret", "callback with an unknown secret", source=f"10.0.0.{n % 7}")
        clock.now += 0.1  # 500 events in 50 s: one interval
    assert len(records) == 5
    sources = [r.source for r in records]  # type: ignore[attr-defined]
    assert sources == ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    clock.now += 11  # the interval has ended
    log.flush()
    assert len(records) == 6
    summary = records[-1]
    assert summary.suppressed == 495 and summary.summary is True  # type: ignore[attr-defined]
    assert "495 more 'unknown_callback_secret' events" in summary.getMessage()
    assert len(summary.sources) == 5  # type: ignore[attr-defined]  # the 5 busiest of 7 addresses
    assert all(70 <= count <= 71 for count in summary.sources.values())  # type: ignore[attr-defined]


def test_each_interval_has_its_own_budget_and_the_next_event_closes_the_last_interval(
    clock: DrivenClock, records: Lines
) -> None:
    log = _log(clock, burst=3, interval_s=10)
    for _interval in range(3):
        for _ in range(100):
            log.warning("forged", "forged secret", source="192.0.2.9")
        clock.now += 11
    log.warning("forged", "forged secret", source="192.0.2.9")  # opens a 4th interval
    summaries = [r for r in records if getattr(r, "summary", False)]
    assert [s.suppressed for s in summaries] == [97, 97, 97]  # type: ignore[attr-defined]
    assert len(records) == 3 * (3 + 1) + 1


def test_event_kinds_are_counted_separately(clock: DrivenClock, records: Lines) -> None:
    log = _log(clock, burst=2, interval_s=60)
    for _ in range(10):
        log.warning("unknown_sms_secret", "wrong SMS secret", source="198.51.100.1")
        log.warning("telegram_secret_refused", "forged Telegram secret", source="198.51.100.2")
    clock.now += 60
    log.flush()
    summaries = {
        r.event: r.suppressed for r in records if getattr(r, "summary", False)  # type: ignore[attr-defined]
    }
    assert summaries == {"unknown_sms_secret": 8, "telegram_secret_refused": 8}
    assert len(records) == 2 * 2 + 2


def test_a_flood_from_many_addresses_keeps_memory_bounded_and_the_count_exact(
    clock: DrivenClock, records: Lines
) -> None:
    log = _log(clock, burst=1, interval_s=60)
    for n in range(5000):
        log.warning("unknown_callback_secret", "unknown secret", source=f"203.0.113.{n % 250}:{n}")
    clock.now += 60
    log.flush()
    assert records[-1].suppressed == 4999  # type: ignore[attr-defined]
    assert len(log._windows) == 0
    assert len(records) == 2
    assert MAX_SOURCES_TRACKED >= len(records[-1].sources)  # type: ignore[attr-defined]


def test_a_quiet_interval_writes_no_summary(clock: DrivenClock, records: Lines) -> None:
    log = _log(clock, burst=5, interval_s=60)
    log.warning("unknown_callback_secret", "unknown secret", source="192.0.2.1")
    clock.now += 120
    log.flush()
    assert len(records) == 1


async def test_the_summary_is_written_by_a_timer_when_the_flood_stops(
    records: Lines,
) -> None:
    loop = asyncio.get_running_loop()
    log = SecurityLog(logging.getLogger("test.security"), burst=1, interval_s=0.05, clock=loop.time)
    for _ in range(20):
        log.warning("unknown_callback_secret", "unknown secret", source="192.0.2.1")
    for _ in range(100):  # no more events: only the timer can write the summary
        if len(records) == 2:
            break
        await asyncio.sleep(0.01)
    assert [getattr(r, "suppressed", None) for r in records] == [None, 19]


def test_closing_writes_the_summary_of_an_interval_still_open(
    clock: DrivenClock, records: Lines
) -> None:
    log = _log(clock, burst=1, interval_s=60)
    for _ in range(4):
        log.warning("unknown_sms_secret", "wrong SMS secret", source="198.51.100.1")
    log.close()  # the service stops 1 s into the interval
    assert [getattr(r, "suppressed", None) for r in records] == [None, 3]
