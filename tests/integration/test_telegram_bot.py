"""The Telegram adapter in polling mode: real PTB against the Bot API stand-in over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.app import CLIENT_COMMANDS, THERAPIST_COMMANDS, BotStartError, start_bot
from core.db.models import Client, Therapist
from core.dialog.messages import label, say
from core.dialog.types import Inbound, Option, Reply
from core.runtime import Runtime
from simulators.telegram_api import SIMULATOR_TOKEN, create_app, simulator_state
from tests.factories import make_client, make_therapist
from tests.support.daraja import closed_port
from tests.support.telegram import (
    FakeEngine,
    FakePayments,
    RunningTelegram,
    running_bot,
    running_telegram,
    serving,
)

AMINA = 501
OTIENO = 502


@pytest.fixture
async def telegram() -> AsyncIterator[RunningTelegram]:
    async with running_telegram() as running:
        running.state.add_user(AMINA, "Amina", phone_number="254712345678")
        running.state.add_user(OTIENO, "Otieno", phone_number="254722000111")
        yield running


def menu(inbound: Inbound) -> list[Reply]:
    """A small conversation: /book offers choices; a choice edits the menu; Pay asks for a phone."""
    if inbound.text == "/start":
        return [Reply("Your booking is approved", options=(Option("Pay with M-Pesa", "v1:pay:9"),))]
    if inbound.text == "/book":
        return [
            Reply(
                "Choose a session type",
                options=(
                    Option("Individual", "v1:type:1"),
                    Option("Couples", "v1:type:2"),
                    Option("Teen", "v1:type:3"),
                ),
            )
        ]
    if inbound.option and inbound.option.startswith("v1:type:"):
        return [
            Reply(
                f"You chose {inbound.option[-1]}",
                edit_previous=True,
                options=(Option("Confirm", "v1:confirm:9"), Option("Cancel", "v1:cancel:9")),
            )
        ]
    if inbound.option == "v1:pay:9":
        return [
            Reply(
                "Which M-Pesa number should we send the prompt to?",
                ask_phone=True,
                phone_suggestions=("254708374149",),
            )
        ]
    if inbound.contact_phone:
        return [Reply(f"Thanks, sending the prompt to {inbound.contact_phone}", remove_keyboard=True)]
    return [Reply(f"You said: {inbound.text or inbound.option}")]


async def test_a_command_reaches_the_engine_and_its_reply_comes_back(runtime: Runtime, telegram):
    engine = FakeEngine(menu)
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_command(AMINA, "book")
        message = await telegram.state.wait_bot_message(AMINA)
    assert message.text == "Choose a session type"
    inbound = engine.inbounds[0]
    assert (inbound.channel, inbound.user_key, inbound.text) == ("telegram", str(AMINA), "/book")
    assert inbound.display_name == "Amina"


async def test_typed_text_reaches_the_engine_as_text(runtime: Runtime, telegram):
    engine = FakeEngine()
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_text(AMINA, "hello there")
        message = await telegram.state.wait_bot_message(AMINA)
    assert message.text == "You said: hello there"
    assert engine.inbounds[0].text == "hello there"


async def test_a_command_addressed_to_the_bot_by_name_loses_the_name(runtime: Runtime, telegram):
    engine = FakeEngine()
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_text(AMINA, "/book@SmilingStepsSimBot")
        await telegram.state.wait_bot_message(AMINA)
    assert engine.inbounds[0].text == "/book"


async def test_options_become_inline_buttons_with_the_engines_labels_and_values(runtime: Runtime, telegram):
    async with running_bot(runtime, FakeEngine(menu), telegram):
        telegram.state.send_command(AMINA, "book")
        message = await telegram.state.wait_bot_message(AMINA)
    assert message.inline_keyboard == [
        [
            {"text": "Individual", "callback_data": "v1:type:1"},
            {"text": "Couples", "callback_data": "v1:type:2"},
        ],
        [{"text": "Teen", "callback_data": "v1:type:3"}],
    ]


async def test_every_button_press_is_answered_before_the_engines_slow_work(runtime: Runtime, telegram):
    engine = FakeEngine(menu, delay=1.0)
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_command(AMINA, "book")
        menu_message = await telegram.state.wait_bot_message(AMINA, within=4)
        press = telegram.state.press(AMINA, label="Couples")
        await telegram.state.wait_for(lambda: press.answered_at is not None, within=3)
        edited = await telegram.state.wait_for(
            lambda: (m := telegram.state.message(AMINA, menu_message.message_id)) and m.edited_at and m,
            within=4,
        )
    assert press.answered_at is not None
    assert press.answered_at - press.at < 0.5  # the spinner stops at once
    assert press.answered_at < engine.calls[-1][0] + 0.5 < edited.edited_at  # engine slept 1 s after that
    assert engine.inbounds[-1].option == "v1:type:2"


async def test_edit_previous_replaces_the_pressed_message_instead_of_sending_a_new_one(
    runtime: Runtime, telegram
):
    async with running_bot(runtime, FakeEngine(menu), telegram):
        telegram.state.send_command(AMINA, "book")
        first = await telegram.state.wait_bot_message(AMINA)
        telegram.state.press(AMINA, first.message_id, label="Teen")
        await telegram.state.wait_for(lambda: first.edited_at)
    assert [m.message_id for m in telegram.state.bot_messages(AMINA)] == [first.message_id]
    assert first.text == "You chose 3"
    assert first.button_labels() == ["Confirm", "Cancel"]
    assert first.history[0]["text"] == "Choose a session type"


async def test_a_button_pressed_twice_is_answered_twice_and_goes_to_the_engine_each_time(
    runtime: Runtime, telegram
):
    def once_only(inbound: Inbound) -> list[Reply]:
        if inbound.text:
            return [Reply("Approve?", options=(Option("Approve", "v1:approve:7"),))]
        done = sum(1 for i in engine.inbounds if i.option == "v1:approve:7") > 1
        return [Reply("This request was already handled." if done else "Approved.")]

    engine = FakeEngine(once_only)
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_command(AMINA, "start")
        offer = await telegram.state.wait_bot_message(AMINA)
        first = telegram.state.press(AMINA, offer.message_id, label="Approve")
        second = telegram.state.press(AMINA, offer.message_id, label="Approve")
        await telegram.state.wait_for(lambda: len(telegram.state.bot_messages(AMINA)) == 3)
    assert first.answered_at and second.answered_at
    assert [m.text for m in telegram.state.bot_messages(AMINA)] == [
        "Approve?",
        "Approved.",
        "This request was already handled.",
    ]


async def test_a_stale_button_from_an_old_message_is_harmless_and_still_answered(runtime: Runtime, telegram):
    engine = FakeEngine(
        lambda i: (
            [Reply("That choice is no longer available.")]
            if i.option
            else [Reply("Pick one", options=(Option("Old", "v1:old:1"),))]
        )
    )
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_text(AMINA, "menu")
        old = await telegram.state.wait_bot_message(AMINA)
        telegram.state.send_text(AMINA, "menu again")
        await telegram.state.wait_bot_message(AMINA, after=old.message_id)
        press = telegram.state.press(AMINA, old.message_id, label="Old")
        answer = await telegram.state.wait_bot_message(AMINA, lambda m: "no longer" in (m.text or ""))
    assert press.answered_at is not None
    assert answer.text == "That choice is no longer available."


async def test_pressing_a_button_for_a_message_that_is_gone_sends_a_new_message(runtime: Runtime, telegram):
    engine = FakeEngine(menu)
    async with running_bot(runtime, engine, telegram) as handle:
        telegram.state.send_command(AMINA, "book")
        first = await telegram.state.wait_bot_message(AMINA)
        press = telegram.state.press(AMINA, first.message_id, label="Teen")
        await handle.bot.delete_message(AMINA, first.message_id)  # e.g. the user cleared the chat
        fresh = await telegram.state.wait_bot_message(AMINA, after=first.message_id)
    assert press.answered_at is not None
    assert fresh.text == "You chose 3"


async def test_ask_phone_shows_a_share_contact_button_the_suggestions_and_a_typing_note(
    runtime: Runtime, telegram
):
    async with running_bot(runtime, FakeEngine(menu), telegram):
        telegram.state.send_command(AMINA, "start")
        offer = await telegram.state.wait_bot_message(AMINA)
        telegram.state.press(AMINA, offer.message_id, label="Pay with M-Pesa")
        ask = await telegram.state.wait_bot_message(AMINA, lambda m: "Which M-Pesa number" in (m.text or ""))
    keyboard = ask.reply_markup
    assert keyboard["keyboard"][0] == [{"text": label("share_phone"), "request_contact": True}]
    assert keyboard["keyboard"][1] == [{"text": "254708374149"}]
    assert keyboard["one_time_keyboard"] is True
    assert say("tg_type_number_note") in ask.text
    assert telegram.state.keyboard_labels(AMINA) == [label("share_phone"), "254708374149"]


async def test_sharing_ones_own_contact_goes_to_the_engine_and_removes_the_keyboard(
    runtime: Runtime, telegram
):
    engine = FakeEngine(menu)
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_command(AMINA, "start")
        offer = await telegram.state.wait_bot_message(AMINA)
        telegram.state.press(AMINA, offer.message_id, label="Pay with M-Pesa")
        await telegram.state.wait_for(lambda: telegram.state.keyboard_labels(AMINA))
        telegram.state.tap(AMINA, label("share_phone"))
        thanks = await telegram.state.wait_bot_message(AMINA, lambda m: m.text.startswith("Thanks"))
    assert engine.inbounds[-1].contact_phone == "254712345678"
    assert thanks.reply_markup == {"remove_keyboard": True}
    assert telegram.state.keyboard_labels(AMINA) == []


async def test_a_suggested_number_tapped_on_the_keyboard_arrives_as_text(runtime: Runtime, telegram):
    engine = FakeEngine(menu)
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_command(AMINA, "start")
        offer = await telegram.state.wait_bot_message(AMINA)
        telegram.state.press(AMINA, offer.message_id, label="Pay with M-Pesa")
        await telegram.state.wait_for(lambda: telegram.state.keyboard_labels(AMINA))
        telegram.state.tap(AMINA, "254708374149")
        await telegram.state.wait_for(lambda: engine.inbounds[-1].text == "254708374149")


async def test_someone_elses_contact_is_refused_and_never_reaches_the_engine(runtime: Runtime, telegram):
    engine = FakeEngine(menu)
    async with running_bot(runtime, engine, telegram):
        telegram.state.share_contact(AMINA, "254733999888", contact_user_id=OTIENO, first_name="Otieno")
        refusal = await telegram.state.wait_bot_message(AMINA)
        telegram.state.share_contact(AMINA, "254733999888", contact_user_id=None, first_name="Cousin")
        second = await telegram.state.wait_bot_message(AMINA, after=refusal.message_id)
    assert refusal.text == say("tg_own_number_only") == second.text
    assert engine.inbounds == []


async def test_typed_phone_number_arrives_as_text(runtime: Runtime, telegram):
    engine = FakeEngine(menu)
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_text(AMINA, "0712 345 678")
        await telegram.state.wait_bot_message(AMINA)
    assert engine.inbounds[0].text == "0712 345 678"
    assert engine.inbounds[0].contact_phone is None


async def test_hostile_text_is_shown_literally_never_as_markup(runtime: Runtime, telegram):
    hostile = 'Dr. <b>x</b> & "friends" <a href="http://evil">click</a> a < b'
    engine = FakeEngine(lambda i: [Reply(hostile, options=(Option("<i>Bold</i> & co", "v1:x:1"),))])
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_text(AMINA, "hi")
        message = await telegram.state.wait_bot_message(AMINA)
    assert message.text == hostile
    assert message.entities == []
    assert message.parse_mode == "HTML"
    assert message.button_labels() == ["<i>Bold</i> & co"]


async def test_the_seven_commands_are_registered_for_everyone_and_nine_for_practitioners(
    runtime: Runtime, telegram
):
    async with runtime.uow() as uow:
        await make_therapist(uow.session, telegram_user_id=OTIENO)
        await make_therapist(uow.session, telegram_user_id=None)
        await uow.commit()
    async with running_bot(runtime, FakeEngine(), telegram):
        pass
    everyone = [c["command"] for c in telegram.state.my_commands()]
    practitioner = [c["command"] for c in telegram.state.my_commands({"type": "chat", "chat_id": OTIENO})]
    assert everyone == ["start", "book", "sessions", "pay", "cancel", "help", "language"] == list(
        CLIENT_COMMANDS
    )
    assert practitioner == everyone + list(THERAPIST_COMMANDS)
    assert list(THERAPIST_COMMANDS) == ["today", "upcoming", "hours", "away"]
    described = {c["command"]: c["description"] for c in telegram.state.my_commands()}
    assert described["book"] == say("tg_command_book") == "Book a session"
    in_kiswahili = {c["command"]: c["description"] for c in telegram.state.my_commands(None, "sw")}
    assert in_kiswahili["book"] == say("tg_command_book", lang="sw") == "Panga kikao"


async def test_a_429_on_send_message_is_waited_out_and_the_message_still_arrives(runtime: Runtime, telegram):
    async with running_bot(runtime, FakeEngine(), telegram):
        telegram.state.fail_next("sendMessage", 1, retry_after=1)
        started = time.monotonic()
        telegram.state.send_text(AMINA, "are you there?")
        message = await telegram.state.wait_bot_message(AMINA, within=5)
    sends = telegram.state.calls("sendMessage")
    assert [c["status"] for c in sends] == [429, 200]
    assert sends[1]["at"] - sends[0]["at"] >= 1.0  # retry_after respected
    assert message.text == "You said: are you there?"
    assert time.monotonic() - started < 4


async def test_a_user_who_blocked_the_bot_is_marked_unreachable_when_a_send_gets_403(
    runtime: Runtime, telegram
):
    async with runtime.uow() as uow:
        client = await make_client(uow.session, telegram_user_id=AMINA)
        await uow.commit()
    blocked_now = asyncio.Event()

    async def block_then_answer(inbound: Inbound) -> list[Reply]:
        telegram.state.users[AMINA].blocked = True  # blocked while we were thinking (no my_chat_member yet)
        blocked_now.set()
        return [Reply("Too late")]

    async with running_bot(runtime, FakeEngine(block_then_answer), telegram):
        telegram.state.send_text(AMINA, "hi")
        await telegram.state.wait_for(lambda: telegram.state.calls("sendMessage"))
        await asyncio.sleep(0.1)
    assert telegram.state.calls("sendMessage")[0]["status"] == 403
    async with runtime.uow() as uow:
        assert (await uow.session.get_one(Client, client.id)).telegram_unreachable is True


async def test_blocking_and_restarting_the_bot_flips_the_practitioners_reachability(
    runtime: Runtime, telegram
):
    async with runtime.uow() as uow:
        therapist = await make_therapist(uow.session, telegram_user_id=OTIENO)
        await uow.commit()

    async def unreachable() -> bool:
        async with runtime.uow() as uow:
            return (await uow.session.get_one(Therapist, therapist.id)).telegram_unreachable

    async with running_bot(runtime, FakeEngine(), telegram):
        telegram.state.block(OTIENO)
        for _ in range(100):
            if await unreachable():
                break
            await asyncio.sleep(0.02)
        assert await unreachable() is True
        telegram.state.unblock(OTIENO)
        for _ in range(100):
            if not await unreachable():
                break
            await asyncio.sleep(0.02)
        assert await unreachable() is False


async def test_a_sticker_gets_a_hint_and_is_not_sent_to_the_engine(runtime: Runtime, telegram):
    engine = FakeEngine()
    async with running_bot(runtime, engine, telegram):
        telegram.state.send_sticker(AMINA)
        hint = await telegram.state.wait_bot_message(AMINA)
    assert hint.text == say("tg_text_only")
    assert engine.inbounds == []


async def test_an_engine_failure_is_answered_with_an_apology(runtime: Runtime, telegram):
    def broken(inbound: Inbound) -> list[Reply]:
        raise RuntimeError("database on fire")

    async with running_bot(runtime, FakeEngine(broken), telegram):
        telegram.state.send_text(AMINA, "hi")
        message = await telegram.state.wait_bot_message(AMINA)
    assert message.text.startswith("Sorry, something went wrong")


async def test_one_users_messages_are_handled_in_order_while_others_are_not_held_up(
    runtime: Runtime, telegram
):
    async def slow_for_amina(inbound: Inbound) -> list[Reply]:
        if inbound.user_key == str(AMINA) and inbound.text == "first":
            await asyncio.sleep(0.6)
        return [Reply(f"done {inbound.text}")]

    async with running_bot(runtime, FakeEngine(slow_for_amina), telegram):
        telegram.state.send_text(AMINA, "first")
        telegram.state.send_text(AMINA, "second")
        telegram.state.send_text(OTIENO, "other")
        other = await telegram.state.wait_bot_message(OTIENO, within=3)
        other_at = time.monotonic()
        await telegram.state.wait_for(lambda: len(telegram.state.bot_messages(AMINA)) == 2, within=3)
    assert other.text == "done other"
    assert [m.text for m in telegram.state.bot_messages(AMINA)] == ["done first", "done second"]
    assert other_at < telegram.state.bot_messages(AMINA)[0].at


async def test_health_says_starting_then_ok_then_stopped(runtime: Runtime, telegram):
    async with running_bot(runtime, FakeEngine(), telegram) as handle:
        assert runtime.components["bot"] == "ok"
        assert handle.mode == "polling"
    assert runtime.components["bot"] == "stopped"


async def test_a_refused_token_stops_start_up_with_a_one_line_reason(runtime: Runtime, telegram):
    with pytest.raises(BotStartError, match="TELEGRAM_BOT_TOKEN"):
        await start_bot(runtime, FakeEngine(), None, None, token="123:wrong", base_url=telegram.base_url)  # type: ignore[arg-type]
    assert runtime.components["bot"].startswith("error")


async def test_when_telegram_is_unreachable_start_up_keeps_trying_and_succeeds_once_it_answers(
    runtime: Runtime,
):
    port = closed_port()
    engine = FakeEngine()
    handle = await start_bot(
        runtime,
        engine,
        FakePayments(runtime),
        None,  # type: ignore[arg-type]
        token=SIMULATOR_TOKEN,
        base_url=f"http://127.0.0.1:{port}/bot",
    )
    try:
        assert runtime.components["bot"].startswith("starting")
        assert not handle.ready.is_set()
        sim_app = create_app()
        async with serving(sim_app, port):  # Telegram comes back on the same address
            await handle.wait_ready(within=5)
            assert runtime.components["bot"] == "ok"
            sim = simulator_state(sim_app)
            sim.add_user(AMINA, "Amina")
            sim.send_text(AMINA, "back?")
            reply = await sim.wait_bot_message(AMINA)
            assert reply.text == "You said: back?"
            await handle.stop()
    finally:
        await handle.stop()
    assert runtime.components["bot"] == "stopped"
