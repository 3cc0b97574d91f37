"""The process's shared resources, built once by the composition root and handed to adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.config import Settings
from core.db.engine import create_engine, session_factory
from core.db.types import utcnow
from core.db.uow import UnitOfWork


@dataclass
class Runtime:
    """Settings, database and clock; ``components`` reports the health of optional parts."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Callable[[], datetime] = utcnow
    components: dict[str, str] = field(default_factory=dict)
    _wakeups: dict[str, asyncio.Event] = field(default_factory=dict, repr=False)

    def wakeup(self, worker: str) -> asyncio.Event:
        """The event a background worker waits on between polls."""
        return self._wakeups.setdefault(worker, asyncio.Event())

    def wake(self, worker: str) -> None:
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
