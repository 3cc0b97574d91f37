"""The admin dashboard's figures: today / 7 / 30 days, a daily series, and work waiting.

Periods are Nairobi days (midnight Africa/Nairobi) up to ``now``, counted by when the push was
made (``payment_attempts.created_at``, indexed), for ONE M-Pesa environment (Property 81).
Success rate = PAID / attempts with a final outcome (PAID, FAILED, CANCELLED, TIMED_OUT);
attempts still in progress or in NEEDS_REVIEW are left out of it. Revenue is what was paid
(``paid_amount_kes``, else the amount asked). The median time to confirmation is in whole
seconds. Every figure comes from one grouped scan of the window plus three counts, never
from loading the attempts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import PaymentAttempt
from core.db.types import UTCDateTime
from core.domain.states import PaymentStatus
from core.mpesa.result_codes import describe_result
from core.runtime import Runtime
from core.services.notifications.outbox_store import FAILED as FAILED_NOTIFICATION
from core.services.notifications.outbox_store import outbox_counts
from core.services.reporting.paid_review import payment_review_counts
from core.services.reporting.refunds import open_refunds_query

NAIROBI = ZoneInfo("Africa/Nairobi")
SERIES_DAYS = 30
PERIODS: tuple[tuple[str, int], ...] = (("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30))
PAID = PaymentStatus.PAID.value
FAILURES = (PaymentStatus.FAILED.value, PaymentStatus.CANCELLED.value, PaymentStatus.TIMED_OUT.value)


@dataclass(frozen=True)
class PeriodFigures:
    label: str
    days: int
    start: datetime
    revenue_kes: int
    payments: int
    finished: int
    median_confirm_seconds: float | None
    failures_by_reason: tuple[tuple[str, int], ...]

    @property
    def success_rate(self) -> float | None:
        return self.payments / self.finished if self.finished else None


@dataclass(frozen=True)
class DayFigures:
    day: date
    revenue_kes: int
    payments: int
    finished: int

    @property
    def success_rate(self) -> float | None:
        return self.payments / self.finished if self.finished else None


@dataclass(frozen=True)
class WorkWaiting:
    needs_review: int
    failed_notifications: int
    refunds_due: int


@dataclass(frozen=True)
class Dashboard:
    environment: str
    now: datetime
    periods: tuple[PeriodFigures, ...]
    days: tuple[DayFigures, ...]  # oldest first, SERIES_DAYS of them, today last
    waiting: WorkWaiting


def nairobi_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=NAIROBI)


async def dashboard(runtime: Runtime, *, environment: str) -> Dashboard:
    """Every figure of the dashboard for ``environment`` at the runtime clock's ``now``."""
    now = runtime.clock()
    today = now.astimezone(NAIROBI).date()
    first_day = nairobi_midnight(today - timedelta(days=SERIES_DAYS - 1))
    async with runtime.uow() as uow:
        grouped = await _grouped_by_day(uow.session, environment, first_day, now)
        waiting = await _work_waiting(uow.session)
    by_day = _by_day(grouped)
    periods = tuple(
        _period(label, days, nairobi_midnight(today - timedelta(days=days - 1)), by_day)
        for label, days in PERIODS
    )
    series = tuple(
        DayFigures(today - timedelta(days=n), by_day[n].revenue_kes, by_day[n].payments, by_day[n].finished)
        for n in reversed(range(SERIES_DAYS))
    )
    return Dashboard(environment, now, periods, series, waiting)


async def _grouped_by_day(
    session: AsyncSession, environment: str, first_day: datetime, now: datetime
) -> list[Any]:
    """One scan of the window, grouped by (days ago, status, result code, whole seconds to confirm).

    Rows carry ``n`` and ``kes``; ``secs`` is set for paid attempts only, so the medians come
    from this small histogram instead of a sort of every paid attempt.
    """
    day_index, secs = _day_and_seconds(session, first_day)
    days_ago = (SERIES_DAYS - 1) - day_index
    amount = func.coalesce(PaymentAttempt.paid_amount_kes, PaymentAttempt.amount_kes)
    paid_secs = case((PaymentAttempt.status == PAID, secs), else_=None)
    query = (
        select(
            days_ago.label("days_ago"),
            PaymentAttempt.status,
            PaymentAttempt.result_code,
            paid_secs.label("secs"),
            func.count().label("n"),
            func.coalesce(func.sum(amount), 0).label("kes"),
        )
        .where(
            PaymentAttempt.environment == environment,
            PaymentAttempt.created_at >= first_day,
            PaymentAttempt.created_at <= now,
        )
        .group_by(days_ago, PaymentAttempt.status, PaymentAttempt.result_code, paid_secs)
    )
    return list((await session.execute(query)).all())


def _day_and_seconds(session: AsyncSession, first_day: datetime) -> tuple[Any, Any]:
    """SQL for whole days since ``first_day`` (a Nairobi midnight) and whole seconds push → confirmation.

    Africa/Nairobi has no daylight saving time, so a Nairobi day is always 86 400 seconds and
    the day number is a plain division.
    """
    created, settled = PaymentAttempt.created_at, PaymentAttempt.settled_at
    if session.get_bind().dialect.name == "sqlite":
        origin = func.julianday(literal(first_day, UTCDateTime()))
        day = cast(func.julianday(created) - origin, Integer)  # truncates: non-negative here
        return day, func.round((func.julianday(settled) - func.julianday(created)) * literal(86400.0))
    since = func.extract("epoch", created - literal(first_day, UTCDateTime()))
    day = cast(func.floor(since / 86400), Integer)
    return day, func.round(func.extract("epoch", settled - created))


@dataclass
class _DayTally:
    """One Nairobi day's grouped rows, added up once (the periods and the series reuse it)."""

    revenue_kes: int = 0
    payments: int = 0
    finished: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    confirm_seconds: Counter[float] = field(default_factory=Counter)


def _by_day(grouped: list[Any]) -> dict[int, _DayTally]:
    tallies = {n: _DayTally() for n in range(SERIES_DAYS)}
    for row in grouped:
        tally = tallies.get(row.days_ago)
        if tally is None:
            continue
        n = int(row.n)
        if row.status == PAID:
            tally.revenue_kes += int(row.kes)
            tally.payments += n
            tally.finished += n
            if row.secs is not None:
                tally.confirm_seconds[float(row.secs)] += n
        elif row.status in FAILURES:
            tally.finished += n
            tally.reasons[failure_reason(row.status, row.result_code)] += n
    return tallies


def _period(label: str, days: int, start: datetime, by_day: dict[int, _DayTally]) -> PeriodFigures:
    tallies = [by_day[n] for n in range(days)]
    reasons: Counter[str] = sum((t.reasons for t in tallies), Counter())
    confirm: Counter[float] = sum((t.confirm_seconds for t in tallies), Counter())
    return PeriodFigures(
        label=label,
        days=days,
        start=start,
        revenue_kes=sum(t.revenue_kes for t in tallies),
        payments=sum(t.payments for t in tallies),
        finished=sum(t.finished for t in tallies),
        median_confirm_seconds=histogram_median(confirm),
        failures_by_reason=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def histogram_median(counts: Counter[float]) -> float | None:
    """The median of values given as {value: how many}; the mean of the two middle ones if even."""
    total = sum(counts.values())
    if total == 0:
        return None
    wanted = [(total - 1) // 2, total // 2]  # 0-based ranks of the middle value(s)
    found: list[float] = []
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        while wanted and wanted[0] < seen:
            found.append(value)
            wanted.pop(0)
    return sum(found) / len(found)


def failure_reason(status: str, result_code: str | None) -> str:
    """A short admin label: the M-Pesa result code and its meaning, or the status."""
    if result_code:
        info = describe_result(result_code)
        return f"{info.title} ({result_code})"
    if status == PaymentStatus.TIMED_OUT.value:
        return "No answer before the deadline"
    if status == PaymentStatus.CANCELLED.value:
        return "Cancelled"
    return "Failed without a result code"


async def _work_waiting(session: AsyncSession) -> WorkWaiting:
    """Counts behind the dashboard's links: review queue, failed notifications, open refunds due."""
    review = sum(await payment_review_counts(session))  # NEEDS_REVIEW and flagged PAID attempts
    failed = (await outbox_counts(session))[FAILED_NOTIFICATION]
    refunds = await session.scalar(select(func.count()).select_from(open_refunds_query().subquery()))
    return WorkWaiting(int(review or 0), int(failed or 0), int(refunds or 0))
