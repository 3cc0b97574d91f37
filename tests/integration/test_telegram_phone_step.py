"""The phone step on Telegram, end to end with the real engine and real PTB against the Bot
API stand-in: the "Share my phone number" reply keyboard goes away with the next message,
whether the client typed the number or shared the contact, and even when the phone step
had expired in the meantime (the number then still pays the client's one payable booking)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from core.dialog.engine import DialogEngine
from simulators.telegram_api import SimMessage, TelegramApiSimulator
from tests.factories import make_booking, make_client
from tests.support.payments import PaymentStack, payment_stack
from tests.support.telegram import running_bot, running_telegram

CLIENT = 9301
OWN_NUMBER = "254708374149"  # the sandbox test number: the push succeeds
SHARE = "Share my phone number"
REMOVE = {"remove_keyboard": True}
IDLE_EXPIRY_S = 31 * 60  # the conversation forgets a step after 30 idle minutes


def _as_sent(message: SimMessage) -> tuple[str, dict | None]:
    """Text and markup the message was sent with (later edits of a progress message aside)."""
    if message.history:
        return message.history[0]["text"], message.history[0]["reply_markup"]
    return message.text, message.reply_markup


def _after(sim: TelegramApiSimulator, message: SimMessage) -> list[SimMessage]:
    return [m for m in sim.bot_messages(CLIENT) if m.message_id > message.message_id]


@asynccontextmanager
async def at_the_phone_step(
    database_url: str,
) -> AsyncIterator[tuple[PaymentStack, TelegramApiSimulator, SimMessage]]:
    """An approved booking, /pay sent: the bot asks for the number with the share keyboard."""
    async with payment_stack(database_url) as stack, running_telegram() as telegram:
        async with stack.runtime.uow() as uow:
            client = await make_client(uow.session, telegram_user_id=CLIENT)
            await make_booking(uow.session, client=client)
            await uow.commit()
        sim = telegram.state
        sim.add_user(CLIENT, "Wanjiru", phone_number=OWN_NUMBER)
        engine = DialogEngine(stack.runtime, stack.services.payments)
        async with running_bot(stack.runtime, engine, telegram, stack.services.payments):
            sim.send_command(CLIENT, "pay")
            ask = await sim.wait_for(
                lambda: next((m for m in sim.bot_messages(CLIENT) if "Which M-Pesa" in m.text), None)
            )
            assert (ask.reply_markup or {}).get("keyboard", [[{}]])[0][0].get("text") == SHARE
            assert sim.keyboard_labels(CLIENT)[0] == SHARE
            yield stack, sim, ask


@pytest.mark.parametrize("expired", [False, True], ids=["live", "expired"])
async def test_a_typed_number_removes_the_share_keyboard_with_the_next_message(database_url: str, expired):
    async with at_the_phone_step(database_url) as (stack, sim, ask):
        if expired:
            stack.clock.advance(IDLE_EXPIRY_S)
        sim.send_text(CLIENT, "0708 374 149")
        following = await sim.wait_for(lambda: _after(sim, ask))
        text, markup = _as_sent(following[0])
        assert markup == REMOVE
        assert sim.keyboard_labels(CLIENT) == []  # typing does not hide a keyboard: only the removal does
        # Expired or not, a number typed by a client with one booking to pay pays it (DESIGN §4).
        assert "Check your phone" in text and len(stack.pushes()) == 1


@pytest.mark.parametrize("expired", [False, True], ids=["live", "expired"])
async def test_a_shared_contact_removes_the_share_keyboard_with_the_next_message(database_url: str, expired):
    async with at_the_phone_step(database_url) as (stack, sim, ask):
        if expired:
            stack.clock.advance(IDLE_EXPIRY_S)
        sim.tap(CLIENT, SHARE)
        following = await sim.wait_for(lambda: _after(sim, ask))
        # one_time_keyboard only folds the keyboard away on the phone; the removal takes it off
        assert _as_sent(following[0])[1] == REMOVE
        assert sim.keyboard_labels(CLIENT) == []
        assert len(stack.pushes()) == 1  # the shared number pays the one booking, expired step or not


async def test_a_number_that_is_not_kenyan_keeps_the_keyboard_for_another_try(database_url: str):
    async with at_the_phone_step(database_url) as (stack, sim, ask):
        sim.send_text(CLIENT, "12345")
        [again] = await sim.wait_for(lambda: _after(sim, ask))
        assert "not a Kenyan mobile number" in again.text
        assert again.reply_markup is not None and again.reply_markup["keyboard"][0][0]["text"] == SHARE
        assert sim.keyboard_labels(CLIENT)[0] == SHARE
        assert stack.pushes() == []
