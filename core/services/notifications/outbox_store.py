"""The outbox table: enqueue in the caller's transaction, claim with a lease, record outcomes.

Row life cycle (``outbox.status``)::

    PENDING --sent--> SENT --AT delivery report Success--> DELIVERED
       |  \\--permanent failure / retries exhausted--> FAILED (admins list these)
       |  \\--Telegram failed for good, SMS fallback queued--> REROUTED
       |  \\--too late to be useful (a reminder after the session started)--> EXPIRED
       \\--booking cancelled/rescheduled (reminders only)--> CANCELLED
    SENT --AT delivery report Failed/Rejected--> FAILED

A PENDING row is *claimed* (core.db.claims: ``claimed_by`` + a lease in ``claimed_until``)
with a conditional UPDATE; nobody else claims it until the lease runs out, so a worker that
dies between claim and mark leaves a row that is picked up again later (never lost; sent
twice only when a worker died after the provider accepted it and before the mark).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import claims
from core.db.models import Client, Outbox, Therapist
from core.db.statements import insert_ignore
from core.db.types import utcnow
from core.domain.email import is_valid_email
from core.logging import mask_phones
from core.templates import CHANNELS, check

PENDING = "PENDING"
SENT = "SENT"
DELIVERED = "DELIVERED"
FAILED = "FAILED"
REROUTED = "REROUTED"
EXPIRED = "EXPIRED"
CANCELLED = "CANCELLED"
STATUSES = (PENDING, SENT, DELIVERED, FAILED, REROUTED, EXPIRED, CANCELLED)

DEDUPE_KEY_MAX = 120
ERROR_MAX = 300
_PHONE_RECIPIENT = re.compile(r"^254[17]\d{8}$")
_TELEGRAM_RECIPIENT = re.compile(r"^-?\d{1,20}$")


@dataclass(frozen=True)
class ClaimedRow:
    """An outbox row ``worker`` holds until ``lease`` (its ``claimed_by`` / ``claimed_until``)."""

    id: int
    channel: str
    recipient: str
    template: str
    data: dict[str, Any]
    dedupe_key: str
    attempts: int
    lease: datetime
    worker: str = ""

    @property
    def route(self) -> dict[str, Any]:
        route = self.data.get("_route")
        return route if isinstance(route, dict) else {}


def fit_dedupe_key(key: str) -> str:
    """Keys longer than the column keep a readable prefix and a hash of the whole key."""
    if len(key) <= DEDUPE_KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: DEDUPE_KEY_MAX - 33]}#{digest}"


def json_safe(data: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-JSON copy (datetimes as ISO strings, enums and decimals as their values)."""

    def _default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if hasattr(value, "value"):
            return value.value
        return str(value)

    result: dict[str, Any] = json.loads(json.dumps(dict(data), default=_default))
    return result


def _check_recipient(channel: str, recipient: str) -> None:
    if channel == "sms" and not _PHONE_RECIPIENT.match(recipient):
        raise ValueError("an SMS recipient must be a normalised Kenyan mobile number (2547…/2541…)")
    if channel == "telegram" and not _TELEGRAM_RECIPIENT.match(recipient):
        raise ValueError("a Telegram recipient must be a numeric chat id")
    if channel == "email" and not is_valid_email(recipient):
        raise ValueError("an e-mail recipient must be an e-mail address")


def validate(channel: str, recipient: str, template: str, data: Mapping[str, Any]) -> None:
    """Raise ValueError unless :func:`enqueue` would accept these values."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel '{channel}'")
    _check_recipient(channel, recipient)
    check(template, channel, data)


DEDUPE_UNIQUE = ("dedupe_key",)


def outbox_row(
    *,
    channel: str,
    recipient: str,
    template: str,
    data: Mapping[str, Any],
    dedupe_key: str,
    now: datetime,
    due_at: datetime | None = None,
    plain_json: bool = False,
) -> dict[str, Any]:
    """The outbox row :func:`enqueue` inserts, validated (``ValueError`` as enqueue raises).

    ``plain_json``: ``data`` is plain JSON already (:func:`json_safe`), no copy needed. The
    batch settlement inserts these rows with one statement.
    """
    validate(channel, recipient, template, data)
    return {
        "channel": channel,
        "recipient": recipient,
        "template": template,
        "data": dict(data) if plain_json else json_safe(data),
        "dedupe_key": fit_dedupe_key(dedupe_key),
        "status": PENDING,
        "due_at": due_at or now,
        "attempts": 0,
        "created_at": now,
    }


async def enqueue(
    session: AsyncSession,
    *,
    channel: str,
    recipient: str,
    template: str,
    data: Mapping[str, Any],
    dedupe_key: str,
    due_at: datetime | None = None,
) -> bool:
    """Add a message to the outbox in the caller's transaction (the caller commits).

    Returns False, changing nothing, when a row with ``dedupe_key`` exists already: one
    message per event however often the event is processed. Raises ``ValueError``
    (``TemplateError``) for an unknown template/channel or missing data keys, so a bad call
    fails in the caller's tests instead of producing an empty message later.
    ``due_at`` defaults to now (wall clock, UTC).
    """
    values = outbox_row(
        channel=channel, recipient=recipient, template=template, data=data, dedupe_key=dedupe_key,
        now=utcnow(), due_at=due_at,
    )
    stmt = insert_ignore(session, Outbox, unique=DEDUPE_UNIQUE).values(**values).returning(Outbox.id)
    inserted = (await session.execute(stmt)).scalar_one_or_none()
    return inserted is not None


def _due(now: datetime) -> ColumnElement[bool]:
    return (Outbox.status == PENDING) & (Outbox.due_at <= now)


async def claim_due(
    session: AsyncSession, *, now: datetime, lease: datetime, limit: int, worker: str = "dispatcher"
) -> list[ClaimedRow]:
    """Claim up to ``limit`` due rows for ``worker`` until ``lease``; the caller commits at once.

    core.db.claims: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a conditional UPDATE (still
    PENDING, lease free) decides the winner on both backends; every claim counts an attempt.
    Rows whose lease expired (a worker died mid-send) are claimable again.
    """
    rows = await claims.claim_batch(
        session, Outbox, due=_due(now), order_by=(Outbox.due_at, Outbox.id), limit=limit, now=now,
        until=lease, worker=worker, values={"attempts": Outbox.attempts + 1},
        returning=(Outbox.channel, Outbox.recipient, Outbox.template, Outbox.data, Outbox.dedupe_key,
                   Outbox.attempts),
    )
    return [
        ClaimedRow(
            r.id, r.channel, r.recipient, r.template, dict(r.data or {}), r.dedupe_key, r.attempts,
            lease, worker,
        )
        for r in rows
    ]


async def hold(session: AsyncSession, row: ClaimedRow, *, until: datetime) -> ClaimedRow | None:
    """Extend our lease on a still-PENDING row to ``until`` (just before sending it).

    None when the row is not ours any more: our lease ran out while it waited and another
    worker claimed it (that one sends it), or it was finished or cancelled meanwhile.
    """
    if await claims.hold(
        session, Outbox, row.id, worker=row.worker, held_until=row.lease, until=until,
        still=Outbox.status == PENDING,
    ):
        return dataclasses.replace(row, lease=until)
    return None


def _ours(row: ClaimedRow) -> ColumnElement[bool]:
    return (Outbox.status == PENDING) & claims.held_by(Outbox, row.id, worker=row.worker, until=row.lease)


def _error(text: str | None) -> str | None:
    return mask_phones(text)[:ERROR_MAX] if text else None


async def mark_sent(
    session: AsyncSession, row: ClaimedRow, *, now: datetime, provider_message_id: str | None
) -> bool:
    """PENDING → SENT (even if our lease ran out meanwhile: the message did go out)."""
    result = await session.execute(
        update(Outbox)
        .where(Outbox.id == row.id, Outbox.status == PENDING)
        .values(
            status=SENT, sent_at=now, provider_message_id=(provider_message_id or None),
            claimed_until=None, claimed_by=None, last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_retry(session: AsyncSession, row: ClaimedRow, *, due_at: datetime, error: str | None) -> bool:
    """Release the lease and try again at ``due_at`` (only if we still hold the lease)."""
    result = await session.execute(
        update(Outbox)
        .where(_ours(row))
        .values(due_at=due_at, claimed_until=None, claimed_by=None, last_error=_error(error))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_final(session: AsyncSession, row: ClaimedRow, *, status: str, error: str | None) -> bool:
    """PENDING → FAILED / REROUTED / EXPIRED (only if we still hold the lease)."""
    result = await session.execute(
        update(Outbox)
        .where(_ours(row))
        .values(status=status, claimed_until=None, claimed_by=None, last_error=_error(error))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def requeue_failed(session: AsyncSession, outbox_id: int, *, now: datetime) -> bool:
    """FAILED → PENDING, due now with a fresh retry budget (an admin's "send again"; caller commits).

    Only a row that failed for good is requeued (a conditional UPDATE: a row that is pending,
    sent or was requeued a moment ago by someone else is left alone and False is returned).
    The old provider id goes so a late delivery report about the first send cannot touch it.
    """
    result = await session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id, Outbox.status == FAILED)
        .values(
            status=PENDING, due_at=now, attempts=0, claimed_until=None, claimed_by=None, last_error=None,
            provider_message_id=None, sent_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_telegram_unreachable(session: AsyncSession, route: Mapping[str, Any]) -> None:
    """The user blocked the bot (or never started it): later messages go by SMS."""
    models: dict[str, type[Client] | type[Therapist]] = {"client": Client, "therapist": Therapist}
    model = models.get(str(route.get("role")))
    target = route.get("id")
    if model is None or not isinstance(target, int):
        return
    await session.execute(
        update(model)
        .where(model.id == target)
        .values(telegram_unreachable=True)
        .execution_options(synchronize_session=False)
    )


# -- delivery reports ---------------------------------------------------------------------

AT_FINAL_FAILURE = frozenset({"failed", "rejected"})
AT_DELIVERED = frozenset({"success"})


async def record_delivery_report(
    session: AsyncSession, *, provider_message_id: str, status: str, failure_reason: str | None = None
) -> bool:
    """Apply an Africa's Talking delivery report to the SMS it is about (caller commits).

    ``Success`` → DELIVERED; ``Failed`` / ``Rejected`` → FAILED with the reason (shown to
    admins; the message is not re-sent: AT already retried it); ``Sent``, ``Submitted``,
    ``Buffered`` are interim and change nothing. An unknown message id changes nothing and
    returns False (the webhook still answers 2xx).
    """
    if not provider_message_id:
        return False
    row = await session.scalar(
        select(Outbox).where(Outbox.provider_message_id == provider_message_id, Outbox.channel == "sms")
    )
    if row is None:
        return False
    normalised = (status or "").strip().lower()
    if normalised in AT_DELIVERED:
        new_status, error = DELIVERED, None
    elif normalised in AT_FINAL_FAILURE:
        new_status = FAILED
        reason = f" ({failure_reason.strip()})" if failure_reason else ""
        error = f"delivery report: {status.strip()}{reason}"
    else:
        return True
    await session.execute(
        update(Outbox)
        .where(Outbox.id == row.id, Outbox.status.in_([SENT, DELIVERED, FAILED]))
        .values(status=new_status, last_error=_error(error) if error else row.last_error)
        .execution_options(synchronize_session=False)
    )
    return True


# -- queries for the admin site and metrics ---------------------------------------------------


def failed_notifications(
    *,
    channel: str | None = None,
    template: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Select[Outbox]:
    """SELECT of failed notifications, newest first: ``(await session.scalars(stmt)).all()``.

    Rows carry ``channel``, ``recipient`` (mask phones before showing: core.domain.phone),
    ``template``, ``last_error``, ``attempts``, ``created_at`` and ``sent_at``.
    """
    stmt = select(Outbox).where(Outbox.status == FAILED)
    if channel:
        stmt = stmt.where(Outbox.channel == channel)
    if template:
        stmt = stmt.where(Outbox.template == template)
    if since:
        stmt = stmt.where(Outbox.created_at >= since)
    return stmt.order_by(Outbox.created_at.desc(), Outbox.id.desc()).limit(limit).offset(offset)


async def list_failed_notifications(session: AsyncSession, **filters: Any) -> Sequence[Outbox]:
    """The rows of :func:`failed_notifications` (same keyword filters)."""
    return (await session.scalars(failed_notifications(**filters))).all()


async def outbox_counts(session: AsyncSession) -> dict[str, int]:
    """Number of rows per status (for /metrics and the admin dashboard)."""
    rows = (await session.execute(select(Outbox.status, func.count()).group_by(Outbox.status))).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


async def sent_telegram_messages(
    session: AsyncSession, *, template: str, booking_id: int
) -> list[tuple[int, int]]:
    """(chat id, message id) of the ``template`` messages about ``booking_id`` delivered on Telegram.

    The chat side uses it to take buttons off messages that no longer apply (a "Retry
    payment" notice once the booking is paid). ``provider_message_id`` is Telegram's message id.
    """
    rows = (
        await session.execute(
            select(Outbox.recipient, Outbox.provider_message_id).where(
                Outbox.channel == "telegram",
                Outbox.template == template,
                Outbox.status == SENT,
                Outbox.provider_message_id.is_not(None),
                Outbox.data["booking_id"].as_integer() == booking_id,
            )
        )
    ).all()
    found: list[tuple[int, int]] = []
    for chat, message in rows:
        if chat.lstrip("-").isdigit() and message is not None and message.isdigit():
            found.append((int(chat), int(message)))
    return found
