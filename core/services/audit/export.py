"""Reading the audit trail: verify the chain in the database, export it as JSONL.

Both stream in seq order with keyset pagination, so neither grows with the log.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol, TextIO

from sqlalchemy import Row, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditEntry
from core.db.uow import UnitOfWork
from core.services.audit.chain import ChainRecord, ChainVerifier, VerifyResult, canonical_json

BATCH_SIZE = 1000


# -- reading: verify and export -------------------------------------------------------------


class AsyncTextWriter(Protocol):
    """Anything with ``write(str)``; an awaitable result is awaited."""

    def write(self, data: str, /) -> Any: ...


Source = UnitOfWork | AsyncSession


async def verify_chain(source: Source, *, batch_size: int = BATCH_SIZE) -> VerifyResult:
    """Recompute every hash in seq order, streaming in batches; names the first broken entry."""
    verifier = ChainVerifier()
    async with _reader(source) as read:
        async for batch in _batches(read, batch_size=batch_size):
            for rec in batch:
                if not verifier.feed(rec):
                    return verifier.result()
    return verifier.result()


async def export_jsonl(
    source: Source,
    out: TextIO | AsyncTextWriter,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Write one JSON object per entry (seq order); returns how many were written.

    With ``since``/``until`` the export is the contiguous seq range from the first entry at or
    after ``since`` to the last entry before ``until``, so the slice verifies on its own.
    """
    written = 0
    async with _reader(source) as read:
        lo_q = select(func.min(AuditEntry.seq))
        hi_q = select(func.max(AuditEntry.seq))
        if since is not None:
            lo_q = lo_q.where(AuditEntry.at >= since)
        if until is not None:
            hi_q = hi_q.where(AuditEntry.at < until)
        lo = (await read(lo_q))[0][0]
        hi = (await read(hi_q))[0][0]
        if lo is None or hi is None or lo > hi:
            return 0
        async for batch in _batches(read, batch_size=batch_size, start_after=lo - 1, stop_at=hi):
            for rec in batch:
                result = out.write(canonical_json(rec.to_export()) + "\n")
                if inspect.isawaitable(result):
                    await result
                written += 1
    return written


Reader = Callable[[Select[Any]], Awaitable[Sequence[Row[Any]]]]


@asynccontextmanager
async def _reader(source: Source) -> AsyncIterator[Reader]:
    """A query runner. For a UnitOfWork every query is its own short read transaction
    (SQLite's BEGIN IMMEDIATE would otherwise lock writers out for the whole scan); a
    session, or a unit of work the caller already entered, is used as the caller left it."""
    if isinstance(source, UnitOfWork) and not hasattr(source, "session"):
        async with source:

            async def run_and_release(query: Select[Any]) -> Sequence[Row[Any]]:
                rows = (await source.session.execute(query)).all()
                await source.session.rollback()
                return rows

            yield run_and_release
        return
    session = source.session if isinstance(source, UnitOfWork) else source

    async def run(query: Select[Any]) -> Sequence[Row[Any]]:
        return (await session.execute(query)).all()

    yield run


async def _batches(
    read: Reader, *, batch_size: int, start_after: int = 0, stop_at: int | None = None
) -> AsyncIterator[list[ChainRecord]]:
    # Keyset pagination on seq; plain columns, so no ORM identity map grows with the log.
    last = start_after
    while True:
        query = (
            select(
                AuditEntry.seq,
                AuditEntry.at,
                AuditEntry.actor,
                AuditEntry.action,
                AuditEntry.subject_type,
                AuditEntry.subject_id,
                AuditEntry.details,
                AuditEntry.prev_hash,
                AuditEntry.hash,
            )
            .where(AuditEntry.seq > last)
            .order_by(AuditEntry.seq)
            .limit(batch_size)
        )
        if stop_at is not None:
            query = query.where(AuditEntry.seq <= stop_at)
        rows = await read(query)
        if not rows:
            return
        yield [ChainRecord(**row._mapping) for row in rows]
        last = rows[-1][0]
        if len(rows) < batch_size:
            return
