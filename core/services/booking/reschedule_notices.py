"""The messages a move of a booking queues (caller's transaction; see reschedule.py).

- applied: the practitioner is told (``booking_rescheduled_therapist``); the client is told
  in the chat unless they moved it themselves there (the chat answers them), and gets an
  e-mail with a new .ics (``booking_rescheduled_email``: same UID, SEQUENCE = moves so far,
  so calendar programs move the event instead of adding one);
- pending approval: the practitioner gets Approve/Decline buttons, or on SMS the
  "A<code>" / "D<code>" answer (``reschedule_requested_therapist``);
- declined: the client is told the session keeps its time (``reschedule_declined_client``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import Booking, BookingReschedule, Client, SessionType, Therapist
from core.dialog.messages import label
from core.dialog.values import RESCHEDULE_APPROVE, RESCHEDULE_DECLINE, action
from core.domain.states import BookingStatus, RescheduleStatus
from core.services.booking.lifecycle import common_data, starts_at_local
from core.services.notifications import notify as notifications


@dataclass(frozen=True)
class Parts:
    """The rows a message about a booking is built from."""

    booking: Booking
    therapist: Therapist
    session_type: SessionType
    client: Client


async def times_moved(session: AsyncSession, booking_id: int) -> int:
    """How many moves were applied to the booking: the .ics SEQUENCE of its event."""
    count = await session.scalar(
        select(func.count(BookingReschedule.id)).where(
            BookingReschedule.booking_id == booking_id,
            BookingReschedule.status == RescheduleStatus.APPLIED.value,
        )
    )
    return int(count or 0)


def _data(parts: Parts, row: BookingReschedule) -> dict[str, Any]:
    return {
        **common_data(parts.booking, parts.therapist, parts.session_type, parts.client),
        "old_starts_at_local": starts_at_local(row.old_starts_at),
        "new_starts_at_local": starts_at_local(row.new_starts_at),
        "paid": parts.booking.status == BookingStatus.CONFIRMED,
    }


async def announce_move(
    session: AsyncSession,
    parts: Parts,
    row: BookingReschedule,
    *,
    tell_client: bool,
    tell_therapist: bool = True,
) -> None:
    """The booking now starts at ``row.new_starts_at``: tell the practitioner and the client."""
    booking = parts.booking
    data = _data(parts, row)
    key = f"booking:{booking.id}:rescheduled:{row.id}"
    if tell_therapist:
        await notifications.notify_therapist(
            session,
            parts.therapist,
            template="booking_rescheduled_therapist",
            data=data,
            dedupe_key=f"{key}:therapist",
        )
    if tell_client:
        await notifications.notify_client(
            session,
            parts.client,
            template="booking_rescheduled_client",
            data={**data, "meeting_url": booking.meeting_url},
            dedupe_key=f"{key}:client",
        )
    await notifications.email_client(
        session,
        parts.client,
        email=booking.email or parts.client.email,
        template="booking_rescheduled_email",
        data={
            **data,
            "meeting_url": booking.meeting_url,
            "starts_at_iso": booking.starts_at.isoformat(),
            "ends_at_iso": booking.ends_at.isoformat(),
            "sequence": await times_moved(session, booking.id),
        },
        dedupe_key=f"{key}:email",
    )


async def announce_request(session: AsyncSession, parts: Parts, row: BookingReschedule) -> None:
    """Ask the practitioner to approve or decline the move."""
    await notifications.notify_therapist(
        session,
        parts.therapist,
        template="reschedule_requested_therapist",
        data={
            **_data(parts, row),
            "approval_code": row.code,
            "buttons": [
                [label("approve"), action(RESCHEDULE_APPROVE, row.id)],
                [label("decline"), action(RESCHEDULE_DECLINE, row.id)],
            ],
        },
        dedupe_key=f"booking:{parts.booking.id}:reschedule:{row.id}:requested:therapist",
    )


async def announce_declined(session: AsyncSession, parts: Parts, row: BookingReschedule) -> None:
    """The practitioner kept the original time: tell the client."""
    await notifications.notify_client(
        session,
        parts.client,
        template="reschedule_declined_client",
        data=_data(parts, row),
        dedupe_key=f"booking:{parts.booking.id}:reschedule:{row.id}:declined:client",
    )
