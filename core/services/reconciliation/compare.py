"""Pure comparison of our payment attempts with M-Pesa's records (Properties 57, 58).

No I/O here: ``compare`` takes our attempts and the statement rows, ``classify_query`` one
attempt and its STK Query answer, and both return report lines. A line with a
``flag_reason`` is a discrepancy the caller must flag on that attempt.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from core.domain.states import PaymentStatus
from core.logging import mask_phones
from core.services.reconciliation.statement_csv import StatementRow

# How long after an STK Push its payment may complete (prompt life plus slack).
HINT_WINDOW_AFTER = timedelta(minutes=10)
HINT_CLOCK_SKEW = timedelta(minutes=1)


class Category(StrEnum):
    MATCHED = "matched"
    MISSING_ON_OUR_SIDE = "missing_on_our_side"
    MISSING_ON_MPESA_SIDE = "missing_on_mpesa_side"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    NOT_COMPLETED = "not_completed"
    NEEDS_REVIEW = "needs_review"
    QUERY_PENDING = "query_pending"
    QUERY_FAILED = "query_failed"


DISCREPANCIES = frozenset(
    {
        Category.MISSING_ON_OUR_SIDE,
        Category.MISSING_ON_MPESA_SIDE,
        Category.AMOUNT_MISMATCH,
        Category.STATUS_MISMATCH,
    }
)


@dataclass(frozen=True)
class OurPayment:
    """What we know about one attempt; ``time`` is when M-Pesa completed it, if known."""

    attempt_id: int
    booking_reference: str
    status: str
    receipt: str | None
    amount_kes: int
    time: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class ReportLine:
    """One row of the reconciliation report."""

    category: Category
    receipt: str | None
    attempt_id: int | None
    booking_reference: str | None
    amount_ours: int | None
    amount_mpesa: Decimal | None
    time: datetime | None
    note: str
    flag_reason: str | None = None


@dataclass(frozen=True)
class Comparison:
    """Statement comparison result; ``ignored_receipts`` are non-payment rows (charges, transfers)."""

    lines: tuple[ReportLine, ...]
    ignored_receipts: int


class QueryAnswer(Protocol):
    """The part of ``core.mpesa.StkQueryResult`` reconciliation reads."""

    @property
    def pending(self) -> bool: ...

    @property
    def result_code(self) -> int | str | None: ...

    @property
    def result_desc(self) -> str | None: ...


def in_period(when: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    """True when ``when`` lies in [start, end); unknown bounds or time mean 'not provably in'."""
    return when is not None and start is not None and end is not None and start <= when < end


def compare(
    ours: Iterable[OurPayment],
    theirs: Sequence[StatementRow],
    *,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    candidates: Iterable[OurPayment] = (),
) -> Comparison:
    """Put every receipt, ours or the statement's, in exactly one category."""
    groups = _group(theirs)
    ours_list = list(ours)
    by_receipt = {o.receipt: o for o in ours_list if o.receipt}
    lines: list[ReportLine] = []
    missing: list[tuple[str, Decimal, datetime | None]] = []
    ignored = 0

    for receipt, rows in groups.items():
        done = [r for r in rows if r.completed]
        mine = by_receipt.get(receipt)
        if not done:
            lines.append(_not_completed(receipt, rows, mine))
            continue
        paid_in = sum((r.paid_in for r in done), Decimal(0))
        when = next((r.completion_time for r in done if r.paid_in > 0), done[0].completion_time)
        if mine is not None:
            lines.append(_matched_or_mismatch(mine, paid_in, when))
        elif paid_in > 0:
            missing.append((receipt, paid_in, when))
        else:
            ignored += 1  # a charge, withdrawal or transfer: not a client payment

    lines.extend(_missing_on_our_side(missing, list(candidates)))

    for o in ours_list:
        if o.receipt and o.receipt in groups:
            continue
        if o.receipt is None and o.status != PaymentStatus.PAID:
            continue
        if in_period(o.time, period_start, period_end):
            lines.append(_missing_on_mpesa_side(o))
    return Comparison(tuple(lines), ignored)


def classify_query(attempt: OurPayment, answer: QueryAnswer | BaseException) -> ReportLine:
    """Compare an unfinished attempt with M-Pesa's STK Query answer (or the error it raised)."""

    def line(category: Category, note: str, reason: str | None = None) -> ReportLine:
        return ReportLine(
            category,
            attempt.receipt,
            attempt.attempt_id,
            attempt.booking_reference,
            attempt.amount_kes,
            None,
            attempt.created_at,
            note,
            reason[:200] if reason else None,
        )

    if isinstance(answer, BaseException):
        return line(Category.QUERY_FAILED, f"STK Query failed: {type(answer).__name__}: {_safe(str(answer))}")
    code = "" if answer.result_code is None else str(answer.result_code).strip()
    said = f"ResultCode {code} {_safe(answer.result_desc or '')}".strip()
    if answer.pending:
        return line(Category.QUERY_PENDING, f"M-Pesa still processing; our status {attempt.status}")
    if attempt.status == PaymentStatus.NEEDS_REVIEW:
        return line(Category.NEEDS_REVIEW, f"already in review; STK Query: {said}")
    if code == "0":
        return line(
            Category.MISSING_ON_OUR_SIDE,
            f"M-Pesa says paid; our status {attempt.status}",
            "reconciliation: STK Query reports the payment completed (ResultCode 0)",
        )
    return line(
        Category.STATUS_MISMATCH,
        f"M-Pesa says {said}; our status {attempt.status}",
        f"reconciliation: STK Query reports {said}",
    )


def _safe(text: str) -> str:
    return mask_phones(" ".join(text.split()))[:120]


# -- helpers --------------------------------------------------------------------------------


def _group(rows: Sequence[StatementRow]) -> dict[str, list[StatementRow]]:
    """Rows by receipt; exact repeats (overlapping exports pasted together) count once."""
    groups: dict[str, list[StatementRow]] = {}
    seen: set[tuple[object, ...]] = set()
    for row in rows:
        key = (row.receipt, row.completion_time, row.status.lower(), row.paid_in, row.withdrawn, row.details)
        if key in seen:
            continue
        seen.add(key)
        groups.setdefault(row.receipt, []).append(row)
    return groups


def _matched_or_mismatch(mine: OurPayment, paid_in: Decimal, when: datetime | None) -> ReportLine:
    status_note = "" if mine.status == PaymentStatus.PAID else f"our status {mine.status}"
    if paid_in == mine.amount_kes:
        return ReportLine(
            Category.MATCHED,
            mine.receipt,
            mine.attempt_id,
            mine.booking_reference,
            mine.amount_kes,
            paid_in,
            when,
            status_note,
        )
    reason = (
        f"reconciliation: receipt {mine.receipt} amount differs "
        f"(ours {mine.amount_kes} KES, M-Pesa {_fmt(paid_in)} KES)"
    )
    note = "; ".join(filter(None, ["amounts differ", status_note]))
    return ReportLine(
        Category.AMOUNT_MISMATCH,
        mine.receipt,
        mine.attempt_id,
        mine.booking_reference,
        mine.amount_kes,
        paid_in,
        when,
        note,
        reason,
    )


def _not_completed(receipt: str, rows: list[StatementRow], mine: OurPayment | None) -> ReportLine:
    statuses = ", ".join(sorted({r.status or "(blank)" for r in rows}))
    paid_in = sum((r.paid_in for r in rows), Decimal(0))
    when = rows[0].completion_time
    if mine is None:
        return ReportLine(
            Category.NOT_COMPLETED, receipt, None, None, None, paid_in, when, f"statement status {statuses}"
        )
    # We hold this receipt as money received, but M-Pesa never completed it.
    reason = f"reconciliation: receipt {receipt} is not completed in the M-Pesa statement ({statuses})"[:200]
    return ReportLine(
        Category.MISSING_ON_MPESA_SIDE,
        receipt,
        mine.attempt_id,
        mine.booking_reference,
        mine.amount_kes,
        paid_in,
        when,
        f"statement status {statuses}",
        reason,
    )


def _missing_on_mpesa_side(mine: OurPayment) -> ReportLine:
    if mine.receipt:
        reason = f"reconciliation: receipt {mine.receipt} is not in the M-Pesa statement"
        note = "not in the statement for its period"
    else:
        reason = "reconciliation: paid without a receipt; not in the M-Pesa statement"
        note = "no receipt stored"
    return ReportLine(
        Category.MISSING_ON_MPESA_SIDE,
        mine.receipt,
        mine.attempt_id,
        mine.booking_reference,
        mine.amount_kes,
        None,
        mine.time,
        note,
        reason,
    )


def _missing_on_our_side(
    missing: list[tuple[str, Decimal, datetime | None]], candidates: list[OurPayment]
) -> list[ReportLine]:
    """Statement payments we have no receipt for; hint the attempt when exactly one fits."""
    fits: dict[str, list[OurPayment]] = {}
    claimed: dict[int, int] = {}
    pool = sorted((c for c in candidates if c.receipt is None), key=lambda c: c.created_at)
    starts = [c.created_at for c in pool]
    for receipt, paid_in, when in missing:
        found: list[OurPayment] = []
        if when is not None:  # only pushes made shortly before the payment can be its source
            lo = bisect_left(starts, when - HINT_WINDOW_AFTER)
            hi = bisect_right(starts, when + HINT_CLOCK_SKEW)
            found = [c for c in pool[lo:hi] if c.amount_kes == paid_in]
        fits[receipt] = found
        for c in found:
            claimed[c.attempt_id] = claimed.get(c.attempt_id, 0) + 1
    lines: list[ReportLine] = []
    for receipt, paid_in, when in missing:
        found = fits[receipt]
        if len(found) == 1 and claimed[found[0].attempt_id] == 1:
            c = found[0]
            reason = f"reconciliation: statement receipt {receipt} ({_fmt(paid_in)} KES) may be this payment"
            note = f"no attempt holds this receipt; possibly attempt {c.attempt_id} (our status {c.status})"
            lines.append(
                ReportLine(
                    Category.MISSING_ON_OUR_SIDE,
                    receipt,
                    c.attempt_id,
                    c.booking_reference,
                    c.amount_kes,
                    paid_in,
                    when,
                    note,
                    reason,
                )
            )
        else:
            note = "no attempt holds this receipt" + (f"; {len(found)} possible attempts" if found else "")
            lines.append(
                ReportLine(Category.MISSING_ON_OUR_SIDE, receipt, None, None, None, paid_in, when, note)
            )
    return lines


def _fmt(amount: Decimal) -> str:
    return str(int(amount)) if amount == amount.to_integral_value() else f"{amount:.2f}"


def format_amount(amount: Decimal | int | None) -> str:
    """Whole shillings without decimals; fractions (rare, e.g. charges) with two."""
    if amount is None:
        return ""
    return _fmt(Decimal(amount))
