"""Wake-ups cross processes through the database (core/wake_signal.py).

Two runtimes on one database stand for two processes (each has its own engine and connections):
on PostgreSQL a wake in one is a NOTIFY the other's LISTEN connection turns into its local event,
also after the listening connection was killed; on SQLite a commit in one moves the file's data
version, which the other's watcher turns into its events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from core.db.engine import sqlite_file
from core.db.models import Setting
from core.runtime import Runtime, Wake, build_runtime
from core.wake_signal import PgWakeBridge, SqliteChangeWatcher
from tests.conftest import make_settings

WITHIN_S = 5.0


@asynccontextmanager
async def two_processes(url: str) -> AsyncIterator[tuple[Runtime, Runtime]]:
    first, second = build_runtime(make_settings(url)), build_runtime(make_settings(url))
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def until(predicate, within: float = WITHIN_S) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def test_a_wake_in_the_web_process_sets_the_workers_event_over_notify(pg_database_url: str) -> None:
    async with two_processes(pg_database_url) as (web, worker):
        sender, listener = PgWakeBridge(web, listen=False), PgWakeBridge(worker, listen=True)
        await sender.start()
        await listener.start()
        try:
            await until(lambda: sender.state == "notifying" and listener.state == "listening")
            event = worker.wakeup(Wake.SETTLEMENT)
            web.wake(Wake.SETTLEMENT)
            assert web.wakeup(Wake.SETTLEMENT).is_set()  # its own event too, as in one process
            await asyncio.wait_for(event.wait(), WITHIN_S)
            assert not worker.wakeup(Wake.OUTBOX).is_set()  # only the worker named
        finally:
            await sender.stop()
            await listener.stop()
        assert web.broadcast is None and worker.broadcast is None


async def test_a_process_ignores_its_own_notifications(pg_database_url: str) -> None:
    async with two_processes(pg_database_url) as (worker, _other):
        bridge = PgWakeBridge(worker, listen=True)
        await bridge.start()
        try:
            await until(lambda: bridge.state == "listening")
            worker.wake(Wake.OUTBOX)
            await asyncio.sleep(0.5)
            assert bridge.received == 0 and worker.wakeup(Wake.OUTBOX).is_set()
        finally:
            await bridge.stop()


async def test_the_listener_reconnects_after_its_connection_is_killed_and_looks_again(
    pg_database_url: str,
) -> None:
    async with two_processes(pg_database_url) as (web, worker):
        sender, listener = PgWakeBridge(web, listen=False), PgWakeBridge(worker, listen=True)
        await sender.start()
        await listener.start()
        try:
            await until(lambda: listener.state == "listening" and sender.state == "notifying")
            async with web.engine.connect() as conn:  # an administrator (or a failover) ends it
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": listener._pid})
            await until(lambda: listener.connects == 2 and listener.state == "listening")
            # What was sent while it was away may be lost: every worker looks once after a reconnect.
            assert all(worker.wakeup(w).is_set() for w in Wake)
            for w in Wake:
                worker.wakeup(w).clear()
            web.wake(Wake.PAYMENTS)
            await asyncio.wait_for(worker.wakeup(Wake.PAYMENTS).wait(), WITHIN_S)
        finally:
            await sender.stop()
            await listener.stop()


async def test_a_wake_while_disconnected_is_dropped_not_raised(pg_database_url: str) -> None:
    async with two_processes(pg_database_url) as (web, _worker):
        bridge = PgWakeBridge(web, listen=False)
        bridge.publish(Wake.OUTBOX)  # not started: nothing to send through
        assert bridge.state == "connecting"


async def test_on_sqlite_a_commit_by_another_process_sets_the_workers_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import _migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'wake.db'}"
    await _migrate(url)
    async with two_processes(url) as (web, worker):
        path = sqlite_file(url)
        assert path is not None
        watcher = SqliteChangeWatcher(worker, path, interval=0.05)
        await watcher.start()
        try:
            await until(lambda: watcher.state == "watching")
            await asyncio.sleep(0.2)
            assert not worker.wakeup(Wake.SETTLEMENT).is_set()  # nothing changed: nothing to do
            async with web.uow() as uow:
                uow.session.add(Setting(key="wake-test", value="1"))
                await uow.commit()
            await asyncio.wait_for(worker.wakeup(Wake.SETTLEMENT).wait(), WITHIN_S)
            assert worker.wakeup(Wake.OUTBOX).is_set() and watcher.changes == 1
        finally:
            await watcher.stop()
