"""The admin dashboard's figures: today / 7 / 30 days, a daily series, and work waiting.

Periods are Nairobi days (midnight Africa/Nairobi) up to ``now``, counted by when the push was
made (``payment_attempts.created_at``, indexed), for ONE M-Pesa environment (Property 81).
Success rate = PAID / attempts with a final outcome (PAID, FAILED, CANCELLED, TIMED_OUT);
attempts still in progress or in NEEDS_REVIEW are left out of it. Revenue is what was paid
(``paid_amount_kes``, else the amount asked). Every figure comes from a few grouped queries,
never from loading the attempts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, and_, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.db.models import AuditEntry, PaymentAttempt
from core.domain.states import PaymentStatus
from core.mpesa.result_codes import describe_result
from core.runtime import Runtime
from core.services.notifications.outbox_store import FAILED as FAILED_NOTIFICATION
from core.services.notifications.outbox_store import outbox_counts

NAIROBI = ZoneInfo("Africa/Nairobi")
SERIES_DAYS = 30
PERIODS: tuple[tuple[str, int], ...] = (("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30))
PAID = PaymentStatus.PAID.value
FAILURES = (PaymentStatus.FAILED.value, PaymentStatus.CANCELLED.value, PaymentStatus.TIMED_OUT.value)
REFUND_DUE, REVIEW_RESOLVED = "booking.refund_due", "review.resolved"


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
    starts = [nairobi_midnight(today - timedelta(days=n)) for n in range(SERIES_DAYS)]  # [today, …]
    async with runtime.uow() as uow:
        session = uow.session
        grouped = await _grouped_by_day(session, environment, starts, now)
        medians = {
            days: await _median_confirm_seconds(session, environment, starts[days - 1], now)
            for _label, days in PERIODS
        }
        waiting = await _work_waiting(session)
    periods = tuple(_period(label, days, starts[days - 1], grouped, medians[days]) for label, days in PERIODS)
    series = tuple(_day(today - timedelta(days=n), n, grouped) for n in reversed(range(SERIES_DAYS)))
    return Dashboard(environment, now, periods, series, waiting)


async def _grouped_by_day(
    session: AsyncSession, environment: str, starts: list[datetime], now: datetime
) -> list[Any]:
    """(days ago, status, result code, count, revenue) for the last SERIES_DAYS Nairobi days."""
    # A CASE over the day boundaries (newest first) numbers each row's Nairobi day portably.
    days_ago = case(*[(PaymentAttempt.created_at >= start, n) for n, start in enumerate(starts)], else_=-1)
    amount = func.coalesce(PaymentAttempt.paid_amount_kes, PaymentAttempt.amount_kes)
    query = (
        select(
            days_ago.label("days_ago"),
            PaymentAttempt.status,
            PaymentAttempt.result_code,
            func.count().label("n"),
            func.coalesce(func.sum(amount), 0).label("kes"),
        )
        .where(
            PaymentAttempt.environment == environment,
            PaymentAttempt.created_at >= starts[-1],
            PaymentAttempt.created_at <= now,
        )
        .group_by(days_ago, PaymentAttempt.status, PaymentAttempt.result_code)
    )
    return list((await session.execute(query)).all())


def _period(
    label: str, days: int, start: datetime, grouped: list[Any], median: float | None
) -> PeriodFigures:
    rows = [r for r in grouped if 0 <= r.days_ago < days]
    reasons: Counter[str] = Counter()
    for r in rows:
        if r.status in FAILURES:
            reasons[failure_reason(r.status, r.result_code)] += int(r.n)
    return PeriodFigures(
        label=label,
        days=days,
        start=start,
        revenue_kes=sum(int(r.kes) for r in rows if r.status == PAID),
        payments=sum(int(r.n) for r in rows if r.status == PAID),
        finished=sum(int(r.n) for r in rows if r.status == PAID or r.status in FAILURES),
        median_confirm_seconds=median,
        failures_by_reason=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def _day(day: date, days_ago: int, grouped: list[Any]) -> DayFigures:
    rows = [r for r in grouped if r.days_ago == days_ago]
    return DayFigures(
        day=day,
        revenue_kes=sum(int(r.kes) for r in rows if r.status == PAID),
        payments=sum(int(r.n) for r in rows if r.status == PAID),
        finished=sum(int(r.n) for r in rows if r.status == PAID or r.status in FAILURES),
    )


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


async def _median_confirm_seconds(
    session: AsyncSession, environment: str, start: datetime, now: datetime
) -> float | None:
    """Median seconds from push (created_at) to confirmation (settled_at) of PAID attempts."""
    seconds = _seconds_between(session, PaymentAttempt.created_at, PaymentAttempt.settled_at)
    where = and_(
        PaymentAttempt.environment == environment,
        PaymentAttempt.status == PAID,
        PaymentAttempt.settled_at.is_not(None),
        PaymentAttempt.created_at >= start,
        PaymentAttempt.created_at <= now,
    )
    count = int(await session.scalar(select(func.count()).select_from(PaymentAttempt).where(where)) or 0)
    if count == 0:
        return None
    middle = select(seconds).where(where).order_by(seconds).offset((count - 1) // 2).limit(2 - count % 2)
    values = [float(v) for v in (await session.scalars(middle)).all()]
    return sum(values) / len(values)


def _seconds_between(session: AsyncSession, earlier: Any, later: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * literal(86400.0)
    return func.extract("epoch", later - earlier)


async def _work_waiting(session: AsyncSession) -> WorkWaiting:
    """Counts behind the dashboard's links: review queue, failed notifications, open refunds due."""
    review = await session.scalar(
        select(func.count()).select_from(PaymentAttempt).where(
            PaymentAttempt.status == PaymentStatus.NEEDS_REVIEW.value
        )
    )
    failed = (await outbox_counts(session))[FAILED_NOTIFICATION]
    # Open refunds: a refund_due entry that no review.resolved entry names (the review queue's rule).
    resolved = aliased(AuditEntry)
    refunds = await session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .outerjoin(
            resolved,
            and_(
                resolved.action == REVIEW_RESOLVED,
                resolved.subject_type == "refund_due",
                resolved.subject_id == cast(AuditEntry.seq, String),
            ),
        )
        .where(AuditEntry.action == REFUND_DUE, resolved.id.is_(None))
    )
    return WorkWaiting(int(review or 0), int(failed or 0), int(refunds or 0))
