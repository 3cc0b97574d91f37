"""Conversation state per (channel, user) in ``dialog_states``, written compare-and-set.

Every write is ``UPDATE … SET version = version + 1 … WHERE id = :id AND version = :v``
(or an INSERT for a new user, guarded by the unique (channel, user_key) constraint). A
writer that read an older version changes nothing and is told so, which is how two
messages handled at the same time (two processes, or a double tap) cannot both advance
the same conversation. State lives only in the database, so it survives restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from core.db.models import DialogState
from core.runtime import Runtime

IDLE = "idle"
IDLE_TIMEOUT = timedelta(minutes=30)


@dataclass
class Snapshot:
    """One read of a conversation: where it is, its data and the version that was read."""

    channel: str
    user_key: str
    row_id: int | None
    step: str
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    expired: bool = False  # a step was in progress but idle for longer than the timeout


class DialogStore:
    """Loads and saves conversation state; ``save`` is a compare-and-set on ``version``."""

    def __init__(self, runtime: Runtime, *, idle_timeout: timedelta = IDLE_TIMEOUT) -> None:
        self.runtime = runtime
        self.idle_timeout = idle_timeout

    async def load(self, channel: str, user_key: str) -> Snapshot:
        """The current state; an expired one comes back as idle with ``expired`` set."""
        now = self.runtime.clock()
        async with self.runtime.uow() as uow:
            row = await uow.session.scalar(
                select(DialogState).where(DialogState.channel == channel, DialogState.user_key == user_key)
            )
            if row is None:
                return Snapshot(channel, user_key, None, IDLE)
            data = dict(row.data or {})
            if row.expires_at <= now:
                return Snapshot(channel, user_key, row.id, IDLE, {}, row.version, expired=row.step != IDLE)
            return Snapshot(channel, user_key, row.id, row.step, data, row.version)

    async def save(self, snapshot: Snapshot, step: str, data: dict[str, Any]) -> Snapshot | None:
        """Write ``step``/``data`` if nobody changed the row since ``snapshot``; else None."""
        now = self.runtime.clock()
        expires = now + self.idle_timeout
        async with self.runtime.uow() as uow:
            if snapshot.row_id is None:
                row = DialogState(
                    channel=snapshot.channel,
                    user_key=snapshot.user_key,
                    step=step,
                    data=data,
                    version=1,
                    updated_at=now,
                    expires_at=expires,
                )
                uow.session.add(row)
                try:
                    await uow.commit()
                except IntegrityError:  # another handler created it first
                    return None
                return Snapshot(snapshot.channel, snapshot.user_key, row.id, step, data, 1)
            result = await uow.session.execute(
                update(DialogState)
                .where(DialogState.id == snapshot.row_id, DialogState.version == snapshot.version)
                .values(
                    step=step, data=data, version=snapshot.version + 1, updated_at=now, expires_at=expires
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            await uow.commit()
        return Snapshot(
            snapshot.channel, snapshot.user_key, snapshot.row_id, step, data, snapshot.version + 1
        )

    async def purge(self, *, older_than: timedelta = timedelta(days=30)) -> int:
        """Delete conversations untouched for ``older_than`` (housekeeping); returns how many."""
        cutoff = self.runtime.clock() - older_than
        async with self.runtime.uow() as uow:
            result = await uow.session.execute(delete(DialogState).where(DialogState.updated_at < cutoff))
            await uow.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
