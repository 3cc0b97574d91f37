"""Alembic environment: runs on a connection handed in by ``core.db.migrate``."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from core.db.engine import create_engine
from core.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_on_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on_connection)
    finally:
        await engine.dispose()


_connection = config.attributes.get("connection")
if _connection is not None:
    run_on_connection(_connection)
else:  # `alembic` command line, with sqlalchemy.url from alembic.ini or -x
    asyncio.run(_run_with_own_engine(config.get_main_option("sqlalchemy.url") or ""))
