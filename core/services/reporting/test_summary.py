"""The test-session summary (Property 82): sandbox or simulator payments of a period.

After a test session an admin checks what happened: how many pushes, how each ended, how
much test money "arrived", and the list itself. Production money is never part of it
(Property 81): asking for the production environment is refused with a message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import PaymentAttempt
from core.db.uow import UnitOfWork
from core.domain.states import PaymentStatus
from core.services.reporting.transactions import (
    ParsedFilter,
    TransactionFilter,
    TransactionRow,
    check_filter,
    conditions,
    filtered_rows_query,
    parse_filter,
    row_of,
)

TEST_ENVIRONMENTS = ("sandbox", "simulator")
LIST_LIMIT = 500


@dataclass(frozen=True)
class SandboxSummary:
    """Outcomes and totals of the test payments of a period, with (up to LIST_LIMIT of) the rows."""

    filter: TransactionFilter
    errors: tuple[str, ...] = ()
    by_status: tuple[tuple[str, int], ...] = ()
    attempts: int = 0
    paid: int = 0
    paid_kes: int = 0
    rows: tuple[TransactionRow, ...] = ()

    @property
    def success_rate(self) -> float | None:
        return self.paid / self.attempts if self.attempts else None

    @property
    def truncated(self) -> bool:
        return self.attempts > len(self.rows)


def parse_summary_filter(params: Mapping[str, str], *, active_environment: str, today: date) -> ParsedFilter:
    """``from``/``to`` (default: today in Nairobi) and ``environment`` (sandbox or simulator)."""
    default_env = active_environment if active_environment in TEST_ENVIRONMENTS else "sandbox"
    parsed = parse_filter(
        {k: params.get(k, "") for k in ("from", "to", "environment")}, active_environment=default_env
    )
    errors = list(parsed.errors)
    filt = parsed.filter
    if filt.environment not in TEST_ENVIRONMENTS:
        errors.append("The test summary covers sandbox and simulator payments only.")
        filt = replace(filt, environment=default_env)
    if filt.start is None and filt.end is None:
        filt = replace(filt, start=today, end=today)
    return ParsedFilter(filter=filt, errors=tuple(errors), raw=parsed.raw)


async def summarise_test_payments(session: AsyncSession, parsed: ParsedFilter) -> SandboxSummary:
    """Counts by status, paid count and amount, and the rows of the period."""
    filt = parsed.filter
    errors = await check_filter(session, parsed)
    if errors:
        return SandboxSummary(filter=filt, errors=errors)
    where = and_(*conditions(filt))
    counts = (
        await session.execute(
            select(PaymentAttempt.status, func.count(), func.sum(PaymentAttempt.paid_amount_kes))
            .where(where)
            .group_by(PaymentAttempt.status)
            .order_by(PaymentAttempt.status)
        )
    ).all()
    by_status = tuple((status, n) for status, n, _ in counts)
    paid = next(((n, s or 0) for status, n, s in counts if status == PaymentStatus.PAID), (0, 0))
    rows = (await session.execute(filtered_rows_query(filt).limit(LIST_LIMIT))).all()
    return SandboxSummary(
        filter=filt,
        by_status=by_status,
        attempts=sum(n for _, n in by_status),
        paid=paid[0],
        paid_kes=int(paid[1]),
        rows=tuple(row_of(r) for r in rows),
    )


async def summary_of(uow_factory: Callable[[], UnitOfWork], parsed: ParsedFilter) -> SandboxSummary:
    """:func:`summarise_test_payments` in its own read transaction (the admin view's one call)."""
    async with uow_factory() as uow:
        return await summarise_test_payments(uow.session, parsed)
