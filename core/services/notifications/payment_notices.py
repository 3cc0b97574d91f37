"""Payment notices that more than one payment path sends (the notification side of payments).

``notify_payment_failed`` is queued by settlement (a failed or cancelled STK result) and by
the push's give-up path (M-Pesa unavailable, or Daraja refused the request).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, Client, PaymentAttempt
from core.services.notifications import payment_failed
from core.services.notifications.notify import notify_client


async def notify_payment_failed(
    session: AsyncSession,
    attempt: PaymentAttempt,
    booking: Booking,
    *,
    reason: str,
    test_mode: bool,
    now: datetime,
) -> None:
    """Queue the client's "payment not completed" notice with Retry / Use another number
    (Properties 27, 31, 63). On Telegram it is held briefly so the chat's progress message
    can show the failure instead (one failure message: :mod:`.payment_failed`)."""
    client = await session.get_one(Client, attempt.client_id)
    await notify_client(
        session,
        client,
        template="payment_failed_client",
        data={
            "reference": booking.reference,
            "amount_kes": attempt.amount_kes,
            "reason": reason,
            "booking_id": booking.id,
            "attempt_id": attempt.id,
            "test_mode": test_mode,
        },
        dedupe_key=payment_failed.dedupe_key(attempt.id),
        telegram_due_at=payment_failed.telegram_due_at(now),
    )
