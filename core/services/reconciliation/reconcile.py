"""Reconciliation: compare stored payments with M-Pesa's records and flag every discrepancy.

Two sources of M-Pesa's truth (Property 57): STK Query of each unfinished or in-review
attempt, and an uploaded statement CSV from the M-Pesa organisation portal. Work happens
in three steps so no database lock is held while Daraja is called: read (one short
transaction), query and compare (no transaction), then flag (one short transaction per
attempt; flags are idempotent, so a rerun finishes an interrupted run). A bad statement
raises ``StatementError`` before anything is read or written.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, PaymentAttempt
from core.db.types import utcnow
from core.db.uow import TransitionConflict, UnitOfWork
from core.domain.states import PaymentEvent, PaymentStatus, payment_sources
from core.services import audit
from core.services.reconciliation.compare import (
    HINT_CLOCK_SKEW,
    HINT_WINDOW_AFTER,
    OurPayment,
    QueryAnswer,
    ReportLine,
    classify_query,
    compare,
)
from core.services.reconciliation.report import ReconciliationReport
from core.services.reconciliation.statement_csv import Statement, StatementError, parse_statement

__all__ = ["ENVIRONMENTS", "QueryFn", "ReconciliationReport", "StatementError", "reconcile"]

log = logging.getLogger(__name__)

ENVIRONMENTS = ("simulator", "sandbox", "production")
QueryFn = Callable[[str], Awaitable[QueryAnswer]]
QUERY_STATUSES = (
    PaymentStatus.QUEUED,
    PaymentStatus.AWAITING_CUSTOMER,
    PaymentStatus.UNCLEAR,
    PaymentStatus.NEEDS_REVIEW,
)
REVIEW_REASON_MAX = 300  # PaymentAttempt.review_reason is String(300)
# Our PAID rows are looked up by creation time around the statement period: a push is
# paid within minutes, so a day of margin catches every settlement in the period.
PERIOD_MARGIN = timedelta(days=1)
_IN_CLAUSE_CHUNK = 500
_FLAG_SOURCES = payment_sources(PaymentEvent.FLAG)


class UowSource(Protocol):
    """A ``core.runtime.Runtime`` or anything else that hands out units of work."""

    def uow(self) -> UnitOfWork: ...


async def reconcile(
    source: UowSource | Callable[[], UnitOfWork],
    *,
    environment: str = "production",
    statement: bytes | None = None,
    query: QueryFn | None = None,
    now: datetime | None = None,
    actor: str = "system",
    short_codes: Collection[str] | None = None,
) -> ReconciliationReport:
    """Reconcile one environment's payments; flags discrepancies and returns the report.

    ``short_codes``: the statement's "Short Code" must be one of these (default: the
    configured business short code and till number of a Runtime; empty = no check).
    """
    if environment not in ENVIRONMENTS:
        raise ValueError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
    if statement is None and query is None:
        raise ValueError("give a statement file, an STK Query function, or both")
    new_uow = source.uow if hasattr(source, "uow") else source
    now = now or getattr(source, "clock", utcnow)()
    parsed = parse_statement(statement) if statement is not None else None  # raises before any DB work
    if parsed is not None:
        _check_short_code(parsed, _expected_short_codes(source, short_codes))

    async with new_uow() as uow:
        ours, candidates = await _load_statement_side(uow.session, environment, parsed)
        targets = await _load_query_targets(uow.session, environment, now) if query is not None else []

    report = ReconciliationReport(environment=environment, generated_at=now)
    if parsed is not None:
        _add_statement_comparison(report, parsed, ours, candidates)
    if query is not None:
        report.queried = len(targets)
        report.add([classify_query(attempt, await _ask(query, cid)) for attempt, cid in targets])
    await _flag_discrepancies(new_uow, report, actor=actor)
    await _record_run(
        new_uow, report, environment=environment, with_statement=parsed is not None, actor=actor
    )
    log.info("reconciliation done", extra={"environment": environment, **report.counts})
    return report


def _add_statement_comparison(
    report: ReconciliationReport, parsed: Statement, ours: list[OurPayment], candidates: list[OurPayment]
) -> None:
    """Compare the statement with our side and add what it finds to ``report``."""
    comparison = compare(
        ours,
        parsed.rows,
        period_start=parsed.period_start,
        period_end=parsed.period_end,
        candidates=candidates,
    )
    report.period_start, report.period_end = parsed.period_start, parsed.period_end
    report.statement_rows = len(parsed.rows)
    report.ignored_receipts = comparison.ignored_receipts
    report.add(comparison.lines)


async def _flag_discrepancies(
    new_uow: Callable[[], UnitOfWork], report: ReconciliationReport, *, actor: str
) -> None:
    """Flag every attempt a report line asks to review; note which ones changed."""
    for line in report.lines:
        if line.flag_reason and line.attempt_id is not None:
            # One short transaction per attempt, so no run holds the audit chain lock (taken
            # before the row, as everywhere) across many rows.
            async with new_uow() as uow:
                flagged = await _flag(uow.session, line, actor=actor)
                await uow.commit()
            if flagged:
                report.flagged_attempt_ids.append(line.attempt_id)
    report.flagged_attempt_ids = sorted(set(report.flagged_attempt_ids))


async def _record_run(
    new_uow: Callable[[], UnitOfWork],
    report: ReconciliationReport,
    *,
    environment: str,
    with_statement: bool,
    actor: str,
) -> None:
    """The audit entry of a completed run (its counts and the attempts it flagged)."""
    async with new_uow() as uow:
        await audit.record(
            uow.session,
            actor=actor,
            action="reconciliation.completed",
            subject_type="reconciliation",
            subject_id=environment,
            details={
                "environment": environment,
                "statement": with_statement,
                "counts": report.counts,
                "flagged_attempt_ids": report.flagged_attempt_ids,
            },
        )
        await uow.commit()


def _expected_short_codes(source: object, given: Collection[str] | None) -> frozenset[str]:
    if given is not None:
        return frozenset(given)
    settings = getattr(source, "settings", None)
    names = ("mpesa_business_short_code", "mpesa_till_number")
    return frozenset(code for code in (getattr(settings, name, None) for name in names) if code)


def _check_short_code(statement: Statement, expected: frozenset[str]) -> None:
    # Another business's (or the sandbox's) statement would mark every payment "missing".
    if expected and statement.short_code and statement.short_code.strip() not in expected:
        raise StatementError(
            f"the statement is for short code {statement.short_code.strip()}, "
            f"not {' or '.join(sorted(expected))}"
        )


# -- reading --------------------------------------------------------------------------------


def _attempts(environment: str) -> Select[PaymentAttempt, str]:
    return (
        select(PaymentAttempt, Booking.reference)
        .join(Booking, Booking.id == PaymentAttempt.booking_id)
        .where(PaymentAttempt.environment == environment)
    )


def _ours(attempt: PaymentAttempt, reference: str) -> OurPayment:
    return OurPayment(
        attempt_id=attempt.id,
        booking_reference=reference,
        status=attempt.status,
        receipt=attempt.mpesa_receipt,
        amount_kes=attempt.paid_amount_kes if attempt.paid_amount_kes is not None else attempt.amount_kes,
        time=attempt.transaction_time or attempt.settled_at or attempt.created_at,
        created_at=attempt.created_at,
    )


async def _load_statement_side(
    session: AsyncSession, environment: str, statement: Statement | None
) -> tuple[list[OurPayment], list[OurPayment]]:
    """Our attempts holding a statement receipt or paid in its period, and hint candidates."""
    if statement is None:
        return [], []
    found: dict[int, OurPayment] = {}
    receipts = sorted({row.receipt for row in statement.rows})
    for start in range(0, len(receipts), _IN_CLAUSE_CHUNK):
        chunk = receipts[start : start + _IN_CLAUSE_CHUNK]
        for attempt, reference in (
            await session.execute(_attempts(environment).where(PaymentAttempt.mpesa_receipt.in_(chunk)))
        ).all():
            found[attempt.id] = _ours(attempt, reference)
    if statement.period_start and statement.period_end:
        paid = _attempts(environment).where(
            or_(PaymentAttempt.status == PaymentStatus.PAID.value, PaymentAttempt.mpesa_receipt.is_not(None)),
            PaymentAttempt.created_at >= statement.period_start - PERIOD_MARGIN,
            PaymentAttempt.created_at < statement.period_end + PERIOD_MARGIN,
        )
        for attempt, reference in (await session.execute(paid)).all():
            found.setdefault(attempt.id, _ours(attempt, reference))

    times = [row.completion_time for row in statement.rows if row.completion_time is not None]
    candidates: list[OurPayment] = []
    if times:
        # Unpaid pushes that could have produced a statement payment we hold no receipt for.
        hint = _attempts(environment).where(
            PaymentAttempt.mpesa_receipt.is_(None),
            PaymentAttempt.status.not_in([PaymentStatus.PAID.value, PaymentStatus.QUEUED.value]),
            PaymentAttempt.created_at >= min(times) - HINT_WINDOW_AFTER,
            PaymentAttempt.created_at <= max(times) + HINT_CLOCK_SKEW,
        )
        candidates = [_ours(a, ref) for a, ref in (await session.execute(hint)).all()]
    return list(found.values()), candidates


async def _load_query_targets(
    session: AsyncSession, environment: str, now: datetime
) -> list[tuple[OurPayment, str]]:
    """Attempts to ask Daraja about: in review, or unfinished past their deadline."""
    live = [s.value for s in QUERY_STATUSES if s is not PaymentStatus.NEEDS_REVIEW]
    query = (
        _attempts(environment)
        .where(
            PaymentAttempt.checkout_request_id.is_not(None),
            or_(
                PaymentAttempt.status == PaymentStatus.NEEDS_REVIEW.value,
                # A push still inside its deadline is in flight: the watchdog owns it.
                and_(PaymentAttempt.status.in_(live), PaymentAttempt.deadline_at < now),
            ),
        )
        .order_by(PaymentAttempt.id)
    )
    rows = (await session.execute(query)).all()
    return [(_ours(a, ref), str(a.checkout_request_id)) for a, ref in rows]


async def _ask(query: QueryFn, checkout_request_id: str) -> QueryAnswer | Exception:
    try:
        return await query(checkout_request_id)
    except Exception as exc:  # noqa: BLE001 - one unreachable query must not stop the run
        return exc


# -- flagging -------------------------------------------------------------------------------


def merge_reason(existing: str | None, reason: str) -> str:
    """Add ``reason`` to a review reason once; the result is stable under repetition."""
    if not existing:
        return reason[:REVIEW_REASON_MAX]
    if reason in existing:
        return existing
    return f"{existing}; {reason}"[:REVIEW_REASON_MAX]


async def _flag(session: AsyncSession, line: ReportLine, *, actor: str) -> bool:
    """Flag the line's attempt for review; False when it already carries this flag."""
    assert line.attempt_id is not None and line.flag_reason is not None
    current = select(PaymentAttempt.status, PaymentAttempt.review_reason).where(
        PaymentAttempt.id == line.attempt_id
    )
    row = (await session.execute(current)).first()
    if row is None:
        return False
    status, existing = PaymentStatus(row[0]), row[1]
    merged = merge_reason(existing, line.flag_reason)
    if merged == existing:
        return False  # flagged by an earlier run: nothing twice
    if status in _FLAG_SOURCES:
        try:
            await audit.apply_transition(
                session, "payment", line.attempt_id, PaymentEvent.FLAG, previous=status.value, actor=actor,
                reason=line.flag_reason, only_from=[status], audit_details={"category": line.category.value},
                review_reason=merged,
            )
        except TransitionConflict:
            log.warning("attempt changed during reconciliation", extra={"attempt_id": line.attempt_id})
            return False
        return True
    # PAID never changes (nor does an attempt already in review): only the reason is added.
    result = await session.execute(
        update(PaymentAttempt)
        .where(PaymentAttempt.id == line.attempt_id, PaymentAttempt.status == status.value)
        .values(review_reason=merged, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await audit.record(
        session,
        actor=actor,
        action="payment.flagged",
        subject_type="payment",
        subject_id=line.attempt_id,
        details={"status": status.value, "reason": line.flag_reason, "category": line.category.value},
    )
    return True
