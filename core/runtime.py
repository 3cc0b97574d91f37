"""The process's shared resources, built once by the composition root and handed to adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.config import Settings
from core.db.engine import create_engine, session_factory
from core.db.types import utcnow
from core.db.uow import UnitOfWork


class Wake(StrEnum):
    """The in-process workers a commit can wake (instead of waiting for their next poll)."""

    OUTBOX = "outbox"  # the notification dispatcher: new messages were queued
    SETTLEMENT = "settlement"  # the settlement worker: callbacks were stored, or a push was answered
    PAYMENTS = "payments"  # watchers of payment progress (the chat's progress messages)


@dataclass
class Runtime:
    """Settings, database and clock; ``components`` reports the health of optional parts."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Callable[[], datetime] = utcnow
    components: dict[str, str] = field(default_factory=dict)
    # What this process is (role, what it runs, how wake-ups cross processes): /healthz, /metrics.
    process: dict[str, str] = field(default_factory=dict)
    # Where wake-ups also go to other processes (core/wake_signal.py: NOTIFY on PostgreSQL);
    # None in a single process (role "all").
    broadcast: Callable[[Wake], None] | None = field(default=None, repr=False)
    _wakeups: dict[Wake, asyncio.Event] = field(default_factory=dict, repr=False)

    def wakeup(self, worker: Wake) -> asyncio.Event:
        """The event a background worker waits on between polls."""
        return self._wakeups.setdefault(Wake(worker), asyncio.Event())

    def wake(self, worker: Wake) -> None:
        """Tell the workers there is new work (call after the commit that made it).

        In this process the worker's event is set; with ``broadcast`` (split roles on
        PostgreSQL) the other processes' workers are told as well.
        """
        self.wake_here(worker)
        if self.broadcast is not None:
            self.broadcast(Wake(worker))

    def wake_here(self, worker: Wake) -> None:
        """Set this process's event only (what a signal from another process does)."""
        self.wakeup(worker).set()

    def uow(self) -> UnitOfWork:
        """A fresh unit of work (one transaction)."""
        return UnitOfWork(self.sessions)

    async def close(self) -> None:
        await self.engine.dispose()


def build_runtime(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> Runtime:
    """Create the engine and session factory for ``settings``."""
    engine = create_engine(settings.database_url)
    return Runtime(settings=settings, engine=engine, sessions=session_factory(engine), clock=clock)
