"""Shared fixtures: a migrated database per test, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

SQLite: a migrated template file is made once per session and copied for every test.
PostgreSQL: a throw-away database is created once per session and migrated; every test
starts from empty tables (TRUNCATE … RESTART IDENTITY).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core.config import Settings, load_settings
from core.db.engine import create_engine
from core.db.migrate import upgrade
from core.db.models import Base
from core.runtime import Runtime, build_runtime

PG_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def _asyncpg_url(url: str) -> str:
    return load_settings({"DATABASE_URL": url}).database_url


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set (PostgreSQL tests run in .ci/run)")
    base = make_url(_asyncpg_url(PG_URL))
    name = f"ss_test_{uuid.uuid4().hex[:10]}"

    async def _admin(sql: str) -> None:
        engine = create_engine(base.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    asyncio.run(_migrate(url))
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty, migrated database (one per test)."""
    if request.param == "sqlite":
        target = tmp_path / "test.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite+aiosqlite:///{target}"
    url = request.getfixturevalue("pg_database")
    asyncio.run(_truncate_all(url))
    return url


@pytest.fixture
def pg_database_url(request: pytest.FixtureRequest) -> str:
    """URL of an empty, migrated PostgreSQL database; skipped without TEST_DATABASE_URL."""
    url = request.getfixturevalue("pg_database")
    asyncio.run(_truncate_all(url))
    return url


async def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


def make_settings(database_url: str, **extra: str) -> Settings:
    """Settings for tests: local mode on the given database plus overrides."""
    return load_settings({"DATABASE_URL": database_url, **extra})


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    """A Runtime on an empty migrated database (each backend in turn)."""
    rt = build_runtime(make_settings(database_url))
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
async def pg_runtime(pg_database_url: str) -> AsyncIterator[Runtime]:
    """A Runtime on PostgreSQL only."""
    rt = build_runtime(make_settings(pg_database_url))
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
async def admin(runtime: Runtime) -> AsyncIterator[Any]:
    """A signed-in admin on the admin site (tests/support/admin.py), on each backend in turn."""
    from tests.support.admin import admin_site

    async with admin_site(runtime) as site:
        yield site
