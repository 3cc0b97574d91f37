"""Whether a person can be reached on Telegram (Client/Therapist ``telegram_unreachable``).

A user who blocked the bot is marked unreachable, so the outbox dispatcher sends their
messages by SMS instead; unblocking (Telegram's ``my_chat_member`` update with status
"member", sent when the user restarts the bot) clears the mark.
"""

from __future__ import annotations

import logging

from sqlalchemy import update

from core.db.models import Client, Therapist
from core.runtime import Runtime

log = logging.getLogger(__name__)


async def set_telegram_reachable(runtime: Runtime, telegram_user_id: int, *, reachable: bool) -> int:
    """Set ``telegram_unreachable`` on every client and therapist with this Telegram id.

    Returns how many rows changed (0 when the mark already had that value or nobody has the id).
    """
    changed = 0
    async with runtime.uow() as uow:
        for model in (Client, Therapist):
            result = await uow.session.execute(
                update(model)
                .where(
                    model.telegram_user_id == telegram_user_id, model.telegram_unreachable.is_(reachable)
                )  # only rows whose mark changes
                .values(telegram_unreachable=not reachable)
                .execution_options(synchronize_session=False)
            )
            changed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        await uow.commit()
    if changed:
        log.info(
            "telegram reachability changed",
            extra={"telegram_user": telegram_user_id, "reachable": reachable, "rows": changed},
        )
    return changed


async def mark_telegram_unreachable(runtime: Runtime, telegram_user_id: int) -> int:
    """The user blocked the bot (403): later messages to them go by SMS."""
    return await set_telegram_reachable(runtime, telegram_user_id, reachable=False)


async def mark_telegram_reachable(runtime: Runtime, telegram_user_id: int) -> int:
    """The user unblocked (restarted) the bot."""
    return await set_telegram_reachable(runtime, telegram_user_id, reachable=True)
