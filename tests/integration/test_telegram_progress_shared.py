"""The progress-message map lives in the database: another bot (a worker process) or a restarted one
edits the message the first one sent, and withdraws the "Retry payment" it offered.

Each "process" here is its own started bot on one database (its PaymentProgress has its own
owner name and memory); the wake-up they share stands for the cross-process signal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from core.db.models import TelegramProgress
from core.domain.states import PaymentStatus
from core.runtime import Runtime
from tests.integration.test_telegram_progress import pay_engine
from tests.support.telegram import FakePayments, RunningTelegram, payment_view, running_bot, running_telegram

AMINA = 701
CANCELLED = {
    "result_code": "1032", "client_message": "Payment cancelled. You can retry whenever you are ready.",
}


@pytest.fixture
async def telegram() -> AsyncIterator[RunningTelegram]:
    async with running_telegram() as running:
        running.state.add_user(AMINA, "Amina", phone_number="254708374149")
        yield running


async def _rows(runtime: Runtime) -> list[tuple[int, int, str, str | None]]:
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(select(TelegramProgress).order_by(TelegramProgress.attempt_id))
        return [(r.attempt_id, r.message_id, r.phase, r.owner) for r in rows]


async def until_forgotten(runtime: Runtime, within: float = 3.0) -> None:
    """The row goes right after the result edit (a stop in between would leave it for adoption)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while await _rows(runtime):
        assert loop.time() < deadline, await _rows(runtime)
        await asyncio.sleep(0.05)


# Feature: mpesa-payment-integration, Property 16: Status Change Updates UI
async def test_a_message_recorded_by_the_web_process_is_followed_and_edited_by_the_worker(
    runtime: Runtime, telegram: RunningTelegram
) -> None:
    payments = FakePayments(runtime)
    payments.add(payment_view(1))
    async with (
        running_bot(runtime, pay_engine(1), telegram, payments, follow_progress=False) as web,
        running_bot(runtime, pay_engine(1), telegram, payments, receive=False) as worker,
    ):
        assert web.mode == "polling" and worker.mode == "send-only"
        telegram.state.send_text(AMINA, "pay")
        message = await telegram.state.wait_bot_message(AMINA, lambda m: "Check your phone" in m.text)
        await telegram.state.wait_for(lambda: 1 in worker.progress.followed, within=5)
        assert web.progress.followed == {}  # the web process only records
        [row] = await _rows(runtime)
        assert row == (1, message.message_id, "following", worker.progress.owner)

        settled_at = time.monotonic()
        payments.settle(1, PaymentStatus.PAID, receipt="SPLIT00001")
        await telegram.state.wait_for(lambda: "SPLIT00001" in message.text, within=3)
        assert message.edited_at - settled_at < 1.0  # Property 16, with the message recorded elsewhere
        await until_forgotten(runtime)
    assert len(telegram.state.bot_messages(AMINA)) == 1  # edited, not a second message


async def test_after_a_restart_the_new_bot_edits_the_original_message(
    runtime: Runtime, telegram: RunningTelegram
) -> None:
    payments = FakePayments(runtime)
    payments.add(payment_view(1))
    async with running_bot(runtime, pay_engine(1), telegram, payments) as before:
        telegram.state.send_text(AMINA, "pay")
        message = await telegram.state.wait_bot_message(AMINA, lambda m: "Check your phone" in m.text)
        await telegram.state.wait_for(lambda: 1 in before.progress.followed, within=5)
    assert [r[:3] for r in await _rows(runtime)] == [(1, message.message_id, "following")]

    payments.settle(1, PaymentStatus.PAID, receipt="AFTER00001")  # while nobody follows
    async with running_bot(runtime, pay_engine(1), telegram, payments):
        await telegram.state.wait_for(lambda: "AFTER00001" in message.text, within=5)
        await until_forgotten(runtime)
    assert len(telegram.state.bot_messages(AMINA)) == 1


async def test_a_retry_offer_made_before_a_restart_is_withdrawn_by_the_new_bot_on_a_late_success(
    runtime: Runtime, telegram: RunningTelegram
) -> None:
    payments = FakePayments(runtime)
    payments.add(payment_view(1, booking_id=42))
    async with running_bot(runtime, pay_engine(1), telegram, payments) as before:
        telegram.state.send_text(AMINA, "pay")
        message = await telegram.state.wait_bot_message(AMINA, lambda m: "Check your phone" in m.text)
        payments.settle(1, PaymentStatus.CANCELLED, **CANCELLED)
        await telegram.state.wait_for(lambda: bool(message.inline_keyboard), within=3)
        await telegram.state.wait_for(lambda: bool(before.progress.retry_offers.offers), within=3)
    assert [r[:3] for r in await _rows(runtime)] == [(1, message.message_id, "offered")]

    async with running_bot(runtime, pay_engine(1), telegram, payments):
        payments.settle(1, PaymentStatus.PAID, receipt="LATE000009")  # Safaricom's late success
        await telegram.state.wait_for(lambda: "LATE000009" in message.text, within=5)
        await until_forgotten(runtime)
    assert message.inline_keyboard == []
