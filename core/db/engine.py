"""Async engine and session factory; SQLite gets WAL, foreign keys, a busy timeout and private files."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 15000
WAL_SWITCH_TRIES = 40
PRIVATE_FILE_MODE = 0o600
# Files SQLite keeps beside the database; it creates each with the database file's own mode.
SQLITE_COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the process's engine for a ``sqlite+aiosqlite`` or ``postgresql+asyncpg`` URL.

    Statement parameters are left out of SQLAlchemy's error messages: they hold raw callback
    bodies, phone numbers and e-mails, and a failed statement's traceback goes to the log (the
    chaos run found a full phone number logged while PostgreSQL was down).
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:
            make_private(path)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(url, **kwargs)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_private(path: Path) -> None:
    """Create the SQLite file 0600 (whatever the umask) and tighten an existing one and its companions.

    The database holds names, phone numbers, e-mails and raw callback bodies. SQLite would
    create it 0644 under the usual umask, and gives the -wal/-shm files it creates later the
    database file's mode: so a database file created here, 0600, keeps all of them private.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        pass
    except OSError:
        return  # e.g. no such directory: SQLite reports it on the first connection
    else:
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # a umask such as 0277 must not leave it 0400
        finally:
            os.close(fd)
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANION_SUFFIXES)):
        _tighten(file)


def _tighten(file: Path) -> None:
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
        if mode & 0o077:
            file.chmod(PRIVATE_FILE_MODE)
            log.warning(
                "database file was readable by others; made it owner-only (0600)",
                extra={"file": file.name, "was": oct(mode)},
            )
    except FileNotFoundError:
        return
    except OSError as exc:  # not ours to change: say so, the service still runs
        log.warning("could not make a database file owner-only", extra={"file": file.name,
                                                                        "error": type(exc).__name__})


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit (services return them to callers)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database does not answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide when a transaction begins (see below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    # WAL is a property of the file: once set it stays. Switching needs a lock that a second
    # process opening a brand-new file at the same moment may not get at once (the busy
    # handler does not cover it): retry briefly. Only the very first connections ever wait.
    for _ in range(WAL_SWITCH_TRIES - 1):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, whichever adapter raised it
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA journal_mode=WAL")


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock at BEGIN: a deferred transaction that reads and then writes can
    # fail with SQLITE_BUSY when another connection wrote in between (WAL snapshot rule).
    conn.exec_driver_sql("BEGIN IMMEDIATE")
