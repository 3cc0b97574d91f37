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
    _wakeups: dict[Wake, asyncio.Event] = field(default_factory=dict, repr=False)

    def wakeup(self, worker: Wake) -> asyncio.Event:
        """The event a background worker waits on between polls."""
        return self._wakeups.setdefault(Wake(worker), asyncio.Event())

    def wake(self, worker: Wake) -> None:
        """Tell an in-process worker there is new work (call after the commit that made it)."""
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
