"""Conversation state in the database: restarts, the 30-minute expiry, concurrent turns, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.db.types import utcnow
from core.dialog import booking_flow, messages
from core.dialog.engine import DialogEngine
from core.dialog.store import DialogStore
from core.dialog.types import Inbound
from core.runtime import Runtime, build_runtime
from core.services.payments.initiate import PaymentService
from tests.conftest import make_settings
from tests.integration.test_dialog_support import NoGateway, World, book, build_world
from tests.support.payments import Clock

NAIROBI = ZoneInfo("Africa/Nairobi")


@pytest.fixture
async def world(runtime: Runtime) -> World:
    return await build_world(runtime)


def _tomorrow_early_morning_in_nairobi() -> datetime:
    """06:00 Nairobi tomorrow: the whole working day is still bookable, whatever the hour of the test run."""
    tomorrow = (utcnow() + timedelta(days=1)).astimezone(NAIROBI).date()
    return datetime.combine(tomorrow, time(6, 0), tzinfo=NAIROBI).astimezone(UTC)


@pytest.fixture
async def clocked(database_url: str) -> AsyncIterator[tuple[World, Clock]]:
    clock = Clock(start=_tomorrow_early_morning_in_nairobi())
    runtime = build_runtime(make_settings(database_url), clock=clock)
    try:
        yield await build_world(runtime), clock
    finally:
        await runtime.close()


async def _to_time_step(chat, world: World) -> None:  # type: ignore[no-untyped-def]
    await chat.send("/book")
    await chat.press(world.therapist_name)
    await chat.press_first()
    await chat.press_first()
    assert "Pick a start time" in chat.text


async def test_a_restart_in_the_middle_of_a_booking_resumes_the_conversation(database_url: str) -> None:
    first = build_runtime(make_settings(database_url))
    try:
        world = await build_world(first)
        chat = world.chat()
        await _to_time_step(chat, world)
        time_option = chat.option(chat.labels[0]).value
    finally:
        await first.close()

    second = build_runtime(make_settings(database_url))  # a new process: new runtime, new engine
    try:
        engine = DialogEngine(second, PaymentService(second, NoGateway(), "test-secret"))
        replies = await engine.handle(Inbound(channel="telegram", user_key=chat.user_key, option=time_option))
        assert "e-mail" in replies[0].text and [o.label for o in replies[0].options] == ["Skip"]
        replies = await engine.handle(Inbound(channel="telegram", user_key=chat.user_key, text="1"))
        assert [o.label for o in replies[-1].options] == ["Confirm", "Cancel"]
    finally:
        await second.close()


async def test_a_conversation_idle_for_thirty_minutes_starts_over(clocked: tuple[World, Clock]) -> None:
    world, clock = clocked
    chat = world.chat()
    await _to_time_step(chat, world)
    clock.advance(29 * 60)
    await chat.press(chat.labels[-1])  # 29 minutes later: still fine (the latest time is still free)
    assert "e-mail" in chat.text
    skip = chat.option("Skip").value
    clock.advance(31 * 60)
    await chat.choose(skip)
    assert messages.say("expired") in chat.text
    assert chat.labels == ["Book a session", "My sessions", "Help"]
    state = await world.dialog("telegram", chat.user_key)
    assert state is not None and state.step == "idle"


async def test_after_expiry_a_bare_number_on_sms_restarts_the_booking(clocked: tuple[World, Clock]) -> None:
    world, clock = clocked
    chat = world.chat(user_key="254711082300", channel="sms")
    await chat.send("BOOK")
    await chat.send("1")
    clock.advance(31 * 60)
    await chat.send("1")
    assert messages.say("expired", "sms") in chat.text
    assert messages.say("choose_therapist", "sms") in chat.text


async def test_a_stale_state_write_is_rejected_by_its_version(runtime: Runtime) -> None:
    store = DialogStore(runtime)
    fresh = await store.load("telegram", "123")
    created = await store.save(fresh, "therapist", {"n": 1})
    assert created is not None and created.version == 1
    assert await store.save(fresh, "therapist", {"n": 2}) is None  # a second creator loses
    a = await store.load("telegram", "123")
    b = await store.load("telegram", "123")
    assert await store.save(a, "session_type", {"n": 3}) is not None
    assert await store.save(b, "day", {"n": 4}) is None  # read version 1, row is at 2 now
    now = await store.load("telegram", "123")
    assert (now.step, now.data, now.version) == ("session_type", {"n": 3}, 2)


async def test_a_double_tap_on_confirm_sends_one_request(world: World) -> None:
    chat = world.chat()
    await _to_time_step(chat, world)
    await chat.press_first()
    await chat.press("Skip")
    confirm = chat.option("Confirm").value
    inbound = Inbound(channel="telegram", user_key=chat.user_key, option=confirm)
    answers = await asyncio.gather(*[world.engine.handle(inbound) for _ in range(3)])
    texts = ["\n".join(r.text for r in replies) for replies in answers]
    assert sum("Request sent" in t for t in texts) == 1
    harmless = (messages.say("stale_option"), messages.say("try_again"))
    assert sum(any(h in t for h in harmless) for t in texts) == 2  # "old button" or "try again"
    assert len(await world.bookings()) == 1
    assert len(await world.outbox(template="booking_requested_therapist")) == 1


async def test_losing_the_state_race_twice_asks_the_user_to_try_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def always_stale(*_: object) -> None:
        return None

    monkeypatch.setattr(world.engine.store, "save", always_stale)
    replies = await world.engine.handle(Inbound(channel="telegram", user_key="9001", text="/book"))
    assert [r.text for r in replies] == [messages.say("try_again")]


async def test_an_unexpected_error_gets_a_generic_apology_without_details(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(booking_flow, "bookable_therapists", broken)
    replies = await world.engine.handle(Inbound(channel="telegram", user_key="9001", text="/book"))
    assert [r.text for r in replies] == [messages.say("error")]
    assert "hunter2" not in replies[0].text and "RuntimeError" not in replies[0].text
    assert any(r.message == "dialog turn failed" for r in caplog.records)


async def test_a_bad_user_key_is_answered_not_raised(world: World) -> None:
    replies = await world.engine.handle(Inbound(channel="telegram", user_key="not-a-number", text="/my"))
    assert replies and replies[0].text == messages.say("error")
    replies = await world.engine.handle(Inbound(channel="sms", user_key="12345", text="MY"))
    assert replies and replies[0].text == messages.say("error", "sms")


async def test_old_conversations_are_purged(clocked: tuple[World, Clock]) -> None:
    world, clock = clocked
    await book(world.chat(), world)
    clock.advance(31 * 24 * 3600)
    assert await world.engine.store.purge() == 1
    assert await world.dialog("telegram", "9001") is None
