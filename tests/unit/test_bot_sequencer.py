"""Per-user ordering of updates (KeyedSequencer): same user in order, other users in parallel."""

from __future__ import annotations

import asyncio

from bot.handlers import KeyedSequencer


async def test_work_for_one_key_runs_in_reservation_order_one_at_a_time():
    sequencer = KeyedSequencer()
    log: list[str] = []

    async def work(name: str, pause: float) -> None:
        async with sequencer.reserve("amina"):
            log.append(f"{name} start")
            await asyncio.sleep(pause)
            log.append(f"{name} end")

    await asyncio.gather(work("first", 0.05), work("second", 0.0), work("third", 0.01))
    assert log == ["first start", "first end", "second start", "second end", "third start", "third end"]
    assert sequencer.busy() == 0


async def test_different_keys_do_not_wait_for_each_other():
    sequencer = KeyedSequencer()
    order: list[str] = []

    async def work(key: str, pause: float) -> None:
        async with sequencer.reserve(key):
            await asyncio.sleep(pause)
            order.append(key)

    await asyncio.gather(work("slow", 0.1), work("fast", 0.0))
    assert order == ["fast", "slow"]


async def test_the_place_in_line_is_taken_when_reserved_not_when_entered():
    sequencer = KeyedSequencer()
    order: list[str] = []
    first = sequencer.reserve("k")
    second = sequencer.reserve("k")

    async def enter(turn, name: str) -> None:
        async with turn:
            order.append(name)

    task = asyncio.create_task(enter(second, "second"))
    await asyncio.sleep(0.01)
    assert order == []  # second waits although it asked to enter first
    await enter(first, "first")
    await task
    assert order == ["first", "second"]


async def test_a_cancelled_waiter_does_not_block_the_ones_behind_it_nor_jump_the_line():
    sequencer = KeyedSequencer()
    order: list[str] = []
    first, second, third = (sequencer.reserve("k") for _ in range(3))

    async def enter(turn, name: str) -> None:
        async with turn:
            order.append(name)

    waiting_second = asyncio.create_task(enter(second, "second"))
    waiting_third = asyncio.create_task(enter(third, "third"))
    await asyncio.sleep(0.01)
    waiting_second.cancel()
    await asyncio.sleep(0.01)
    assert order == []  # third still waits for first
    await enter(first, "first")
    await waiting_third
    assert order == ["first", "third"]
    assert sequencer.busy() == 0


async def test_an_abandoned_reservation_frees_the_line():
    sequencer = KeyedSequencer()
    sequencer.reserve("k").abandon()
    async with sequencer.reserve("k"):
        pass
    assert sequencer.busy() == 0
