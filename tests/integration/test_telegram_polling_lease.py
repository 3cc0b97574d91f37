"""Several workers on PostgreSQL: exactly one polls Telegram; when it goes, another takes over.

Two started bots (two "workers", each with its own runtime and lease connection) on one
database and one Bot API stand-in; polling is gated by the advisory-lock lease.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from bot.app import BotHandle
from core.runtime import Runtime, build_runtime
from smiling_steps.polling_lease import PollingLease
from tests.conftest import make_settings
from tests.support.telegram import FakeEngine, RunningTelegram, running_bot, running_telegram

AMINA = 702


@asynccontextmanager
async def worker(url: str, telegram: RunningTelegram) -> AsyncIterator[tuple[BotHandle, PollingLease]]:
    runtime: Runtime = build_runtime(make_settings(url))
    try:
        gated = running_bot(runtime, FakeEngine(), telegram, gate_polling=True, poll_timeout=1.0)
        async with gated as handle:
            lease = PollingLease(runtime, handle.resume_polling, handle.pause_polling, retry_s=0.2)
            await lease.start()
            try:
                yield handle, lease
            finally:
                await lease.stop()
    finally:
        await runtime.close()


async def until(predicate, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


async def test_one_of_two_workers_polls_and_the_other_takes_over_when_it_stops(pg_database_url: str) -> None:
    async with running_telegram() as telegram, AsyncExitStack() as stack:
        telegram.state.add_user(AMINA, "Amina")
        first, first_lease = await stack.enter_async_context(worker(pg_database_url, telegram))
        await until(lambda: first.polling)
        second_cm = worker(pg_database_url, telegram)
        second, second_lease = await second_cm.__aenter__()
        try:
            await until(lambda: second_lease.state == "standby")
            assert first.polling and not second.polling and first_lease.state == "held"
            telegram.state.send_text(AMINA, "hello")
            await telegram.state.wait_bot_message(AMINA, lambda m: "You said: hello" in m.text, within=5)

            await stack.aclose()  # the polling worker stops: its session (and lock) ends
            await until(lambda: second.polling and second_lease.state == "held")
            telegram.state.send_text(AMINA, "again")
            await telegram.state.wait_bot_message(AMINA, lambda m: "You said: again" in m.text, within=5)
        finally:
            await second_cm.__aexit__(None, None, None)
