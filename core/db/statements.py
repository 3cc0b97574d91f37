"""Statements whose spelling differs between SQLite and PostgreSQL, written once.

``insert_ignore`` is ``INSERT … ON CONFLICT (…) DO NOTHING``: both dialects support it, but
SQLAlchemy builds it from each dialect's own ``insert``; callers no longer switch on the
dialect name themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_name(session: AsyncSession) -> str:
    """``"postgresql"`` or ``"sqlite"``: the dialect of the session's connection."""
    return session.get_bind().dialect.name


def insert_ignore(session: AsyncSession, table: Any, *, unique: Sequence[str]) -> Any:
    """``INSERT INTO table … ON CONFLICT (unique) DO NOTHING`` for the session's dialect.

    Add ``.values(...)`` / ``.returning(...)`` as with any insert, or execute it with a list
    of rows (executemany).
    """
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=list(unique))
