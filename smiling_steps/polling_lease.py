"""One poller per bot token among several workers on PostgreSQL (Telegram refuses a second getUpdates).

Each ``worker`` in polling mode tries a session-level advisory lock (``pg_try_advisory_lock``) on
a connection of its own; the one that holds it polls, the others only send and edit (standby) and
try again every ``retry_s``. A holder that stops, dies or loses its connection releases the lock
with its session, and a standby worker takes over polling within ``retry_s`` (Telegram keeps the
updates meanwhile). A holder that sees its connection fail pauses polling first, so two pollers
overlap at most for one keep-alive. SQLite carries one worker only, so it has no lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.runtime import Runtime
from core.wake_signal import KEEPALIVE_S, KEEPALIVE_TIMEOUT_S, asyncpg_dsn

log = logging.getLogger(__name__)

POLLING_LOCK_KEY = 0x5353_7467_706F_6C6C  # "SStgpoll": the advisory lock of Telegram polling
RETRY_S = 5.0


class PollingLease:
    """Calls ``resume`` while this process holds the polling lock and ``pause`` when it loses it."""

    def __init__(
        self,
        runtime: Runtime,
        resume: Callable[[], Awaitable[None]],
        pause: Callable[[], Awaitable[None]],
        *,
        retry_s: float = RETRY_S,
        connect: Callable[[str], Awaitable[Any]] | None = None,
    ) -> None:
        self._runtime = runtime
        self._dsn = asyncpg_dsn(runtime.settings.database_url)
        self._resume, self._pause = resume, pause
        self._retry_s = retry_s
        self._connect = connect or _asyncpg_connect
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._state = "starting"
        self.held_times = 0

    @property
    def state(self) -> str:
        """starting, standby (another worker polls), held (this one polls), lost, stopped."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self._runtime.process["telegram_polling"] = value  # /healthz details

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telegram-polling-lease")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close()  # closing the session releases the lock for a standby worker
        self.state = "stopped"

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("telegram polling lease failed; retrying", extra={"error": type(exc).__name__})
            if self.state == "held":
                self.state = "lost"
                await self._pause()
            await self._close()
            await asyncio.sleep(self._retry_s)

    async def _session(self) -> None:
        """Connect, wait for the lock, poll while the connection lasts."""
        lost = asyncio.Event()
        self._conn = await self._connect(self._dsn)
        self._conn.add_termination_listener(lambda _c: lost.set())
        await self._acquire()
        await self._resume()
        await self._watch(lost)

    async def _acquire(self) -> None:
        while not await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", POLLING_LOCK_KEY):
            if self.state != "standby":
                log.info("another worker polls Telegram; this one sends and edits only")
            self.state = "standby"
            await asyncio.sleep(self._retry_s)
        self.state = "held"
        self.held_times += 1
        log.info("telegram polling lease held")

    async def _watch(self, lost: asyncio.Event) -> None:
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), KEEPALIVE_S)
                return
            await asyncio.wait_for(self._conn.execute("SELECT 1"), KEEPALIVE_TIMEOUT_S)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)


async def _asyncpg_connect(dsn: str) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    return await asyncpg.connect(dsn)
