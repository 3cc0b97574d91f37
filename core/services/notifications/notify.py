"""Notifications that are never lost: the API services call, in their own transaction.

Call these inside the transaction that makes the change the message is about; after the
commit call ``runtime.wake("outbox")`` so the dispatcher sends at once::

    await notifications.notify_client(session, client, template="payment_confirmed_client",
                                      data=data, dedupe_key=f"payment:{attempt.id}:confirmed:client")
    await uow.commit()
    runtime.wake("outbox")

Chat channel rule (clients and therapists alike): Telegram when the person has a Telegram
id and has not blocked the bot, else SMS when a phone is known, else nothing. A Telegram
message carries the phone (``data["_route"]["fallback_sms"]``) so a permanent Telegram
failure falls back to SMS. Templates and data keys: core/templates, docs/notifications.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Client, Outbox, Therapist
from core.domain.email import email_or_none, is_valid_email
from core.domain.phone import mask_phone
from core.logging import mask_phones
from core.services import audit
from core.services.notifications.dispatcher import OUTBOX_WORKER, Dispatcher, backoff
from core.services.notifications.outbox_store import (
    CANCELLED,
    DELIVERED,
    EXPIRED,
    FAILED,
    PENDING,
    REROUTED,
    SENT,
    enqueue,
    failed_notifications,
    list_failed_notifications,
    outbox_counts,
    record_delivery_report,
    requeue_failed,
)
from core.services.notifications.outbox_types import Attachment, Button, RenderedMessage, Sender, SendResult
from core.services.notifications.reminders import (
    cancel_reminders,
    create_reminders,
    plan_reminders,
    run_due_reminders,
    start_reminder_scheduler,
)
from core.templates import TEMPLATES, TemplateError, render

if TYPE_CHECKING:
    from core.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = [
    "CANCELLED", "DELIVERED", "EXPIRED", "FAILED", "OUTBOX_WORKER", "PENDING", "REROUTED", "SENT",
    "TEMPLATES", "Attachment", "Button", "Dispatcher", "FailedNotice", "FailedNoticePage",
    "RenderedMessage", "SendAgainRefused", "SendResult", "Sender", "TemplateError", "backoff",
    "cancel_reminders", "chat_route", "create_reminders", "email_client", "enqueue",
    "failed_notice_page", "failed_notifications", "is_valid_email", "list_failed_notifications",
    "notify_client", "notify_therapist", "outbox_counts", "plan_reminders", "record_delivery_report",
    "render", "requeue_failed", "run_due_reminders", "send_again", "shown_recipient",
    "start_reminder_scheduler",
]


def chat_route(
    *, role: str, person_id: int, telegram_user_id: int | None, telegram_unreachable: bool, phone: str | None
) -> tuple[str, str, dict[str, Any]] | None:
    """(channel, recipient, route) of a chat message: Telegram unless unreachable (SMS as its
    fallback), else SMS, else None (no way to reach the person)."""
    route: dict[str, Any] = {"role": role, "id": person_id}
    if telegram_user_id and not telegram_unreachable:
        if phone:
            route["fallback_sms"] = phone
        return "telegram", str(telegram_user_id), route
    if phone:
        return "sms", phone, route
    return None


async def _notify(
    session: AsyncSession,
    *,
    role: str,
    person_id: int,
    telegram_user_id: int | None,
    telegram_unreachable: bool,
    phone: str | None,
    template: str,
    data: Mapping[str, Any],
    dedupe_key: str,
) -> str | None:
    target = chat_route(
        role=role, person_id=person_id, telegram_user_id=telegram_user_id,
        telegram_unreachable=telegram_unreachable, phone=phone,
    )
    if target is None:
        return None
    channel, recipient, route = target
    await enqueue(
        session, channel=channel, recipient=recipient, template=template,
        data={**data, "_route": route}, dedupe_key=dedupe_key,
    )
    return channel


async def notify_client(
    session: AsyncSession, client: Client, *, template: str, data: Mapping[str, Any], dedupe_key: str
) -> str | None:
    """Queue a chat message to a client; returns "telegram", "sms" or None (no way to reach them).

    A repeated ``dedupe_key`` queues nothing new (the channel is still returned).
    """
    if client.anonymised:
        return None
    return await _notify(
        session, role="client", person_id=client.id, telegram_user_id=client.telegram_user_id,
        telegram_unreachable=bool(client.telegram_unreachable), phone=client.phone,
        template=template, data=data, dedupe_key=dedupe_key,
    )


async def notify_therapist(
    session: AsyncSession, therapist: Therapist, *, template: str, data: Mapping[str, Any], dedupe_key: str
) -> str | None:
    """Queue a chat message to a therapist (same rule as :func:`notify_client`)."""
    return await _notify(
        session, role="therapist", person_id=therapist.id, telegram_user_id=therapist.telegram_user_id,
        telegram_unreachable=bool(therapist.telegram_unreachable), phone=therapist.phone,
        template=template, data=data, dedupe_key=dedupe_key,
    )


async def email_client(
    session: AsyncSession,
    client: Client,
    *,
    email: str | None,
    template: str,
    data: Mapping[str, Any],
    dedupe_key: str,
) -> bool:
    """Queue an e-mail when an address is known; True when one is (or already was) queued."""
    if not (email or "").strip() or client.anonymised:
        return False
    address = email_or_none(email or "")
    if address is None:
        log.warning("not e-mailing an invalid address", extra={"client": client.id, "template": template})
        return False
    await enqueue(
        session, channel="email", recipient=address, template=template,
        data={**data, "_route": {"role": "client", "id": client.id}}, dedupe_key=dedupe_key,
    )
    return True


# -- failed notifications, for the admin site ------------------------------------------------

FAILED_PAGE_SIZE = 50


class SendAgainRefused(ValueError):
    """A "send again" that cannot be done; the message is safe to show an admin."""


@dataclass(frozen=True)
class FailedNotice:
    """A notification that failed for good, as an admin sees it (no full phone number)."""

    id: int
    channel: str
    recipient: str
    template: str
    error: str | None
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class FailedNoticePage:
    rows: list[FailedNotice]
    page: int
    has_next: bool


def shown_recipient(channel: str, recipient: str) -> str:
    """A recipient fit for an admin page: phones masked to their last four digits, e-mail
    addresses and Telegram chat ids as they are (phone-like digits in them masked too)."""
    if channel == "sms":
        return mask_phone(recipient)
    return mask_phones(recipient)


async def failed_notice_page(
    runtime: Runtime, *, page: int = 1, channel: str | None = None
) -> FailedNoticePage:
    """One page of failed notifications, newest first (``page`` counts from 1)."""
    page = max(page, 1)
    offset = (page - 1) * FAILED_PAGE_SIZE
    async with runtime.uow() as uow:
        rows = await list_failed_notifications(
            uow.session, channel=channel or None, limit=FAILED_PAGE_SIZE + 1, offset=offset
        )
        notices = [
            FailedNotice(
                r.id, r.channel, shown_recipient(r.channel, r.recipient), r.template,
                mask_phones(r.last_error) if r.last_error else None, r.attempts, r.created_at,
            )
            for r in rows[:FAILED_PAGE_SIZE]
        ]
    return FailedNoticePage(notices, page, len(rows) > FAILED_PAGE_SIZE)


async def send_again(runtime: Runtime, outbox_id: int, *, actor: str) -> None:
    """Requeue a failed notification so the dispatcher sends it again; audited.

    Refuses (``SendAgainRefused``) an unknown row, a row that is not FAILED (pending, sent,
    delivered, rerouted…, or requeued a moment ago by another admin) and a message to a
    client who has since been forgotten (Property 49: they are not contacted again).
    """
    async with runtime.uow() as uow:
        session = uow.session
        await audit.lock_chain(session)
        row = await session.get(Outbox, outbox_id)
        if row is None:
            raise SendAgainRefused(f"There is no notification {outbox_id}.")
        if row.status != FAILED:
            raise SendAgainRefused(
                f"Notification {outbox_id} is {row.status.lower()}, not failed: nothing to send again."
            )
        if await _to_forgotten_client(session, row):
            raise SendAgainRefused(f"Notification {outbox_id} is for a client who has been forgotten.")
        if not await requeue_failed(session, outbox_id, now=runtime.clock()):
            raise SendAgainRefused(f"Notification {outbox_id} changed a moment ago; reload the page.")
        await audit.record(
            session,
            actor=actor,
            action="notification.requeued",
            subject_type="outbox",
            subject_id=outbox_id,
            details={"channel": row.channel, "template": row.template, "attempts_before": row.attempts},
        )
        await uow.commit()
    runtime.wake(OUTBOX_WORKER)


async def _to_forgotten_client(session: AsyncSession, row: Outbox) -> bool:
    route = row.data.get("_route") if isinstance(row.data, dict) else None
    if not isinstance(route, dict) or route.get("role") != "client" or not isinstance(route.get("id"), int):
        return False
    anonymised = await session.scalar(select(Client.anonymised).where(Client.id == route["id"]))
    return bool(anonymised)
