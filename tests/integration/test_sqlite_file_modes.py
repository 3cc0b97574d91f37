"""The SQLite database and the files SQLite keeps beside it are private (0600), whatever the umask.

They hold names, phone numbers, e-mails and raw callback bodies with full MSISDNs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.config import SECRET_FILE_NAME, ensure_secret_key, load_settings
from core.db.engine import create_engine
from core.db.migrate import upgrade


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o000], ids=["umask-022", "umask-002", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


async def test_a_fresh_database_and_its_wal_and_shm_files_are_created_0600(tmp_path: Path, umask: int):
    path = tmp_path / "fresh.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine)  # what `db upgrade` and local mode do to a new file
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO session_types (name, minutes, price_kes, active) "
                                    "VALUES ('Individual', 50, 2500, 1)"))
        async with engine.connect() as conn:  # an open connection keeps -wal and -shm in place
            await conn.execute(text("SELECT count(*) FROM session_types"))
            wal, shm = path.with_name("fresh.db-wal"), path.with_name("fresh.db-shm")
            assert wal.exists() and shm.exists()
            assert {p.name: mode(p) for p in (path, wal, shm)} == {
                "fresh.db": 0o600, "fresh.db-wal": 0o600, "fresh.db-shm": 0o600,
            }
    finally:
        await engine.dispose()


async def test_an_existing_world_readable_database_is_made_owner_only(tmp_path: Path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    await engine.dispose()
    path.chmod(0o644)  # as an earlier version left it under umask 022
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            assert mode(path) == 0o600
            assert mode(path.with_name("old.db-wal")) == 0o600
    finally:
        await engine.dispose()


def test_the_generated_secret_file_is_0600_whatever_the_umask(tmp_path: Path, umask: int):
    ensure_secret_key(load_settings({}), tmp_path)
    assert mode(tmp_path / SECRET_FILE_NAME) == 0o600
