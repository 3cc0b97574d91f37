"""The transaction list as a streamed CSV report (Property 40).

One row per payment attempt, the same filters and order as the list page, a header row,
ISO 8601 times with their offset (Africa/Nairobi), whole-shilling amounts. Rows are read in
keyset-paginated batches, each in its own short read transaction, and handed out as text
chunks: memory stays flat however many rows match, and SQLite writers (every transaction
there is BEGIN IMMEDIATE) are never locked out for the whole export.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or
carriage return) as a formula; such cells get a leading apostrophe (CSV injection guard).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_

from core.db.models import PaymentAttempt
from core.db.uow import UnitOfWork
from core.services.reporting.transactions import (
    ParsedFilter,
    TransactionFilter,
    TransactionRow,
    check_filter,
    filtered_rows_query,
    row_of,
)

BATCH_SIZE = 1000
HEADER = (
    "attempt_id",
    "created_at",
    "amount_kes",
    "paid_amount_kes",
    "client",
    "practitioner",
    "booking_reference",
    "mpesa_receipt",
    "status",
    "failure_reason",
    "failure_at",
    "environment",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def csv_cells(row: TransactionRow) -> list[str | int]:
    """The CSV cells of one row, in HEADER order (numbers stay numbers)."""
    text = [
        row.client_name or "",
        row.therapist_name,
        row.booking_reference,
        row.receipt or "",
        row.status,
        row.failure_reason or "",
    ]
    client, practitioner, reference, receipt, status, reason = (neutralise(t) for t in text)
    return [
        row.id,
        _iso(row.created_local),
        row.amount_kes,
        "" if row.paid_amount_kes is None else row.paid_amount_kes,
        client,
        practitioner,
        reference,
        receipt,
        status,
        reason,
        _iso(row.failure_at),
        neutralise(row.environment),
    ]


def _render(rows: Sequence[Sequence[str | int]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def stream_transactions_csv(
    uow_factory: Callable[[], UnitOfWork], filt: TransactionFilter, *, batch_size: int = BATCH_SIZE
) -> AsyncIterator[str]:
    """Yield the CSV text: the header, then one chunk per batch of at most ``batch_size`` rows."""
    yield _render([HEADER])
    after: tuple[datetime, int] | None = None
    while True:
        query = filtered_rows_query(filt).limit(batch_size)
        if after is not None:
            at, attempt_id = after
            # Newest first, like the list: continue strictly below the last row of the batch.
            # The plain range on created_at lets the index drive the scan; the OR breaks ties.
            query = query.where(
                PaymentAttempt.created_at <= at,
                or_(PaymentAttempt.created_at < at, PaymentAttempt.id < attempt_id),
            )
        async with uow_factory() as uow:
            # Core execution: plain rows, no ORM loading machinery per row.
            connection = await uow.session.connection()
            batch = [row_of(r) for r in (await connection.execute(query)).all()]
        if not batch:
            return
        yield _render([csv_cells(r) for r in batch])
        if len(batch) < batch_size:
            return
        after = (batch[-1].created_at, batch[-1].id)


@dataclass(frozen=True)
class CsvExport:
    """A checked export: ``errors`` (nothing to stream) or ``chunks()`` to stream."""

    uow_factory: Callable[[], UnitOfWork]
    filter: TransactionFilter
    errors: tuple[str, ...] = ()

    def chunks(self, *, batch_size: int = BATCH_SIZE) -> AsyncIterator[str]:
        return stream_transactions_csv(self.uow_factory, self.filter, batch_size=batch_size)

    @property
    def filename(self) -> str:
        f = self.filter
        span = "-".join(d.isoformat() for d in (f.start, f.end) if d) or "all"
        return f"transactions-{f.environment}-{span}.csv"


async def open_export(uow_factory: Callable[[], UnitOfWork], parsed: ParsedFilter) -> CsvExport:
    """Check the filter (an unknown practitioner included) before anything is streamed."""
    async with uow_factory() as uow:
        errors = await check_filter(uow.session, parsed)
    return CsvExport(uow_factory, parsed.filter, errors)
