"""The admin's view of the audit trail: filtered, paged browsing, chain verification and the
streamed JSONL export (Property 70). The admin site audits each of these reads (Property 69)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select

from core.db.models import AuditEntry
from core.runtime import Runtime
from core.services import audit

NAIROBI = ZoneInfo("Africa/Nairobi")
PAGE_SIZE = 50
EXPORT_FLUSH_BYTES = 64 * 1024
_ACTION = re.compile(r"^[a-z_]{1,30}(\.[a-z_]{1,30}){0,3}$")
_ACTOR = re.compile(r"^(system(:[A-Za-z0-9_.\-]{1,50})?|(client|therapist|admin):[A-Za-z0-9_.\-]{1,48})$")


class AuditFilterError(ValueError):
    """A filter value that cannot be used; ``str()`` is safe to show."""


@dataclass(frozen=True)
class AuditFilter:
    """Browse filters: exact action and actor, Africa/Nairobi days (inclusive); ``before`` pages.

    Paging is by sequence number (entries older than ``before``), not by offset: reading the
    trail appends to it, so offset pages would shift under the reader.
    """

    action: str | None = None
    actor: str | None = None
    day_from: date | None = None
    day_to: date | None = None
    before: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The filters as given (for links and for the audit entry of this read)."""
        values = {
            "action": self.action,
            "actor": self.actor,
            "from": self.day_from.isoformat() if self.day_from else None,
            "to": self.day_to.isoformat() if self.day_to else None,
        }
        return {key: value for key, value in values.items() if value}


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: str
    hash: str


@dataclass(frozen=True)
class AuditPage:
    filters: AuditFilter
    rows: list[AuditRow]
    has_next: bool


def parse_audit_filter(query: Mapping[str, str]) -> AuditFilter:
    """Read ``action``, ``actor``, ``from``, ``to``, ``before``; a bad value raises AuditFilterError."""
    action = (query.get("action") or "").strip() or None
    if action is not None and not _ACTION.fullmatch(action):
        raise AuditFilterError("Action must look like payment.status_changed (lower-case words and dots).")
    actor = (query.get("actor") or "").strip() or None
    if actor is not None and not _ACTOR.fullmatch(actor):
        raise AuditFilterError("Actor must look like admin:1, client:42, therapist:3 or system.")
    day_from, day_to = _day(query, "from"), _day(query, "to")
    if day_from and day_to and day_from > day_to:
        raise AuditFilterError("The 'from' day is after the 'to' day.")
    raw_before = (query.get("before") or "").strip()
    if raw_before and not (raw_before.isdigit() and len(raw_before) <= 18 and int(raw_before) >= 1):
        raise AuditFilterError("'before' must be an entry number (a whole number from 1).")
    return AuditFilter(action, actor, day_from, day_to, int(raw_before) if raw_before else None)


async def browse_audit(runtime: Runtime, filters: AuditFilter) -> AuditPage:
    """One page of entries, newest first (the caller audits the read, Property 69)."""
    query = _filtered(select(AuditEntry), filters).order_by(AuditEntry.seq.desc()).limit(PAGE_SIZE + 1)
    if filters.before is not None:
        query = query.where(AuditEntry.seq < filters.before)
    async with runtime.uow() as uow:
        entries = list((await uow.session.scalars(query)).all())
    rows = [_row(entry) for entry in entries[:PAGE_SIZE]]
    return AuditPage(filters, rows, has_next=len(entries) > PAGE_SIZE)


async def verify_audit_chain(runtime: Runtime, *, admin_id: int) -> audit.VerifyResult:
    """Recompute the whole chain; the outcome is recorded (after the check, so it is not in it)."""
    result = await audit.verify_chain(runtime.uow())
    async with runtime.uow() as uow:
        await audit.record(
            uow.session,
            actor=f"admin:{admin_id}",
            action="audit.verified",
            subject_type="audit",
            subject_id="chain",
            details={"ok": result.ok, "count": result.count, "first_broken_seq": result.first_broken_seq},
        )
        await uow.commit()
    return result


async def export_audit(runtime: Runtime, write: Callable[[bytes], Awaitable[None]]) -> int:
    """Stream the JSONL export (entries with their hashes) through ``write``; returns the count.

    The caller audits the export first, so the file itself shows who took it.
    """
    buffer = _ChunkWriter(write)
    count = await audit.export_jsonl(runtime.uow(), buffer)
    await buffer.flush()
    return count


class _ChunkWriter:
    """Collects lines and hands them on in ~64 KB chunks (one network write per chunk, not per line)."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        self._write = write
        self._parts: list[bytes] = []
        self._size = 0

    async def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self._parts.append(data)
        self._size += len(data)
        if self._size >= EXPORT_FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._parts:
            chunk, self._parts, self._size = b"".join(self._parts), [], 0
            await self._write(chunk)


def _filtered(query: Select[Any], filters: AuditFilter) -> Select[Any]:
    if filters.action:
        query = query.where(AuditEntry.action == filters.action)
    if filters.actor:
        query = query.where(AuditEntry.actor == filters.actor)
    if filters.day_from:
        query = query.where(AuditEntry.at >= _nairobi_midnight(filters.day_from))
    if filters.day_to:
        query = query.where(AuditEntry.at < _nairobi_midnight(filters.day_to + timedelta(days=1)))
    return query


def _nairobi_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=NAIROBI).astimezone(UTC)


def _day(query: Mapping[str, str], name: str) -> date | None:
    raw = (query.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw) if len(raw) == 10 else _bad_day(name)
    except ValueError:
        return _bad_day(name)


def _bad_day(name: str) -> date:
    raise AuditFilterError(f"'{name}' must be a day written YYYY-MM-DD.")


def _row(entry: AuditEntry) -> AuditRow:
    subject = f"{entry.subject_type}:{entry.subject_id}" if entry.subject_type else ""
    return AuditRow(
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        subject=subject,
        details=audit.canonical_json(entry.details),
        hash=entry.hash,
    )
