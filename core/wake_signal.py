"""Wake-ups between processes (``serve --role web`` and ``--role worker``), through the database only.

``runtime.wake(Wake.X)`` sets this process's event; the workers of *other* processes learn of new
work here:

* PostgreSQL — :class:`PgWakeBridge`: ``runtime.wake`` also sends ``NOTIFY smiling_steps_wake, 'X'``
  (callers wake after their commit, so a listener never looks before the row is visible), and a
  worker holds one asyncpg connection that ``LISTEN``\\ s and sets its local events. A dropped
  connection is re-opened with backoff (0.5 s doubling to 30 s) and every event is set once after
  a reconnect (notifications sent meanwhile are lost); the workers' periodic sweeps stay the
  safety net. Notifications a process sent itself are ignored (same backend pid).
* SQLite — :class:`SqliteChangeWatcher`: no NOTIFY exists, but ``PRAGMA data_version`` on a
  connection of its own changes whenever another connection commits. The worker reads it every
  ``interval`` (200 ms: a read of one header counter, no table) and sets every event when it
  moved. That bounds the cross-process delay to ~0.2 s with no table polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from core.runtime import Runtime, Wake

log = logging.getLogger(__name__)

CHANNEL = "smiling_steps_wake"
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0
KEEPALIVE_S = 15.0
KEEPALIVE_TIMEOUT_S = 5.0
SQLITE_INTERVAL_S = 0.2


def asyncpg_dsn(database_url: str) -> str:
    """The ``postgresql+asyncpg://`` URL as a DSN asyncpg itself accepts."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def wake_everything(runtime: Runtime) -> None:
    for worker in Wake:
        runtime.wake_here(worker)


class PgWakeBridge:
    """NOTIFY on every wake; with ``listen``, a LISTEN connection that sets the local events."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        listen: bool,
        connect: Callable[[str], Awaitable[Any]] | None = None,
        reconnect_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        self.runtime = runtime
        self.listen = listen
        self._dsn = asyncpg_dsn(runtime.settings.database_url)
        self._connect = connect or _asyncpg_connect
        self._reconnect_max_s = reconnect_max_s
        self._conn: Any = None
        self._pid: int | None = None
        self._lock = asyncio.Lock()
        self._pending: set[Wake] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.state = "connecting"
        self.connects = 0  # connections opened (the first, then every reconnect)
        self.received = 0  # notifications from other processes

    async def start(self) -> None:
        """Install the broadcast and keep a connection open in the background."""
        self.runtime.broadcast = self.publish
        self._task = asyncio.create_task(self._run(), name="wake-bridge")

    async def stop(self) -> None:
        if self.runtime.broadcast == self.publish:
            self.runtime.broadcast = None
        for task in (self._task, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._close()
        self.state = "stopped"

    def publish(self, worker: Wake) -> None:
        """Queue a NOTIFY (coalesced); dropped while disconnected — the sweeps cover that gap."""
        if self._conn is None:
            return
        self._pending.add(worker)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="wake-notify")

    async def _flush(self) -> None:
        while self._pending and self._conn is not None:
            names = sorted(self._pending)
            self._pending.clear()
            try:
                async with self._lock:
                    for name in names:
                        await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, name)
            except Exception as exc:  # the connection went: _run reconnects
                log.warning("wake notify failed", extra={"error": type(exc).__name__})
                return

    def _on_notify(self, _conn: object, pid: int, _channel: str, payload: str) -> None:
        if pid == self._pid:
            return  # our own NOTIFY: the local event is set already
        try:
            worker = Wake(payload)
        except ValueError:
            return
        self.received += 1
        self.runtime.wake_here(worker)

    async def _run(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            lost = asyncio.Event()
            try:
                await self._open(lost)
                delay = RECONNECT_FIRST_S
                await self._watch(lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "wake connection failed; retrying", extra={"error": type(exc).__name__, "in_s": delay}
                )
            self.state = "reconnecting"
            await self._close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_s)

    async def _open(self, lost: asyncio.Event) -> None:
        conn = await self._connect(self._dsn)
        conn.add_termination_listener(lambda _c: lost.set())
        if self.listen:
            await conn.add_listener(CHANNEL, self._on_notify)
        self._conn, self._pid = conn, conn.get_server_pid()
        self.connects += 1
        self.state = "listening" if self.listen else "notifying"
        if self.connects > 1:
            wake_everything(self.runtime)  # what was sent while we were away is lost: look now
        log.info("wake connection open", extra={"listen": self.listen})

    async def _watch(self, lost: asyncio.Event) -> None:
        """Return when the connection is lost (closed by the server, or a keep-alive fails)."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), KEEPALIVE_S)
                return
            async with self._lock:
                await asyncio.wait_for(self._conn.execute("SELECT 1"), KEEPALIVE_TIMEOUT_S)

    async def _close(self) -> None:
        conn, self._conn, self._pid = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)


async def _asyncpg_connect(dsn: str) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    return await asyncpg.connect(dsn)


class SqliteChangeWatcher:
    """Sets every wake-up event when another connection committed to the SQLite file."""

    def __init__(self, runtime: Runtime, path: Path, *, interval: float = SQLITE_INTERVAL_S) -> None:
        self.runtime = runtime
        self.path = path
        self.interval = interval
        self.changes = 0
        self.state = "starting"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sqlite-change-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.state = "stopped"

    async def _run(self) -> None:
        import aiosqlite

        while True:
            try:
                async with aiosqlite.connect(self.path, timeout=5.0) as conn:
                    self.state = "watching"
                    await self._watch(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.state = "retrying"
                log.warning("sqlite change watcher failed; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(1.0)

    async def _watch(self, conn: Any) -> None:
        last: int | None = None
        while True:
            async with conn.execute("PRAGMA data_version") as cursor:
                row = await cursor.fetchone()
            version = int(row[0])
            if last is not None and version != last:
                self.changes += 1
                wake_everything(self.runtime)
            last = version
            await asyncio.sleep(self.interval)
