"""The ``settings`` table as a key/value store: plain values as they are, secrets encrypted."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Setting
from core.services.settings.crypto import SettingsCipher, SettingUnreadable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSetting:
    """One saved value; ``value`` is None when it could not be decrypted."""

    key: str
    value: str | None
    encrypted: bool
    updated_at: datetime
    updated_by: str | None

    @property
    def unreadable(self) -> bool:
        return self.value is None


async def read_settings(
    session: AsyncSession, cipher: SettingsCipher, prefix: str
) -> dict[str, StoredSetting]:
    """Every saved setting whose key starts with ``prefix``, decrypted."""
    rows = (await session.scalars(select(Setting).where(Setting.key.startswith(prefix)))).all()
    found: dict[str, StoredSetting] = {}
    for row in rows:
        value: str | None = row.value
        if row.encrypted:
            try:
                value = cipher.decrypt(row.value)
            except SettingUnreadable:
                # Never fall silently to another value's meaning: report it as unreadable.
                log.error("stored setting does not decrypt (SECRET_KEY changed?)", extra={"key": row.key})
                value = None
        found[row.key] = StoredSetting(row.key, value, row.encrypted, row.updated_at, row.updated_by)
    return found


async def write_settings(
    session: AsyncSession,
    cipher: SettingsCipher,
    values: Mapping[str, str],
    *,
    secret_keys: frozenset[str],
    actor: str,
    now: datetime,
) -> None:
    """Insert or replace ``values`` in the caller's transaction; keys in ``secret_keys`` are encrypted."""
    existing = {
        row.key: row
        for row in (await session.scalars(select(Setting).where(Setting.key.in_(list(values))))).all()
    }
    for key, plain in values.items():
        secret = key in secret_keys
        stored = cipher.encrypt(plain) if secret else plain
        row = existing.get(key)
        if row is None:
            session.add(Setting(key=key, value=stored, encrypted=secret, updated_at=now, updated_by=actor))
        else:
            row.value, row.encrypted, row.updated_at, row.updated_by = stored, secret, now, actor
    await session.flush()
