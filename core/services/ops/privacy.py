"""Forgetting a client (Property 49): personal fields cleared, money records kept.

Receipts, amounts and times stay (the practice must account for payments for 7 years);
the payer's phone on each attempt is reduced to its last four digits; conversation
state and queued or failed messages to the client go (a failed one still names them and
could be sent again from the admin site); the audit trail records the erasure.
Refused while one of the client's payments is in progress (settlement would write the payer's
number back). The admin site calls :func:`forget_client`, which asks for an explicit confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update

from core.db.models import Booking, Client, DialogState, Outbox, PaymentAttempt
from core.db.uow import UnitOfWork
from core.domain.phone import mask_phone
from core.domain.states import LIVE_PAYMENT_STATUSES
from core.services import audit


class PrivacyError(ValueError):
    """The request cannot be carried out; the message is safe to show."""


@dataclass(frozen=True)
class ErasureReport:
    client_id: int
    attempts_masked: int
    bookings_cleared: int
    messages_dropped: int


async def anonymise_client(uow: UnitOfWork, client_id: int, *, actor: str = "system") -> ErasureReport:
    """Clear a client's personal data in one transaction; idempotent."""
    async with uow:
        session = uow.session
        await audit.lock_chain(session)
        client = await session.get(Client, client_id)
        if client is None:
            raise PrivacyError(f"no client with id {client_id}")
        telegram_key = str(client.telegram_user_id) if client.telegram_user_id else None
        booking_emails = (
            await session.scalars(
                select(Booking.email).where(Booking.client_id == client_id, Booking.email.is_not(None))
            )
        ).all()
        contacts = list({c for c in (client.phone, client.email, telegram_key, *booking_emails) if c})
        attempts = (
            await session.scalars(select(PaymentAttempt).where(PaymentAttempt.client_id == client_id))
        ).all()
        if any(a.status in LIVE_PAYMENT_STATUSES for a in attempts):
            # Settlement would write the payer's number back onto a forgotten client's attempt.
            raise PrivacyError(
                f"client {client_id} has a payment in progress; forget them once it has finished"
            )
        for attempt in attempts:
            attempt.phone = mask_phone(attempt.phone)[-12:]
            if attempt.paid_phone:
                attempt.paid_phone = mask_phone(attempt.paid_phone)[-12:]
        cleared = await session.execute(
            update(Booking)
            .where(Booking.client_id == client_id, Booking.email.is_not(None))
            .values(email=None)
        )
        dropped = 0
        if contacts:
            result = await session.execute(
                delete(Outbox).where(Outbox.recipient.in_(contacts), Outbox.status.in_(("PENDING", "FAILED")))
            )
            dropped = result.rowcount or 0  # type: ignore[attr-defined]
        keys = [k for k in (telegram_key, client.phone) if k]
        if keys:
            await session.execute(delete(DialogState).where(or_(*(DialogState.user_key == k for k in keys))))
        client.name = None
        client.email = None
        client.phone = None
        client.telegram_user_id = None
        client.anonymised = True
        await audit.record(
            session,
            actor=actor,
            action="client.anonymised",
            subject_type="client",
            subject_id=client_id,
            details={"attempts_masked": len(attempts), "messages_dropped": dropped},
        )
        await uow.commit()
    return ErasureReport(client_id, len(attempts), cleared.rowcount or 0, dropped)  # type: ignore[attr-defined]


async def forget_client(uow: UnitOfWork, client_id: int, *, confirmed: bool, actor: str) -> ErasureReport:
    """The admin site's "forget this client": refused without ``confirmed`` or when done already."""
    if not confirmed:
        raise PrivacyError("tick the confirmation box to forget this client; nothing was changed")
    async with uow:
        client = await uow.session.get(Client, client_id)
        if client is None:
            raise PrivacyError(f"no client with id {client_id}")
        if client.anonymised:
            raise PrivacyError(f"client {client_id} has been forgotten already")
    return await anonymise_client(uow, client_id, actor=actor)
