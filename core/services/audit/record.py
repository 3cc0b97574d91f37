"""Writing the audit trail: append entries inside the caller's transaction.

``record`` appends under the chain lock: a state change and its audit entry commit together.
``Draft`` / ``chain_rows`` are the row builders both ``record`` and the batch settlement use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditEntry
from core.db.types import utcnow
from core.domain.phone import mask_phone
from core.services.audit.chain import GENESIS_HASH, make_record
from core.services.audit.redact import (
    _ACTOR,
    _check_text,
    _mask_phone_fields,
    _redact_strings,
    redact_phones,
    sanitize_details,
)

# pg_advisory_xact_lock key serialising chain appends on PostgreSQL ("SSAUDIT1" in ASCII).
AUDIT_LOCK_KEY = 0x5353_4155_4449_5431


# -- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """An entry checked and sanitised, waiting for its place on the chain (seq, time, hashes)."""

    actor: str
    action: str
    subject_type: str | None
    subject_id: str | None
    details: dict[str, Any]


def draft(
    *,
    actor: str,
    action: str,
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    details: Mapping[str, Any] | None = None,
) -> Draft:
    """Check an entry's fields and sanitise its details (``ValueError`` for a bad one)."""
    _check_text("actor", actor)
    if not _ACTOR.match(actor):
        raise ValueError(f"audit actor '{actor}' must be system, client:<id>, therapist:<id> or admin:<id>")
    _check_text("action", action)
    if subject_type is not None:
        _check_text("subject_type", subject_type)
    sid = None if subject_id is None else str(subject_id)
    if sid is not None:
        _check_text("subject_id", sid)
    return Draft(actor, action, subject_type, sid, sanitize_details(details))


def transition_draft(
    *,
    actor: str,
    subject_type: str,
    subject_id: str | int,
    previous: str,
    new: str,
    reason: str,
    **extra: Any,
) -> Draft:
    """A status-change entry: previous, new and reason (Property 68)."""
    details = transition_details(previous, new, reason, **extra)
    return draft(
        actor=actor,
        action=f"{subject_type}.status_changed",
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )


async def chain_tail(session: AsyncSession) -> tuple[int, str]:
    """(next seq, previous hash) at the end of the chain; call under :func:`lock_chain`."""
    last = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    tail = (await session.execute(last)).first()
    return (tail[0] + 1, tail[1]) if tail else (1, GENESIS_HASH)


def chain_rows(
    drafts: Iterable[Draft], *, seq: int, prev_hash: str, clock: Callable[[], datetime] = utcnow
) -> list[dict[str, Any]]:
    """The ``audit_log`` rows of ``drafts`` appended after (``seq``, ``prev_hash``), in order."""
    rows: list[dict[str, Any]] = []
    for entry in drafts:
        rec = make_record(
            prev_hash,
            seq=seq,
            at=clock(),
            actor=entry.actor,
            action=entry.action,
            subject_type=entry.subject_type,
            subject_id=entry.subject_id,
            details=entry.details,
        )
        rows.append(
            {
                "seq": rec.seq,
                "at": rec.at,
                "actor": rec.actor,
                "action": rec.action,
                "subject_type": rec.subject_type,
                "subject_id": rec.subject_id,
                "details": rec.details,
                "prev_hash": rec.prev_hash,
                "hash": rec.hash,
            }
        )
        seq, prev_hash = seq + 1, rec.hash
    return rows


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
    entry = draft(
        actor=actor, action=action, subject_type=subject_type, subject_id=subject_id, details=details
    )
    if at is not None and at.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    return await record_draft(session, entry, at=at)


async def record_draft(session: AsyncSession, entry: Draft, *, at: datetime | None = None) -> AuditEntry:
    """Append a checked entry inside the caller's transaction (the caller commits)."""
    await lock_chain(session)
    seq, prev_hash = await chain_tail(session)
    # Stamp the time under the lock so that time never goes backwards along the chain.
    (row,) = chain_rows([entry], seq=seq, prev_hash=prev_hash, clock=(lambda: at) if at else utcnow)
    audit_entry = AuditEntry(**row)
    session.add(audit_entry)
    await session.flush()
    return audit_entry


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
    entry = transition_draft(
        actor=actor, subject_type=subject_type, subject_id=subject_id, previous=previous, new=new,
        reason=reason, **extra,
    )
    return await record_draft(session, entry)


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
