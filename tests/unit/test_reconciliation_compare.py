"""The pure comparison and the report, without a database."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.services.reconciliation.compare import (
    DISCREPANCIES,
    Category,
    OurPayment,
    classify_query,
    compare,
)
from core.services.reconciliation.reconcile import merge_reason
from core.services.reconciliation.report import CSV_COLUMNS, ReconciliationReport
from core.services.reconciliation.statement_csv import StatementRow

START = datetime(2024, 2, 29, 21, 0, tzinfo=UTC)
END = datetime(2024, 3, 31, 21, 0, tzinfo=UTC)
T = datetime(2024, 3, 12, 7, 15, tzinfo=UTC)


def ours(
    attempt_id: int, receipt: str | None, amount: int = 2500, *, status: str = "PAID", when: datetime = T
) -> OurPayment:
    return OurPayment(
        attempt_id, f"SS{attempt_id:08d}", status, receipt, amount, when, when - timedelta(seconds=40)
    )


def row(
    receipt: str,
    paid_in: str = "2500.00",
    *,
    status: str = "Completed",
    withdrawn: str = "0",
    when: datetime = T,
    line: int = 1,
) -> StatementRow:
    return StatementRow(line, receipt, when, status, Decimal(paid_in), Decimal(withdrawn))


def by_category(lines: object) -> dict[Category, list[str | None]]:
    out: dict[Category, list[str | None]] = {}
    for line in lines:  # type: ignore[attr-defined]
        out.setdefault(line.category, []).append(line.receipt)
    return out


# Feature: mpesa-payment-integration, Property 57: Reconciliation Compares Transactions
def test_each_category() -> None:
    mine = [
        ours(1, "RCPT000001"),  # matched (the charge row with the same receipt is not money in)
        ours(2, "RCPT000002"),  # amount differs
        ours(3, "RCPT000003"),  # not in the statement, in its period
        ours(4, "RCPT000004", when=START - timedelta(days=3)),  # not in the statement, before its period
        ours(5, "RCPT000005"),  # statement shows it failed
    ]
    theirs = [
        row("RCPT000001"),
        row("RCPT000001", "0", withdrawn="25.00"),
        row("RCPT000002", "2400.00"),
        row("RCPT000005", status="Failed"),
        row("RCPTOTHER1", "1000.00"),  # money in that no attempt holds
        row("RCPTFAILED", status="Failed"),  # not ours, not completed
        row("RCPTCHARGE", "0", withdrawn="50.00"),  # a charge or transfer: not a payment
    ]
    result = compare(mine, theirs, period_start=START, period_end=END)
    assert by_category(result.lines) == {
        Category.MATCHED: ["RCPT000001"],
        Category.AMOUNT_MISMATCH: ["RCPT000002"],
        Category.MISSING_ON_MPESA_SIDE: ["RCPT000005", "RCPT000003"],
        Category.MISSING_ON_OUR_SIDE: ["RCPTOTHER1"],
        Category.NOT_COMPLETED: ["RCPTFAILED"],
    }
    assert result.ignored_receipts == 1
    flagged = {line.attempt_id: line.flag_reason for line in result.lines if line.flag_reason}
    assert set(flagged) == {2, 3, 5}
    assert flagged[2] == "reconciliation: receipt RCPT000002 amount differs (ours 2500 KES, M-Pesa 2400 KES)"
    assert all(line.flag_reason is None for line in result.lines if line.category not in DISCREPANCIES)


# Feature: mpesa-payment-integration, Property 58: Discrepancy Flags Transaction
def test_statement_payment_hints_the_one_attempt_that_fits() -> None:
    failed = ours(7, None, 4000, status="TIMED_OUT", when=T)
    other_amount = ours(8, None, 2000, status="FAILED", when=T)
    result = compare(
        [], [row("RCPTLATE01", "4000.00", when=T + timedelta(minutes=1))], candidates=[failed, other_amount]
    )
    [line] = result.lines
    assert (line.category, line.attempt_id) == (Category.MISSING_ON_OUR_SIDE, 7)
    assert line.flag_reason and "RCPTLATE01" in line.flag_reason
    assert "possibly attempt 7" in line.note

    # two attempts fit: no guess, nothing flagged
    twin = ours(9, None, 4000, status="CANCELLED", when=T)
    [line] = compare([], [row("RCPTLATE01", "4000.00", when=T)], candidates=[failed, twin]).lines
    assert (line.attempt_id, line.flag_reason) == (None, None)
    assert "2 possible attempts" in line.note


def test_duplicate_rows_from_overlapping_exports_count_once() -> None:
    result = compare(
        [ours(1, "RCPT000001")], [row("RCPT000001"), row("RCPT000001")], period_start=START, period_end=END
    )
    assert [line.category for line in result.lines] == [Category.MATCHED]


def test_unknown_period_never_claims_missing_on_mpesa_side() -> None:
    assert compare([ours(1, "RCPT000001")], []).lines == ()


@dataclass
class Answer:
    pending: bool
    result_code: int | str | None
    result_desc: str | None


# Feature: mpesa-payment-integration, Property 57: Reconciliation Compares Transactions
def test_query_answers() -> None:
    unclear = ours(1, None, status="UNCLEAR")
    review = ours(2, None, status="NEEDS_REVIEW")
    assert classify_query(
        unclear, Answer(False, "0", "The service request is processed successfully.")
    ).category == (Category.MISSING_ON_OUR_SIDE)
    mismatch = classify_query(unclear, Answer(False, 1032, "Request cancelled by user"))
    assert mismatch.category == Category.STATUS_MISMATCH
    assert (
        mismatch.flag_reason == "reconciliation: STK Query reports ResultCode 1032 Request cancelled by user"
    )
    assert classify_query(unclear, Answer(True, None, None)).category == Category.QUERY_PENDING
    in_review = classify_query(review, Answer(False, 0, "ok"))
    assert (in_review.category, in_review.flag_reason) == (Category.NEEDS_REVIEW, None)
    failed = classify_query(unclear, ConnectionError("could not reach 254712345678"))
    assert failed.category == Category.QUERY_FAILED
    assert "254712345678" not in failed.note


def test_merge_reason_is_idempotent_and_bounded() -> None:
    assert merge_reason(None, "a") == "a"
    assert merge_reason("a", "a") == "a"
    assert merge_reason("x", "a") == "x; a"
    long = merge_reason("x" * 290, "reconciliation: something long")
    assert len(long) == 300
    assert merge_reason(long, "reconciliation: something long") == long


# Feature: mpesa-payment-integration, Property 59: Reconciliation Generates Report
def test_report_csv_and_summary() -> None:
    result = compare(
        [ours(1, "RCPT000001"), ours(2, "RCPT000002"), ours(3, "RCPT000003")],
        [
            row("RCPT000001"),
            row("RCPT000002", "2400.50"),
            row("RCPTOTHER1", "10"),
        ],
        period_start=START,
        period_end=END,
    )
    report = ReconciliationReport(
        environment="production", generated_at=T, period_start=START, period_end=END
    )
    report.statement_rows = 3
    report.add(result.lines)
    report.flagged_attempt_ids = [2, 3]
    out = io.StringIO()
    report.to_csv(out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["category"] for r in rows] == [
        "amount_mismatch",
        "missing_on_our_side",
        "missing_on_mpesa_side",
        "matched",
    ]
    assert rows[0] == {
        "category": "amount_mismatch",
        "receipt": "RCPT000002",
        "attempt_id": "2",
        "booking_reference": "SS00000002",
        "amount_ours": "2500",
        "amount_mpesa": "2400.50",
        "time": "2024-03-12 10:15:00",
        "note": "amounts differ",
    }
    assert report.counts["matched"] == 1 and report.counts["discrepancies"] == 3
    summary = report.summary()
    assert summary == (
        "Reconciliation of production payments for 2024-03-01 00:00:00 to 2024-03-31 23:59:59 "
        "(Africa/Nairobi) against 3 statement rows: 1 matched, 1 missing on our side, "
        "1 missing on M-Pesa's side, 1 amount mismatches, 0 status mismatches. "
        "3 discrepancies; 2 attempts newly flagged for review."
    )
    assert "\n" not in summary
    assert not report.ok


def test_csv_cells_cannot_start_a_formula() -> None:
    report = ReconciliationReport(environment="production", generated_at=T)
    report.add([classify_query(ours(1, None, status="UNCLEAR"), Answer(False, "X", '=HYPERLINK("x")'))])
    out = io.StringIO()
    report.to_csv(out)
    note = list(csv.DictReader(io.StringIO(out.getvalue())))[0]["note"]
    assert not note.startswith("=")


# -- Hypothesis: every receipt in exactly one category, counts add up ------------------------

_receipts = st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=10, max_size=10)
_amounts = st.integers(1, 150_000)
_times = st.datetimes(
    min_value=datetime(2024, 2, 20), max_value=datetime(2024, 4, 10), timezones=st.just(UTC)
)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[OurPayment], list[StatementRow], list[OurPayment]]:
    receipts = draw(st.lists(_receipts, unique=True, max_size=25))
    mine: list[OurPayment] = []
    theirs: list[StatementRow] = []
    candidates: list[OurPayment] = []
    for index, receipt in enumerate(receipts):
        where = draw(st.sampled_from(["both", "ours", "theirs"]))
        amount = draw(_amounts)
        when = draw(_times)
        if where in ("both", "ours"):
            mine.append(ours(index + 1, receipt, amount, when=when))
        if where in ("both", "theirs"):
            paid = amount if draw(st.booleans()) else draw(st.integers(0, 150_000))
            status = draw(st.sampled_from(["Completed", "Completed", "Completed", "Failed", "Cancelled"]))
            theirs.append(row(receipt, str(paid), status=status, when=when, line=index + 2))
            if draw(st.booleans()):  # its charge row
                theirs.append(row(receipt, "0", withdrawn=str(draw(st.integers(0, 200))), when=when))
    theirs = draw(st.permutations(theirs))
    # unpaid pushes without a receipt: they may be hinted, but never change the categories
    for n in range(draw(st.integers(0, 4)) if theirs else 0):
        near = draw(st.sampled_from(theirs))  # pushed just before some statement payment
        when = near.completion_time - timedelta(minutes=draw(st.integers(0, 12)))  # type: ignore[operator]
        candidates.append(ours(1000 + n, None, int(near.paid_in), status="TIMED_OUT", when=when))
    return mine, list(theirs), candidates


# Feature: mpesa-payment-integration, Property 57: Reconciliation Compares Transactions
# Feature: mpesa-payment-integration, Property 59: Reconciliation Generates Report
@settings(max_examples=300, deadline=None)
@given(scenario())
def test_every_receipt_lands_in_exactly_one_category(
    data: tuple[list[OurPayment], list[StatementRow], list[OurPayment]],
) -> None:
    mine, theirs, candidates = data
    result = compare(mine, theirs, period_start=START, period_end=END, candidates=candidates)
    seen = Counter(line.receipt for line in result.lines)
    assert all(n == 1 for n in seen.values()), seen

    statement_receipts = {r.receipt for r in theirs}
    completed = {r.receipt for r in theirs if r.completed}
    our_receipts = {o.receipt for o in mine}
    in_period = {o.receipt for o in mine if START <= o.time < END}
    expected = statement_receipts | (our_receipts & in_period)
    assert set(seen) | _ignored(theirs, our_receipts) == expected
    assert not set(seen) & _ignored(theirs, our_receipts)

    counts = Counter(line.category for line in result.lines)
    both = len(completed & our_receipts)
    assert counts[Category.MATCHED] + counts[Category.AMOUNT_MISMATCH] == both
    assert counts[Category.MATCHED] + counts[Category.AMOUNT_MISMATCH] + counts[
        Category.MISSING_ON_OUR_SIDE
    ] + (result.ignored_receipts) == len(completed)
    ours_compared = our_receipts & (statement_receipts | in_period)
    assert counts[Category.MATCHED] + counts[Category.AMOUNT_MISMATCH] + counts[
        Category.MISSING_ON_MPESA_SIDE
    ] == len(ours_compared)
    assert counts[Category.NOT_COMPLETED] == len((statement_receipts - completed) - our_receipts)

    hinted = [
        line.attempt_id for line in result.lines if line.attempt_id is not None and line.attempt_id >= 1000
    ]
    assert len(hinted) == len(set(hinted))  # an attempt is suggested for one receipt at most
    for line in result.lines:  # every discrepancy about one of our attempts asks for a flag
        assert (line.flag_reason is not None) == (
            line.category in DISCREPANCIES and line.attempt_id is not None
        )
        if line.category is Category.MATCHED:
            assert line.amount_mpesa == line.amount_ours

    report = ReconciliationReport(environment="simulator", generated_at=T)
    report.add(result.lines)
    assert sum(v for k, v in report.counts.items() if k in {c.value for c in Category}) == len(result.lines)
    out = io.StringIO()
    report.to_csv(out)
    assert len(out.getvalue().splitlines()) == len(result.lines) + 1


def _ignored(theirs: list[StatementRow], our_receipts: set[str | None]) -> set[str | None]:
    """Completed receipts with no money in and not ours: charges, transfers."""
    totals: dict[str, Decimal] = {}
    for r in theirs:
        if r.completed:
            totals[r.receipt] = totals.get(r.receipt, Decimal(0)) + r.paid_in
    return {receipt for receipt, total in totals.items() if total == 0 and receipt not in our_receipts}
