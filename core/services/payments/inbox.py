"""The M-Pesa callback inbox: how a callback is stored, claimed by a settlement worker, and read back.

The intake stores each verified callback with the fields it parsed (``inbox_row``); settlement
reads those fields back (``stored_result``) instead of parsing the raw body again. A row stored
without them (before migration 0006, or a body whose Amount is not whole) is parsed from
``raw_body`` as before, by the reference parser.

Several settlement workers (processes) may share one database. Each claims a chunk of rows
before settling them (``claim``, through the shared ``core.db.claims.claim_batch``): a
compare-and-set UPDATE of the unclaimed — or lapsed — rows, picked on PostgreSQL with
``SELECT … FOR UPDATE SKIP LOCKED`` so two workers never wait for, nor take, each other's rows.
A claim is a lease (``LEASE_S``): a worker that dies mid-chunk leaves rows that another worker
takes once the lease has lapsed. The UPDATE that marks a row settled also requires the claim
to be the settling worker's own (``mark_settled``), so even a worker that outlived its lease
cannot settle a row another worker has taken since.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import claims
from core.db.models import CallbackInbox
from core.db.uow import TransitionConflict
from core.domain.settlement_rules import StkResult
from core.mpesa import InvalidCallback, parse_stk_callback
from core.mpesa.callback import CallbackFields
from core.mpesa.result_codes import normalise_result_code
from core.runtime import Runtime

PROVIDER = "mpesa_stk"
_INBOX = cast(Table, CallbackInbox.__table__)
MAX_SWEEP_ATTEMPTS = 20
# Far longer than a chunk takes to settle (256 rows: well under a second), short enough that a
# dead worker's rows are taken over soon; the sweep releases what it leaves at once anyway.
LEASE_S = 30.0


class ClaimLost(TransitionConflict):
    """The row is no longer this worker's (its lease lapsed and another worker took it)."""

    def __init__(self, row_id: int) -> None:
        super().__init__("inbox row", row_id, "settle (claimed by another worker)")


def inbox_key(checkout_request_id: str, result_code: int | str) -> str:
    """De-duplication key: a repeat of the same result is a no-op, but a different result for
    the same push (a success after a failure) is kept — money reported is never dropped."""
    return f"{checkout_request_id}:{result_code}"[:100]


def inbox_row(provider_id: str, raw_body: str, fields: CallbackFields) -> dict[str, Any]:
    """The inbox row of a verified callback: the raw body, and the parsed fields settlement reads.

    A non-whole Amount keeps its exact raw value only in the body (its review reason quotes it),
    so such a row is stored without fields and settlement parses the body.
    """
    storable = fields.amount is not None or fields.amount_raw is None
    return {
        "provider": PROVIDER,
        "provider_id": provider_id,
        "raw_body": raw_body,
        "checkout_request_id": fields.checkout_request_id if storable else None,
        "result_code": str(fields.result_code) if storable else None,
        "result_desc": fields.result_desc if storable else None,
        "amount": fields.amount if storable else None,
        "receipt": fields.receipt if storable else None,
        "phone": fields.phone if storable else None,
        "transaction_time": fields.transaction_date if storable else None,
    }


def result_from_callback(callback: CallbackFields) -> StkResult:
    """The settlement input for a parsed callback."""
    return StkResult(
        checkout_request_id=callback.checkout_request_id,
        result_code=callback.result_code,
        result_desc=callback.result_desc,
        source="callback",
        amount=callback.amount,
        amount_raw=callback.amount_raw,
        receipt=callback.receipt,
        transaction_time=callback.transaction_date,
        phone=callback.phone,
    )


@dataclass(frozen=True)
class InboxItem:
    """A claimed row: its stored result, or (no fields stored) its raw body to parse."""

    inbox_id: int
    raw_body: str | None
    result: StkResult | None


def stored_result(row: Any) -> StkResult:
    """The StkResult of a row stored with its fields (``result_code`` not NULL)."""
    code = normalise_result_code(row.result_code)  # "0" -> 0, as the parser gave it
    assert code is not None
    return StkResult(
        checkout_request_id=row.checkout_request_id,
        result_code=code,
        result_desc=row.result_desc,
        source="callback",
        amount=row.amount,
        amount_raw=row.amount,
        receipt=row.receipt,
        transaction_time=row.transaction_time,
        phone=row.phone,
    )


def parsed_or_none(raw_body: str) -> StkResult | None:
    try:
        return result_from_callback(CallbackFields.of(parse_stk_callback(raw_body)))
    except InvalidCallback:  # the intake stores only bodies that parse; settle_inbox_row reports it
        return None


def _item(row: Any, bodies: dict[int, str]) -> InboxItem:
    if row.result_code is None:
        raw_body = bodies[row.id]
        return InboxItem(row.id, raw_body, parsed_or_none(raw_body))
    return InboxItem(row.id, None, stored_result(row))


async def claim(session: AsyncSession, worker: str, *, limit: int, now: datetime) -> list[InboxItem]:
    """Claim up to ``limit`` unsettled rows (oldest first) for ``worker`` until now + LEASE_S
    (``core.db.claims``: SKIP LOCKED pick, compare-and-set take)."""
    i = CallbackInbox
    rows = await claims.claim_batch(
        session,
        i,
        due=(i.provider == PROVIDER) & i.processed_at.is_(None) & (i.attempts < MAX_SWEEP_ATTEMPTS),
        order_by=[i.id],
        limit=limit,
        now=now,
        until=now + timedelta(seconds=LEASE_S),
        worker=worker,
        returning=[
            i.checkout_request_id, i.result_code, i.result_desc, i.amount, i.receipt, i.phone,
            i.transaction_time,
        ],
    )
    unparsed = [row.id for row in rows if row.result_code is None]  # stored without fields
    bodies: dict[int, str] = {}
    if unparsed:
        c = _INBOX.c
        found = await session.execute(select(c.id, c.raw_body).where(c.id.in_(unparsed)))
        bodies = {row_id: body for row_id, body in found.all()}
    return [_item(row, bodies) for row in rows]


async def mark_settled(session: AsyncSession, worker: str, ids: Sequence[int], *, now: datetime) -> None:
    """Mark claimed rows settled (and free the claim); ClaimLost if any is no longer ``worker``'s."""
    c = _INBOX.c
    result = await session.execute(
        update(_INBOX)
        .where(c.id.in_(list(ids)), c.claimed_by == worker)
        .values(processed_at=now, attempts=c.attempts + 1, claimed_by=None, claimed_until=None)
    )
    if result.rowcount != len(ids):  # type: ignore[attr-defined]
        raise ClaimLost(ids[0])


async def release(session: AsyncSession, worker: str, ids: Sequence[int]) -> None:
    """Give back the claimed ``ids`` ``worker`` did not settle (not ready yet, failed, stopping);
    settled rows no longer name a holder, so they are left alone."""
    await claims.release(session, CallbackInbox, ids, worker=worker)


_SQLITE_TURNS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def write_turn(runtime: Runtime) -> contextlib.AbstractAsyncContextManager[object]:
    """SQLite: the intake and the settlement worker take turns at the database (FIFO).

    SQLite has one writer at a time (every transaction here begins IMMEDIATE), and a connection
    that finds the lock taken polls for it with growing sleeps. A settlement worker working
    through a backlog starts its next transaction the moment it commits, so the intake's
    group commit - and with it every acknowledgement - would wait behind it for seconds. An
    asyncio lock hands the database over in arrival order instead. PostgreSQL: no turns needed.
    """
    engine = runtime.engine.sync_engine
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _SQLITE_TURNS.get(engine)
    if lock is None:
        lock = _SQLITE_TURNS[engine] = asyncio.Lock()
    return lock
