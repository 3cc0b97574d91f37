"""The progress-message map in the database (table ``telegram_progress``), shared by processes.

Each row is one chat message about one payment attempt: ``following`` while the attempt waits
(the process holding the lease edits it every few seconds), ``offered`` once it shows a failure
with "Retry payment". Claims are conditional updates (a row is taken only when unowned or its
lease has run out), so with several workers each message has one editor, and a worker that
dies (SIGKILL) hands its messages on when the lease ends. Offers are withdrawn by a conditional
delete: the one process whose delete removed the row edits the message.

Every function is one short transaction; callers treat a database error as "not now".
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select, update

from core.db.models import TelegramProgress
from core.runtime import Runtime

FOLLOWING = "following"
OFFERED = "offered"
CLAIM_BATCH = 100


def new_owner() -> str:
    """A name for this process's followers (host, pid and a random part; fits 64 characters)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class ProgressRow:
    attempt_id: int
    booking_id: int | None
    chat_id: int
    message_id: int
    base_text: str
    options: tuple[tuple[str, str], ...]
    phase: str
    lang: str = "en"  # the chat's language: the follower writes the result in it


def _row(r: TelegramProgress) -> ProgressRow:
    options = tuple((str(o[0]), str(o[1])) for o in (r.options or []))
    return ProgressRow(
        r.attempt_id, r.booking_id, r.chat_id, r.message_id, r.base_text, options, r.phase, r.lang or "en"
    )


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(TelegramProgress.owner.is_(None), TelegramProgress.lease_until < now)


async def record(
    runtime: Runtime,
    attempt_id: int,
    chat_id: int,
    message_id: int,
    base_text: str,
    options: Sequence[tuple[str, str]],
    *,
    owner: str | None,
    lease: timedelta,
    lang: str = "en",
) -> tuple[int, int] | None:
    """Store (or move) the progress message of ``attempt_id``; returns the older message it replaces."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        row = await uow.session.get(TelegramProgress, attempt_id)
        previous = None
        if row is None:
            row = TelegramProgress(attempt_id=attempt_id)
            uow.session.add(row)
        elif (row.chat_id, row.message_id) != (chat_id, message_id):
            previous = (row.chat_id, row.message_id)
        row.chat_id, row.message_id, row.base_text = chat_id, message_id, base_text
        row.options = [list(o) for o in options]
        row.phase, row.owner, row.lang = FOLLOWING, owner, lang
        row.lease_until = now + lease if owner else None
        row.updated_at = now
        await uow.commit()
    return previous


async def claim(runtime: Runtime, owner: str, lease: timedelta, *, exclude: set[int]) -> list[ProgressRow]:
    """Take the followed messages nobody holds (or whose holder's lease ran out)."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        ids = list(
            await uow.session.scalars(
                select(TelegramProgress.attempt_id)
                .where(TelegramProgress.phase == FOLLOWING, _free(now))
                .order_by(TelegramProgress.attempt_id)
                .limit(CLAIM_BATCH)
            )
        )
        taken: list[int] = []
        for attempt_id in (i for i in ids if i not in exclude):
            result = await uow.session.execute(
                update(TelegramProgress)
                .where(TelegramProgress.attempt_id == attempt_id, TelegramProgress.phase == FOLLOWING)
                .where(_free(now))
                .values(owner=owner, lease_until=now + lease)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                taken.append(attempt_id)
        chosen = select(TelegramProgress).where(TelegramProgress.attempt_id.in_(taken))
        rows = list(await uow.session.scalars(chosen)) if taken else []
        await uow.commit()
    return [_row(r) for r in rows]


async def renew(runtime: Runtime, attempt_id: int, owner: str, lease: timedelta) -> ProgressRow | None:
    """Extend our lease and return the row as it is now; None when it is no longer ours."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        result = await uow.session.execute(
            update(TelegramProgress)
            .where(TelegramProgress.attempt_id == attempt_id, TelegramProgress.owner == owner)
            .values(lease_until=now + lease)
        )
        row = await uow.session.get(TelegramProgress, attempt_id) if result.rowcount else None  # type: ignore[attr-defined]
        snapshot = _row(row) if row is not None else None
        await uow.commit()
    return snapshot


async def release(runtime: Runtime, attempt_id: int, owner: str) -> None:
    """Give a followed message back (shutdown): another worker adopts it at once."""
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(TelegramProgress)
            .where(TelegramProgress.attempt_id == attempt_id, TelegramProgress.owner == owner)
            .values(owner=None, lease_until=None)
        )
        await uow.commit()


async def clear_options(runtime: Runtime, chat_id: int, message_id: int) -> None:
    """A button of the message was pressed: later edits keep its keyboard off."""
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(TelegramProgress)
            .where(TelegramProgress.chat_id == chat_id, TelegramProgress.message_id == message_id)
            .values(options=[])
        )
        await uow.commit()


async def finish(runtime: Runtime, attempt_id: int) -> None:
    """The message needs no more edits."""
    async with runtime.uow() as uow:
        await uow.session.execute(delete(TelegramProgress).where(TelegramProgress.attempt_id == attempt_id))
        await uow.commit()


async def offer(runtime: Runtime, attempt_id: int, booking_id: int, chat_id: int, message_id: int) -> None:
    """The message now shows a failure with "Retry payment" (its text is no longer needed)."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        row = await uow.session.get(TelegramProgress, attempt_id)
        if row is None:
            row = TelegramProgress(attempt_id=attempt_id)
            uow.session.add(row)
        row.booking_id, row.chat_id, row.message_id = booking_id, chat_id, message_id
        row.base_text, row.options, row.phase = "", [], OFFERED
        row.owner, row.lease_until, row.updated_at = None, None, now
        await uow.commit()


async def offers(runtime: Runtime, *, since: datetime) -> list[ProgressRow]:
    """The standing offers (dropping those older than ``since``: a late success comes within minutes)."""
    async with runtime.uow() as uow:
        offered = TelegramProgress.phase == OFFERED
        stale = TelegramProgress.updated_at < since
        await uow.session.execute(delete(TelegramProgress).where(offered, stale))
        rows = list(await uow.session.scalars(select(TelegramProgress).where(offered)))
        await uow.commit()
    return [_row(r) for r in rows]


async def take_offer(runtime: Runtime, attempt_id: int) -> bool:
    """Withdraw the offer of ``attempt_id``; True for the one caller that removed it."""
    async with runtime.uow() as uow:
        result = await uow.session.execute(
            delete(TelegramProgress).where(
                TelegramProgress.attempt_id == attempt_id, TelegramProgress.phase == OFFERED
            )
        )
        await uow.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def take_offers_of_booking(runtime: Runtime, booking_id: int) -> list[tuple[int, int]]:
    """Withdraw every offer about ``booking_id``; returns the (chat, message) this caller removed."""
    async with runtime.uow() as uow:
        rows = list(
            await uow.session.scalars(
                select(TelegramProgress).where(
                    TelegramProgress.booking_id == booking_id, TelegramProgress.phase == OFFERED
                )
            )
        )
        taken: list[tuple[int, int]] = []
        for row in rows:
            result = await uow.session.execute(
                delete(TelegramProgress).where(
                    TelegramProgress.attempt_id == row.attempt_id, TelegramProgress.phase == OFFERED
                )
            )
            if result.rowcount:  # type: ignore[attr-defined]
                taken.append((row.chat_id, row.message_id))
        await uow.commit()
    return taken
