"""An inbound SMS stored but never answered (the process died mid-turn, perhaps after its 200 went
out, so Africa's Talking will not send it again) is answered by the sweep, once; found by the
chaos run (bench/chaos.py), where practitioners' approvals were lost this way."""

from __future__ import annotations

import json
from datetime import timedelta

from aiohttp import web
from sqlalchemy import select

from core.db.models import CallbackInbox
from core.db.types import utcnow
from core.runtime import Runtime
from tests.integration.test_dialog_support import build_world
from tests.integration.test_sms_conversation import CLIENT, SECRET, reply_to
from webhooks.sms import MAX_TRIES, setup_sms_routes


async def _store(runtime: Runtime, message_id: str, *, minutes_ago: float, attempts: int = 0) -> None:
    form = {"from": "+" + CLIENT, "to": "22384", "text": "BOOK", "id": message_id, "linkId": ""}
    async with runtime.uow() as uow:
        uow.session.add(
            CallbackInbox(
                provider="at_sms",
                provider_id=message_id,
                raw_body=json.dumps(form),
                received_at=utcnow() - timedelta(minutes=minutes_ago),
                attempts=attempts,
            )
        )
        await uow.commit()


async def _processed(runtime: Runtime, message_id: str) -> bool:
    async with runtime.uow() as uow:
        row = await uow.session.scalar(select(CallbackInbox).where(CallbackInbox.provider_id == message_id))
    return row is not None and row.processed_at is not None


async def test_a_lost_inbound_sms_is_answered_by_the_sweep_once(runtime: Runtime) -> None:
    world = await build_world(runtime)
    hook = setup_sms_routes(web.Application(), runtime, world.engine, SECRET)
    await _store(runtime, "lost-after-200", minutes_ago=5)
    assert await hook.sweep_lost() == 1
    assert "Who would you like to see?" in await reply_to(runtime, "lost-after-200")
    assert await _processed(runtime, "lost-after-200")
    assert await hook.sweep_lost() == 0  # answered: never again


async def test_the_sweep_leaves_recent_and_given_up_messages_alone(runtime: Runtime) -> None:
    world = await build_world(runtime)
    hook = setup_sms_routes(web.Application(), runtime, world.engine, SECRET)
    await _store(runtime, "still-being-handled", minutes_ago=0.1)
    await _store(runtime, "given-up", minutes_ago=60, attempts=MAX_TRIES)
    assert await hook.sweep_lost() == 0
    assert not await _processed(runtime, "still-being-handled")
    assert not await _processed(runtime, "given-up")
