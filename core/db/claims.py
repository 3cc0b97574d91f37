"""Claims with leases: how several worker processes share one queue table safely.

Every background loop that picks rows out of a table (the outbox dispatcher, the reminder
pass, the payment watchdog, the settlement of stored callbacks) claims them here, so the rule
lives in one place:

- **Pick**: ``SELECT id … WHERE <due> AND <lease free> ORDER BY … LIMIT n``; on PostgreSQL
  ``FOR UPDATE SKIP LOCKED``, so concurrent workers take *different* rows instead of queueing
  behind each other's row locks. (SQLite runs every transaction ``BEGIN IMMEDIATE``,
  core.db.engine: one writer at a time, so nobody else is mid-claim.)
- **Take**: ``UPDATE … SET claimed_by = me, claimed_until = lease WHERE id IN (…) AND <due>
  AND <lease free> RETURNING …``: a compare-and-set; the rows it returns are ours, whatever
  the other workers did in between. That is the decision on both backends.
- **Lease**: a claim is held until ``claimed_until``. A worker that dies (SIGKILL, power cut)
  simply stops renewing; once the lease has run out the row is claimable again, by anyone.
- **Hold before a side effect**: before a worker does something that must not happen twice
  (send a message, push or query M-Pesa) it checks that its lease outlasts that step and
  extends it with another compare-and-set (:func:`hold`) if not; if the row is no longer
  its own (it waited too long and someone took it over), it drops the row.
- **Release**: writes that finish an item clear ``claimed_until`` / ``claimed_by`` and check
  the holder (:func:`release` or the caller's own conditional UPDATE).

Leases compare against each worker's clock (``runtime.clock()``): the machines' clocks must
agree (NTP) to well within the slack between a lease and the step it protects.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import CallbackInbox, Outbox, PaymentAttempt, Reminder
from core.db.statements import dialect_name

Claimable = type[Outbox] | type[Reminder] | type[PaymentAttempt] | type[CallbackInbox]
WORKER_ID_MAX = 64


def new_worker_id(kind: str) -> str:
    """A claimant name unique across processes and machines: ``kind@host:pid:random``.

    Each loop object takes its own (two dispatchers in one process are two claimants).
    """
    host = socket.gethostname()[:24]
    return f"{kind}@{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:WORKER_ID_MAX]


def _bookkeeping(model: Claimable, **values: Any) -> dict[str, Any]:
    """``values`` plus, on a table with ``updated_at``, that column kept as it is: a lease is
    bookkeeping, not a change of the item (the admin's "last change" must not move)."""
    if hasattr(model, "updated_at"):
        values.setdefault("updated_at", model.updated_at)
    return values


def lease_free(model: Claimable, now: datetime) -> ColumnElement[bool]:
    """Nobody holds the row: never claimed, released, or the holder's lease ran out."""
    return or_(model.claimed_until.is_(None), model.claimed_until < now)


async def claim_batch(
    session: AsyncSession,
    model: Claimable,
    *,
    due: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: int,
    now: datetime,
    until: datetime,
    worker: str,
    values: Mapping[str, Any] | None = None,
    returning: Sequence[Any] = (),
) -> list[Row[Any]]:
    """Claim up to ``limit`` rows matching ``due`` for ``worker`` until ``until``.

    Returns the claimed rows (``id`` first, then the ``returning`` columns) in ``order_by``
    order. ``values`` are set in the same UPDATE (e.g. ``attempts + 1``). The caller commits
    (at once, unless the whole job is one transaction as for reminders).
    """
    pick = select(model.id).where(due, lease_free(model, now)).order_by(*order_by).limit(limit)
    if dialect_name(session) == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list((await session.scalars(pick)).all())
    if not ids:
        return []
    take = (
        update(model)
        .where(model.id.in_(ids), due, lease_free(model, now))
        .values(**_bookkeeping(model, claimed_until=until, claimed_by=worker, **dict(values or {})))
        .returning(model.id, *returning)
        .execution_options(synchronize_session=False)
    )
    rows = list((await session.execute(take)).all())
    position = {row_id: i for i, row_id in enumerate(ids)}
    rows.sort(key=lambda row: position[row[0]])
    return rows


def held_by(model: Claimable, row_id: int, *, worker: str, until: datetime) -> ColumnElement[bool]:
    """The row is still the one ``worker`` claimed until ``until`` (nobody took it over)."""
    return (model.id == row_id) & (model.claimed_by == worker) & (model.claimed_until == until)


async def hold(
    session: AsyncSession,
    model: Claimable,
    row_id: int,
    *,
    worker: str,
    held_until: datetime,
    until: datetime,
    still: ColumnElement[bool] | None = None,
) -> bool:
    """Extend ``worker``'s lease on a row from ``held_until`` to ``until``; False if it is not
    ours any more (taken over after our lease ran out) or no longer matches ``still``."""
    condition = held_by(model, row_id, worker=worker, until=held_until)
    if still is not None:
        condition = condition & still
    result = await session.execute(
        update(model)
        .where(condition)
        .values(**_bookkeeping(model, claimed_until=until))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, model: Claimable, row_ids: Sequence[int], *, worker: str) -> int:
    """Give back ``worker``'s claims on ``row_ids`` (the rows become claimable at once)."""
    if not row_ids:
        return 0
    result = await session.execute(
        update(model)
        .where(model.id.in_(list(row_ids)), model.claimed_by == worker)
        .values(**_bookkeeping(model, claimed_until=None, claimed_by=None))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


__all__ = ["claim_batch", "held_by", "hold", "lease_free", "new_worker_id", "release"]
