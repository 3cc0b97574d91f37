"""Notifications that are never lost: the API services call, in their own transaction.

Call these inside the transaction that makes the change the message is about; after the
commit call ``runtime.wake(Wake.OUTBOX)`` so the dispatcher sends at once::

    await notifications.notify_client(session, client, template="payment_confirmed_client",
                                      data=data, dedupe_key=f"payment:{attempt.id}:confirmed:client")
    await uow.commit()
    runtime.wake(Wake.OUTBOX)

Chat channel rule (clients and therapists alike): Telegram when the person has a Telegram
id and has not blocked the bot, else SMS when a phone is known, else nothing. A Telegram
message carries the phone (``data["_route"]["fallback_sms"]``) so a permanent Telegram
failure falls back to SMS. Templates and data keys: core/templates, docs/notifications.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Client, Therapist
from core.domain.email import email_or_none, is_valid_email
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

log = logging.getLogger(__name__)

__all__ = [
    "CANCELLED", "DELIVERED", "EXPIRED", "FAILED", "OUTBOX_WORKER", "PENDING", "REROUTED", "SENT",
    "TEMPLATES", "Attachment", "Button", "Dispatcher", "RenderedMessage", "SendResult", "Sender",
    "PlannedMessage", "TemplateError", "backoff", "cancel_reminders", "chat_message", "chat_route",
    "create_reminders", "email_client", "email_message",
    "enqueue", "failed_notifications", "is_valid_email", "list_failed_notifications", "notify_client",
    "notify_therapist", "outbox_counts", "plan_reminders", "record_delivery_report", "render",
    "run_due_reminders", "start_reminder_scheduler",
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


@dataclass(frozen=True)
class PlannedMessage:
    """One message to queue: what :func:`enqueue` takes (the data carries its ``_route``)."""

    channel: str
    recipient: str
    template: str
    data: dict[str, Any]
    dedupe_key: str


def chat_message(
    *,
    role: str,
    person_id: int,
    telegram_user_id: int | None,
    telegram_unreachable: bool,
    phone: str | None,
    template: str,
    data: Mapping[str, Any],
    dedupe_key: str,
    anonymised: bool = False,
) -> PlannedMessage | None:
    """The chat message to a client or practitioner (rule: :func:`chat_route`), or None when
    there is nobody to tell (anonymised, or no way to reach them)."""
    if anonymised:
        return None
    target = chat_route(
        role=role, person_id=person_id, telegram_user_id=telegram_user_id,
        telegram_unreachable=telegram_unreachable, phone=phone,
    )
    if target is None:
        return None
    channel, recipient, route = target
    return PlannedMessage(channel, recipient, template, {**data, "_route": route}, dedupe_key)


def email_message(
    *,
    client_id: int,
    anonymised: bool,
    email: str | None,
    template: str,
    data: Mapping[str, Any],
    dedupe_key: str,
) -> PlannedMessage | None:
    """The e-mail to a client when a valid address is known, else None (an invalid one is logged)."""
    if not (email or "").strip() or anonymised:
        return None
    address = email_or_none(email or "")
    if address is None:
        log.warning("not e-mailing an invalid address", extra={"client": client_id, "template": template})
        return None
    route = {"role": "client", "id": client_id}
    return PlannedMessage("email", address, template, {**data, "_route": route}, dedupe_key)


async def _enqueue(session: AsyncSession, message: PlannedMessage) -> None:
    await enqueue(
        session, channel=message.channel, recipient=message.recipient, template=message.template,
        data=message.data, dedupe_key=message.dedupe_key,
    )


async def notify_client(
    session: AsyncSession, client: Client, *, template: str, data: Mapping[str, Any], dedupe_key: str
) -> str | None:
    """Queue a chat message to a client; returns "telegram", "sms" or None (no way to reach them).

    A repeated ``dedupe_key`` queues nothing new (the channel is still returned).
    """
    message = chat_message(
        role="client", person_id=client.id, telegram_user_id=client.telegram_user_id,
        telegram_unreachable=bool(client.telegram_unreachable), phone=client.phone,
        template=template, data=data, dedupe_key=dedupe_key, anonymised=bool(client.anonymised),
    )
    if message is None:
        return None
    await _enqueue(session, message)
    return message.channel


async def notify_therapist(
    session: AsyncSession, therapist: Therapist, *, template: str, data: Mapping[str, Any], dedupe_key: str
) -> str | None:
    """Queue a chat message to a therapist (same rule as :func:`notify_client`)."""
    message = chat_message(
        role="therapist", person_id=therapist.id, telegram_user_id=therapist.telegram_user_id,
        telegram_unreachable=bool(therapist.telegram_unreachable), phone=therapist.phone,
        template=template, data=data, dedupe_key=dedupe_key,
    )
    if message is None:
        return None
    await _enqueue(session, message)
    return message.channel


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
    message = email_message(
        client_id=client.id, anonymised=bool(client.anonymised), email=email,
        template=template, data=data, dedupe_key=dedupe_key,
    )
    if message is None:
        return False
    await _enqueue(session, message)
    return True
