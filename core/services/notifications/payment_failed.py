"""One "payment not completed" message per failure on Telegram (DESIGN §4, Chat conventions).

A failed attempt is told to a Telegram client in one of two ways, never both:

* the chat's live progress message (``bot/progress.py``), edited to the failure within a
  second, with "Retry payment" and "Use another number" — when this process follows it;
* the outbox's ``payment_failed_client`` notice (same two buttons) — after a restart, for a
  payment the chat did not follow, or when the progress message could not be edited.

Settlement queues the notice as usual, but on Telegram ``TELEGRAM_HOLD`` later than now. A
progress follower that sees the failure first *takes the notice over* (PENDING → CANCELLED,
only while nobody holds it) and shows the failure itself; if the edit then fails it *gives
the notice back* (due at once). A notice already claimed or sent leaves the progress message
a neutral line without buttons. SMS notices are never held or taken over.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import claims
from core.db.models import Outbox
from core.services.notifications.outbox_store import CANCELLED, PENDING, fit_dedupe_key

TEMPLATE = "payment_failed_client"
# Long enough for the progress follower (woken within a second of settlement, Property 16),
# short enough that a client whose chat nobody follows (a restart) is told promptly.
TELEGRAM_HOLD = timedelta(seconds=8)
TAKEN_OVER = "shown on the chat's payment progress message"

Takeover = Literal["taken", "already_out", "none"]


def dedupe_key(attempt_id: int) -> str:
    """The outbox dedupe key of the client's failure notice for ``attempt_id``."""
    return fit_dedupe_key(f"payment:{attempt_id}:failed:client")


def telegram_due_at(now: datetime) -> datetime:
    """When a Telegram failure notice becomes due (the progress message goes first)."""
    return now + TELEGRAM_HOLD


async def take_over(session: AsyncSession, attempt_id: int, *, now: datetime) -> Takeover:
    """The chat will show this failure: withdraw the Telegram notice if it has not gone out.

    ``taken``: the notice will not be sent (or there was one already taken over);
    ``already_out``: a worker holds it or it was sent — the chat must not repeat the buttons;
    ``none``: no Telegram notice exists (SMS client, anonymised client): the chat shows it.
    The caller commits.
    """
    key = dedupe_key(attempt_id)
    result = await session.execute(
        update(Outbox)
        .where(
            Outbox.dedupe_key == key,
            Outbox.channel == "telegram",
            Outbox.status == PENDING,
            claims.lease_free(Outbox, now),
        )
        .values(status=CANCELLED, claimed_until=None, claimed_by=None, last_error=TAKEN_OVER)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        return "taken"
    found = select(Outbox.channel, Outbox.status, Outbox.last_error).where(Outbox.dedupe_key == key)
    row = (await session.execute(found)).first()
    if row is None or row.channel != "telegram":
        return "none"
    if row.status == CANCELLED and row.last_error == TAKEN_OVER:
        return "taken"
    return "already_out"


async def give_back(session: AsyncSession, attempt_id: int, *, now: datetime) -> bool:
    """The chat could not show the failure after all: the notice is due at once. Caller commits."""
    result = await session.execute(
        update(Outbox)
        .where(
            Outbox.dedupe_key == dedupe_key(attempt_id),
            Outbox.status == CANCELLED,
            Outbox.last_error == TAKEN_OVER,
        )
        .values(status=PENDING, due_at=now, last_error=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
