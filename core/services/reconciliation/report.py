"""The reconciliation report: lines by category, counts, CSV and a one-paragraph summary (Property 59)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TextIO

from core.services.reconciliation.compare import DISCREPANCIES, Category, ReportLine, format_amount
from core.services.reconciliation.statement_csv import NAIROBI

CSV_COLUMNS = (
    "category",
    "receipt",
    "attempt_id",
    "booking_reference",
    "amount_ours",
    "amount_mpesa",
    "time",
    "note",
)
# Spreadsheet programs execute cells starting with these; text from outside must not.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class ReconciliationReport:
    """Everything one reconciliation run found, grouped by category."""

    environment: str
    generated_at: datetime
    period_start: datetime | None = None
    period_end: datetime | None = None
    statement_rows: int = 0
    ignored_receipts: int = 0
    queried: int = 0
    matched: list[ReportLine] = field(default_factory=list)
    missing_on_our_side: list[ReportLine] = field(default_factory=list)
    missing_on_mpesa_side: list[ReportLine] = field(default_factory=list)
    amount_mismatch: list[ReportLine] = field(default_factory=list)
    status_mismatch: list[ReportLine] = field(default_factory=list)
    not_completed: list[ReportLine] = field(default_factory=list)
    unresolved: list[ReportLine] = field(default_factory=list)  # in review, still pending, query failed
    flagged_attempt_ids: list[int] = field(default_factory=list)  # newly flagged by this run

    def add(self, lines: Iterable[ReportLine]) -> None:
        """File each line under its category."""
        for line in lines:
            self._bucket(line.category).append(line)

    @property
    def lines(self) -> list[ReportLine]:
        """All lines, discrepancies first."""
        return [
            *self.amount_mismatch,
            *self.missing_on_our_side,
            *self.missing_on_mpesa_side,
            *self.status_mismatch,
            *self.unresolved,
            *self.not_completed,
            *self.matched,
        ]

    @property
    def discrepancies(self) -> list[ReportLine]:
        return [line for line in self.lines if line.category in DISCREPANCIES]

    @property
    def ok(self) -> bool:
        """True when nothing disagrees with M-Pesa."""
        return not self.discrepancies

    @property
    def counts(self) -> dict[str, int]:
        """Number of lines per category, plus the totals a reader checks first."""
        out = {category.value: 0 for category in Category}
        for line in self.lines:
            out[line.category.value] += 1
        out["discrepancies"] = len(self.discrepancies)
        out["flagged"] = len(self.flagged_attempt_ids)
        return out

    def to_csv(self, out: TextIO) -> None:
        """Write the report as CSV with a header row (times in Africa/Nairobi)."""
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for line in self.lines:
            writer.writerow(
                [
                    line.category.value,
                    _cell(line.receipt or ""),
                    "" if line.attempt_id is None else line.attempt_id,
                    _cell(line.booking_reference or ""),
                    _cell(format_amount(line.amount_ours)),
                    _cell(format_amount(line.amount_mpesa)),
                    _local(line.time),
                    _cell(line.note),
                ]
            )

    def summary(self) -> str:
        """One paragraph for the admin: scope, counts and what was flagged."""
        c = self.counts
        scope = f"Reconciliation of {self.environment} payments"
        if self.period_start and self.period_end:
            last_second = self.period_end - timedelta(seconds=1)  # the period's end is exclusive
            scope += f" for {_local(self.period_start)} to {_local(last_second)} (Africa/Nairobi)"
        sources = []
        if self.statement_rows:
            sources.append(f"{self.statement_rows} statement rows")
        if self.queried:
            sources.append(f"{self.queried} STK Queries")
        scope += f" against {' and '.join(sources)}" if sources else " (no M-Pesa records given)"
        parts = [
            f"{c['matched']} matched",
            f"{c['missing_on_our_side']} missing on our side",
            f"{c['missing_on_mpesa_side']} missing on M-Pesa's side",
            f"{c['amount_mismatch']} amount mismatches",
            f"{c['status_mismatch']} status mismatches",
        ]
        tail = []
        if c["not_completed"]:
            tail.append(f"{c['not_completed']} statement transactions were not completed")
        if self.unresolved:
            tail.append(
                f"{len(self.unresolved)} attempts are still unresolved (in review, pending or unreachable)"
            )
        verdict = (
            "Everything agrees with M-Pesa."
            if self.ok
            else f"{c['discrepancies']} discrepancies; {c['flagged']} attempts newly flagged for review."
        )
        extra = (" " + "; ".join(tail) + ".") if tail else ""
        return f"{scope}: {', '.join(parts)}.{extra} {verdict}"

    def _bucket(self, category: Category) -> list[ReportLine]:
        if category in (Category.NEEDS_REVIEW, Category.QUERY_PENDING, Category.QUERY_FAILED):
            return self.unresolved
        return {
            Category.MATCHED: self.matched,
            Category.MISSING_ON_OUR_SIDE: self.missing_on_our_side,
            Category.MISSING_ON_MPESA_SIDE: self.missing_on_mpesa_side,
            Category.AMOUNT_MISMATCH: self.amount_mismatch,
            Category.STATUS_MISMATCH: self.status_mismatch,
            Category.NOT_COMPLETED: self.not_completed,
        }[category]


def _local(when: datetime | None) -> str:
    return "" if when is None else when.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S")


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text
