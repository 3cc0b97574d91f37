"""Append-only, hash-chained audit trail (DESIGN.md §5; Properties 66-70).

Every entry stores ``hash = SHA-256(prev_hash ‖ canonical JSON of its fields)``, so editing,
deleting or reordering any entry breaks the chain from that point on. ``record`` appends
inside the caller's transaction: a state change and its audit entry commit together.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Protocol, TextIO

from sqlalchemy import Row, Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditEntry
from core.db.types import utcnow
from core.db.uow import UnitOfWork
from core.domain.phone import mask_phone

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key serialising chain appends on PostgreSQL ("SSAUDIT1" in ASCII).
AUDIT_LOCK_KEY = 0x5353_4155_4449_5431
BATCH_SIZE = 1000

_ACTOR = re.compile(r"^(system(:[A-Za-z0-9_.\-]{1,50})?|(client|therapist|admin):[A-Za-z0-9_.\-]{1,48})$")
_PHONE_KEYS = frozenset({"phone", "msisdn", "phone_number", "phonenumber", "mobile", "partya", "partyb"})
# A raw Kenyan MSISDN (254 + 9 digits, optionally +, spaces or dashes) anywhere in a string.
_RAW_MSISDN = re.compile(r"(?<!\d)\+?254[\s\-]?\d{3}[\s\-]?\d{3}[\s\-]?\d{3}(?!\d)")
_LIMITS = {"actor": 60, "action": 60, "subject_type": 30, "subject_id": 40}


# -- canonical form and hashing (pure) ----------------------------------------------------


def canonical_json(value: Any) -> str:
    """The one JSON spelling that is hashed: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_at(at: datetime) -> str:
    """ISO-8601 in UTC with microseconds, e.g. ``2024-03-12T07:15:42.000000+00:00``."""
    if at.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class ChainRecord:
    """One audit entry as plain data: what is hashed plus its two hashes."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def payload(self) -> dict[str, Any]:
        """The hashed fields, exactly as ``compute_hash`` sees them."""
        return entry_payload(
            seq=self.seq,
            at=self.at,
            actor=self.actor,
            action=self.action,
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            details=self.details,
        )

    def to_export(self) -> dict[str, Any]:
        """The JSON object written per line by ``export_jsonl``."""
        return {
            "seq": self.seq,
            "at": format_at(self.at),
            "actor": self.actor,
            "action": self.action,
            "subject": {"type": self.subject_type, "id": self.subject_id},
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def entry_payload(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str | None,
    subject_id: str | None,
    details: Mapping[str, Any],
) -> dict[str, Any]:
    """The dictionary whose canonical JSON is hashed."""
    return {
        "seq": seq,
        "at": format_at(at),
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "details": dict(details),
    }


def compute_hash(prev_hash: str, payload: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``prev_hash`` followed by the canonical JSON of ``payload``."""
    return hashlib.sha256((prev_hash + canonical_json(payload)).encode("utf-8")).hexdigest()


def make_record(
    prev_hash: str,
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str | None = None,
    subject_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> ChainRecord:
    """Build the next chain record after ``prev_hash`` (no I/O; ``record`` uses this)."""
    clean = dict(details or {})
    payload = entry_payload(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=clean,
    )
    return ChainRecord(
        seq=seq,
        at=at.astimezone(UTC),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=clean,
        prev_hash=prev_hash,
        hash=compute_hash(prev_hash, payload),
    )


# -- verification (pure core, shared by the DB and the JSONL paths) -----------------------


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check; ``first_broken_seq`` names the first entry that fails."""

    ok: bool
    count: int
    first_broken_seq: int | None = None
    reason: str | None = None
    last_hash: str | None = None


class ChainVerifier:
    """Feed records in seq order; remembers the first break (seq gap, bad link or bad hash)."""

    def __init__(self, *, expected_seq: int = 1, prev_hash: str = GENESIS_HASH) -> None:
        self.expected_seq = expected_seq
        self.prev_hash = prev_hash
        self.count = 0
        self.broken_seq: int | None = None
        self.reason: str | None = None

    @property
    def broken(self) -> bool:
        return self.broken_seq is not None

    def feed(self, rec: ChainRecord) -> bool:
        """Check one record; returns False once the chain is broken (stop feeding then)."""
        if self.broken:
            return False
        self.count += 1
        if rec.seq != self.expected_seq:
            want = self.expected_seq
            if rec.seq > want:
                gap = f"{want}" if rec.seq - 1 == want else f"{want}-{rec.seq - 1}"
                return self._fail(want, f"entry missing (seq {gap} absent, next is seq {rec.seq})")
            return self._fail(want, f"out of order (found seq {rec.seq})")
        if rec.prev_hash != self.prev_hash:
            return self._fail(rec.seq, "prev_hash does not match the previous entry's hash")
        try:
            recomputed = compute_hash(rec.prev_hash, rec.payload())
        except (TypeError, ValueError):
            return self._fail(rec.seq, "entry content is not canonical JSON")
        if recomputed != rec.hash:
            return self._fail(rec.seq, "hash mismatch (entry content was changed)")
        self.prev_hash = rec.hash
        self.expected_seq += 1
        return True

    def result(self) -> VerifyResult:
        if self.broken:
            return VerifyResult(False, self.count, self.broken_seq, self.reason, None)
        return VerifyResult(True, self.count, None, None, self.prev_hash if self.count else None)

    def _fail(self, seq: int, reason: str) -> bool:
        self.broken_seq, self.reason = seq, reason
        return False


def verify_records(records: Iterable[ChainRecord]) -> VerifyResult:
    """Verify an in-memory chain that starts at seq 1."""
    verifier = ChainVerifier()
    for rec in records:
        if not verifier.feed(rec):
            break
    return verifier.result()


def verify_jsonl(lines: Iterable[str]) -> VerifyResult:
    """Verify an ``export_jsonl`` file; a slice (since/until) is anchored on its first entry."""
    verifier: ChainVerifier | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = _record_from_export(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            seq = verifier.expected_seq if verifier else 0
            return VerifyResult(False, verifier.count if verifier else 0, seq, f"line {number}: {exc}")
        if verifier is None:
            verifier = ChainVerifier(expected_seq=rec.seq, prev_hash=rec.prev_hash)
        if not verifier.feed(rec):
            break
    return verifier.result() if verifier else VerifyResult(True, 0)


def format_verify_result(result: VerifyResult) -> tuple[str, int]:
    """The CLI line and exit code: ``OK <count> entries`` / ``BROKEN at seq N: reason``."""
    if result.ok:
        return f"OK {result.count} entries", 0
    return f"BROKEN at seq {result.first_broken_seq}: {result.reason}", 1


def _record_from_export(obj: Mapping[str, Any]) -> ChainRecord:
    subject = obj["subject"] or {}
    return ChainRecord(
        seq=int(obj["seq"]),
        at=datetime.fromisoformat(obj["at"]),
        actor=obj["actor"],
        action=obj["action"],
        subject_type=subject.get("type"),
        subject_id=subject.get("id"),
        details=obj["details"],
        prev_hash=obj["prev_hash"],
        hash=obj["hash"],
    )


# -- details hygiene: no raw phone numbers ------------------------------------------------


def sanitize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """JSON-normalised details with phone fields masked; ValueError on a raw MSISDN elsewhere."""
    masked = _mask_phone_fields(dict(details or {}))
    # A JSON round trip makes what we hash identical to what the JSON column hands back.
    normalised: dict[str, Any] = json.loads(canonical_json_default(masked))
    _reject_raw_phones(normalised, "details")
    return normalised


def redact_phones(value: str) -> str:
    """Replace every raw ``254…`` number in a string with its masked form."""
    return _RAW_MSISDN.sub(lambda m: mask_phone(m.group(0)), value)


def canonical_json_default(value: Any) -> str:
    """Canonical JSON that also accepts datetimes, dates and enums (as their ISO/str values)."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_at(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"audit details cannot hold {type(value).__name__}")


def _is_phone_key(key: str) -> bool:
    k = key.lower()
    return k in _PHONE_KEYS or k.endswith(("_phone", "_msisdn", "_phone_number"))


def _mask_phone_fields(value: Any) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("audit details keys must be strings")
            out[key] = _mask_value(item) if _is_phone_key(key) else _mask_phone_fields(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_mask_phone_fields(item) for item in value]
    return value


def _mask_value(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (str, int)):
        text_value = str(value)
        return text_value if "*" in text_value else mask_phone(text_value)  # already masked
    if isinstance(value, (list, tuple)):
        return [_mask_value(item) for item in value]
    return _mask_phone_fields(value)


def _reject_raw_phones(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_raw_phones(key, where)
            _reject_raw_phones(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_raw_phones(item, f"{where}[{index}]")
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        text_value = str(value)
        if "\x00" in text_value:
            raise ValueError(f"audit {where} contains a NUL character")
        if _RAW_MSISDN.search(text_value):
            raise ValueError(f"audit {where} contains a raw phone number; pass mask_phone(...) instead")


# -- writing --------------------------------------------------------------------------------


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append an entry inside the caller's transaction (the caller commits)."""
    _check_text("actor", actor)
    if not _ACTOR.match(actor):
        raise ValueError(f"audit actor '{actor}' must be system, client:<id>, therapist:<id> or admin:<id>")
    _check_text("action", action)
    if subject_type is not None:
        _check_text("subject_type", subject_type)
    sid = None if subject_id is None else str(subject_id)
    if sid is not None:
        _check_text("subject_id", sid)
    clean = sanitize_details(details)
    if at is not None and at.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")

    await lock_chain(session)
    last = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    tail = (await session.execute(last)).first()
    seq, prev_hash = (tail[0] + 1, tail[1]) if tail else (1, GENESIS_HASH)
    # Stamp the time under the lock so that time never goes backwards along the chain.
    rec = make_record(
        prev_hash,
        seq=seq,
        at=at or utcnow(),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=sid,
        details=clean,
    )
    entry = AuditEntry(
        seq=rec.seq,
        at=rec.at,
        actor=rec.actor,
        action=rec.action,
        subject_type=rec.subject_type,
        subject_id=rec.subject_id,
        details=rec.details,
        prev_hash=rec.prev_hash,
        hash=rec.hash,
    )
    session.add(entry)
    await session.flush()
    return entry


def transition_details(previous: str, new: str, reason: str, **extra: Any) -> dict[str, Any]:
    """The details of a status-change entry (Property 68), phone numbers in the reason masked."""
    # The reason may quote text from outside (e.g. M-Pesa's ResultDesc): mask, don't refuse.
    return {**extra, "previous": str(previous), "new": str(new), "reason": redact_phones(reason)}


async def record_transition(
    session: AsyncSession,
    *,
    actor: str,
    subject_type: str,
    subject_id: str | int,
    previous: str,
    new: str,
    reason: str,
    **extra: Any,
) -> AuditEntry:
    """Audit a status change: previous, new and reason (Property 68)."""
    details = transition_details(previous, new, reason, **extra)
    return await record(
        session,
        actor=actor,
        action=f"{subject_type}.status_changed",
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )


async def record_payment_transition(
    session: AsyncSession,
    attempt_id: int,
    *,
    previous: str,
    new: str,
    reason: str,
    actor: str = "system",
    **extra: Any,
) -> AuditEntry:
    """Property 68 for a payment attempt: previous and new status with the reason."""
    return await record_transition(
        session,
        actor=actor,
        subject_type="payment",
        subject_id=attempt_id,
        previous=previous,
        new=new,
        reason=reason,
        **extra,
    )


async def record_payment_initiated(
    session: AsyncSession,
    *,
    actor: str,
    booking_id: int,
    client_id: int,
    attempt_id: int,
    amount_kes: int,
    phone: str,
) -> AuditEntry:
    """Audit an STK Push: client, booking, amount and masked phone (Property 67)."""
    if isinstance(amount_kes, bool) or not isinstance(amount_kes, int) or amount_kes < 0:
        raise ValueError("amount_kes must be a non-negative whole number of shillings")
    details = {
        "booking_id": booking_id,
        "client_id": client_id,
        "attempt_id": attempt_id,
        "amount_kes": amount_kes,
        "phone": phone if "*" in str(phone) else mask_phone(phone),
    }
    return await record(
        session,
        actor=actor,
        action="payment.initiated",
        subject_type="payment",
        subject_id=attempt_id,
        details=details,
    )


async def record_admin_access(
    session: AsyncSession, *, admin_id: int | str, what: str, filters: Mapping[str, Any]
) -> AuditEntry:
    """Audit an admin's read of payment data: who, what and when (Property 69)."""
    # An admin may search by phone number: keep the fact, not the number.
    safe_filters = _mask_phone_fields(_redact_strings(dict(filters)))
    # The path is the caller's: a phone number or a NUL byte in it must not make the read fail.
    path = redact_phones(what).replace("\x00", "\ufffd")
    return await record(
        session,
        actor=f"admin:{admin_id}",
        action="admin.accessed",
        subject_type="admin_view",
        subject_id=path[:40],
        details={"what": path, "filters": safe_filters},
    )


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return redact_phones(value)
    if isinstance(value, Mapping):
        return {k: _redact_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_strings(v) for v in value]
    return value


def _check_text(name: str, value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > _LIMITS[name] or "\x00" in value:
        raise ValueError(f"audit {name} must be 1-{_LIMITS[name]} characters")
    if _RAW_MSISDN.search(value):
        raise ValueError(f"audit {name} contains a raw phone number")


async def lock_chain(session: AsyncSession) -> None:
    """Take the audit chain lock now (held to commit/rollback); ``record`` calls it too.

    On PostgreSQL a transaction that updates row X, audits, then updates row Y can deadlock
    with one that holds Y and waits to audit. Calling this before the first row change
    takes the chain lock first; when every such transaction does, no deadlock is possible.
    """
    # PostgreSQL: one appender at a time until commit/rollback. SQLite: BEGIN IMMEDIATE
    # (core.db.engine) already holds the database write lock for the whole transaction.
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})


# -- reading: verify and export -------------------------------------------------------------


class AsyncTextWriter(Protocol):
    """Anything with ``write(str)``; an awaitable result is awaited."""

    def write(self, data: str, /) -> Any: ...


Source = UnitOfWork | AsyncSession


async def verify_chain(source: Source, *, batch_size: int = BATCH_SIZE) -> VerifyResult:
    """Recompute every hash in seq order, streaming in batches; names the first broken entry."""
    verifier = ChainVerifier()
    async with _reader(source) as read:
        async for batch in _batches(read, batch_size=batch_size):
            for rec in batch:
                if not verifier.feed(rec):
                    return verifier.result()
    return verifier.result()


async def export_jsonl(
    source: Source,
    out: TextIO | AsyncTextWriter,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Write one JSON object per entry (seq order); returns how many were written.

    With ``since``/``until`` the export is the contiguous seq range from the first entry at or
    after ``since`` to the last entry before ``until``, so the slice verifies on its own.
    """
    written = 0
    async with _reader(source) as read:
        lo_q = select(func.min(AuditEntry.seq))
        hi_q = select(func.max(AuditEntry.seq))
        if since is not None:
            lo_q = lo_q.where(AuditEntry.at >= since)
        if until is not None:
            hi_q = hi_q.where(AuditEntry.at < until)
        lo = (await read(lo_q))[0][0]
        hi = (await read(hi_q))[0][0]
        if lo is None or hi is None or lo > hi:
            return 0
        async for batch in _batches(read, batch_size=batch_size, start_after=lo - 1, stop_at=hi):
            for rec in batch:
                result = out.write(canonical_json(rec.to_export()) + "\n")
                if inspect.isawaitable(result):
                    await result
                written += 1
    return written


Reader = Callable[[Select[Any]], Awaitable[Sequence[Row[Any]]]]


@asynccontextmanager
async def _reader(source: Source) -> AsyncIterator[Reader]:
    """A query runner. For a UnitOfWork every query is its own short read transaction
    (SQLite's BEGIN IMMEDIATE would otherwise lock writers out for the whole scan); a
    session, or a unit of work the caller already entered, is used as the caller left it."""
    if isinstance(source, UnitOfWork) and not hasattr(source, "session"):
        async with source:

            async def run_and_release(query: Select[Any]) -> Sequence[Row[Any]]:
                rows = (await source.session.execute(query)).all()
                await source.session.rollback()
                return rows

            yield run_and_release
        return
    session = source.session if isinstance(source, UnitOfWork) else source

    async def run(query: Select[Any]) -> Sequence[Row[Any]]:
        return (await session.execute(query)).all()

    yield run


async def _batches(
    read: Reader, *, batch_size: int, start_after: int = 0, stop_at: int | None = None
) -> AsyncIterator[list[ChainRecord]]:
    # Keyset pagination on seq; plain columns, so no ORM identity map grows with the log.
    last = start_after
    while True:
        query = (
            select(
                AuditEntry.seq,
                AuditEntry.at,
                AuditEntry.actor,
                AuditEntry.action,
                AuditEntry.subject_type,
                AuditEntry.subject_id,
                AuditEntry.details,
                AuditEntry.prev_hash,
                AuditEntry.hash,
            )
            .where(AuditEntry.seq > last)
            .order_by(AuditEntry.seq)
            .limit(batch_size)
        )
        if stop_at is not None:
            query = query.where(AuditEntry.seq <= stop_at)
        rows = await read(query)
        if not rows:
            return
        yield [ChainRecord(*row) for row in rows]
        last = rows[-1][0]
        if len(rows) < batch_size:
            return
