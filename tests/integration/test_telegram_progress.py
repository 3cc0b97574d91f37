"""The live payment-progress message: edited while waiting, edited to the result on settlement."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime

import pytest

from bot.progress import mode_marker
from core.dialog.messages import label
from core.dialog.types import Inbound, Option, Reply
from core.domain.states import PaymentStatus
from core.runtime import Runtime
from simulators.telegram_api import SimMessage
from tests.support.payments import Clock, payment_stack
from tests.support.telegram import (
    FakeEngine,
    FakePayments,
    RunningTelegram,
    payment_view,
    running_bot,
    running_telegram,
)

AMINA = 701
CHECK_PHONE = "[TEST MODE]\nCheck your phone: enter your M-Pesa PIN in the prompt to pay KES 2,500."


@pytest.fixture
async def telegram() -> AsyncIterator[RunningTelegram]:
    async with running_telegram() as running:
        running.state.add_user(AMINA, "Amina", phone_number="254708374149")
        yield running


def pay_engine(attempt_id: int = 1, options: tuple[Option, ...] = ()) -> FakeEngine:
    """Any message → the engine's "check your phone" reply tagged as the progress message."""
    return FakeEngine(
        lambda i: [
            Reply(
                CHECK_PHONE,
                remove_keyboard=not options,
                options=options,
                tag=f"payment_progress:{attempt_id}",
            )
        ]
    )


async def _progress_message(telegram: RunningTelegram) -> SimMessage:
    return await telegram.state.wait_bot_message(AMINA, lambda m: m.text.startswith("[TEST MODE]\nCheck"))


def _wall(monotonic_at: float) -> float:
    """A monotonic instant as a Unix time."""
    return time.time() - (time.monotonic() - monotonic_at)


# Feature: mpesa-payment-integration, Property 15: Payment Status Polling Frequency
async def test_the_progress_message_is_edited_at_least_every_3_seconds_with_the_elapsed_time(
    runtime: Runtime, telegram
):
    payments = FakePayments(runtime)
    payments.add(payment_view(1))
    async with running_bot(runtime, pay_engine(1), telegram, payments):  # production interval (2.5 s)
        telegram.state.send_text(AMINA, "pay")
        message = await _progress_message(telegram)
        await telegram.state.wait_for(lambda: len(message.history) >= 2, within=7)
    versions = [*message.history, {"text": message.text, "at": message.edited_at}]
    times = [v["at"] for v in versions]
    assert all(later - earlier < 3.0 for earlier, later in zip(times, times[1:], strict=False))
    for version in versions[1:]:
        assert version["text"].startswith(CHECK_PHONE)  # the engine's text (and TEST MODE) stay
        assert "Waiting for you to confirm on your phone…" in version["text"]
    elapsed = [int(v["text"].rsplit("… ", 1)[1].split(" s")[0]) for v in versions[1:]]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 2


# Feature: mpesa-payment-integration, Property 17: Processing Shows Progress Indicator
async def test_while_waiting_the_chat_shows_typing(runtime: Runtime, telegram):
    payments = FakePayments(runtime)
    payments.add(payment_view(1))
    async with running_bot(runtime, pay_engine(1), telegram, payments, progress_interval=0.3):
        telegram.state.send_text(AMINA, "pay")
        await _progress_message(telegram)
        await telegram.state.wait_for(lambda: telegram.state.chat_actions, within=2)
    assert telegram.state.chat_actions[0]["chat_id"] == AMINA
    assert telegram.state.chat_actions[0]["action"] == "typing"


# Feature: mpesa-payment-integration, Property 16: Status Change Updates UI
async def test_payment_received_is_shown_in_the_same_message_within_a_second_of_the_wake_up(
    runtime: Runtime, telegram
):
    payments = FakePayments(runtime)
    payments.add(payment_view(1))
    async with running_bot(runtime, pay_engine(1, (Option("Cancel", "v1:x:1"),)), telegram, payments):
        telegram.state.send_text(AMINA, "pay")
        message = await _progress_message(telegram)
        settled_at = time.monotonic()
        payments.settle(1, PaymentStatus.PAID, receipt="SGR7XYZ123")
        await telegram.state.wait_for(lambda: "Payment received" in message.text, within=2)
    assert all(v["reply_markup"]["inline_keyboard"][0][0]["text"] == "Cancel" for v in message.history)
    assert message.edited_at - settled_at < 1.0
    assert message.text == (
        f"{mode_marker()}\n✅ Payment received: KES 2,500.\nM-Pesa receipt: SGR7XYZ123\n"
        "Your session is confirmed."
    )
    assert message.inline_keyboard == []
    assert len(telegram.state.bot_messages(AMINA)) == 1  # edited, not a second message


# Feature: mpesa-payment-integration, Property 16: Status Change Updates UI
async def test_a_failed_payment_shows_the_reason_retry_and_another_number_within_a_second(
    runtime: Runtime, telegram
):
    payments = FakePayments(runtime)
    payments.add(payment_view(1, booking_id=42))
    async with running_bot(runtime, pay_engine(1), telegram, payments):
        telegram.state.send_text(AMINA, "pay")
        message = await _progress_message(telegram)
        settled_at = time.monotonic()
        payments.settle(
            1,
            PaymentStatus.CANCELLED,
            result_code="1032",
            client_message="Payment cancelled. You can retry whenever you are ready.",
        )
        await telegram.state.wait_for(lambda: "cancelled" in message.text, within=2)
    assert message.edited_at - settled_at < 1.0
    assert message.text == f"{mode_marker()}\n❌ Payment cancelled. You can retry whenever you are ready."
    assert message.inline_keyboard == [[
        {"text": label("retry"), "callback_data": "v1:pay:42"},
        {"text": label("change_phone"), "callback_data": "v1:chphone:42"},
    ]]


async def test_a_payment_sent_for_review_says_not_to_pay_again_and_offers_no_retry(
    runtime: Runtime, telegram
):
    payments = FakePayments(runtime)
    payments.add(payment_view(1, test_mode=False))
    async with running_bot(runtime, pay_engine(1), telegram, payments):
        telegram.state.send_text(AMINA, "pay")
        message = await _progress_message(telegram)
        payments.settle(1, PaymentStatus.NEEDS_REVIEW)
        await telegram.state.wait_for(lambda: "check this payment by hand" in message.text, within=2)
    assert "do not pay again" in message.text
    assert mode_marker() not in message.text  # a production attempt carries no marker
    assert message.inline_keyboard == []


# Feature: mpesa-payment-integration, Property 18: Processing Continues Polling
async def test_progress_continues_until_the_deadline_then_says_the_payment_is_being_checked(
    runtime: Runtime, telegram
):
    clock = Clock()
    timed = replace(runtime, clock=clock)
    payments = FakePayments(timed)
    payments.add(payment_view(1, created_at=clock()))
    async with running_bot(timed, pay_engine(1), telegram, payments, progress_interval=0.2):
        telegram.state.send_text(AMINA, "pay")
        message = await _progress_message(telegram)
        clock.advance(119)
        await telegram.state.wait_for(lambda: "… 119 s" in message.text, within=2)
        clock.advance(2)
        timed.wake("payments")
        await telegram.state.wait_for(lambda: "No answer from M-Pesa yet" in message.text, within=2)
        overdue_version = len(message.history)
        payments.settle(1, PaymentStatus.PAID, receipt="LATE000001")  # the watchdog's query found it
        await telegram.state.wait_for(lambda: "Payment received" in message.text, within=2)
    assert message.history[overdue_version - 1]["text"].startswith(mode_marker())
    assert "LATE000001" in message.text


async def test_a_second_progress_message_for_the_same_attempt_replaces_the_first(runtime: Runtime, telegram):
    payments = FakePayments(runtime)
    payments.add(payment_view(1))
    async with running_bot(runtime, pay_engine(1), telegram, payments, progress_interval=0.3) as handle:
        telegram.state.send_text(AMINA, "pay")
        first = await _progress_message(telegram)
        telegram.state.send_text(AMINA, "pay again")  # the engine returns the live attempt again
        second = await telegram.state.wait_bot_message(AMINA, after=first.message_id)
        await telegram.state.wait_for(lambda: first.deleted)
        assert handle.progress.followed == {1: (AMINA, second.message_id)}
        payments.settle(1, PaymentStatus.PAID, receipt="ONE0000001")
        await telegram.state.wait_for(lambda: "Payment received" in second.text, within=2)


async def test_if_the_progress_message_was_deleted_the_result_arrives_as_a_new_message(
    runtime: Runtime, telegram
):
    payments = FakePayments(runtime)
    payments.add(payment_view(1))
    async with running_bot(runtime, pay_engine(1), telegram, payments, progress_interval=0.3) as handle:
        telegram.state.send_text(AMINA, "pay")
        message = await _progress_message(telegram)
        await handle.bot.delete_message(AMINA, message.message_id)
        payments.settle(1, PaymentStatus.PAID, receipt="NEW0000001")
        result = await telegram.state.wait_bot_message(
            AMINA, lambda m: "Payment received" in m.text, within=2
        )
    assert "NEW0000001" in result.text


async def test_a_user_who_blocks_the_bot_while_waiting_stops_the_progress_edits(runtime: Runtime, telegram):
    payments = FakePayments(runtime)
    payments.add(payment_view(1))
    async with running_bot(runtime, pay_engine(1), telegram, payments, progress_interval=0.2) as handle:
        telegram.state.send_text(AMINA, "pay")
        await _progress_message(telegram)
        telegram.state.users[AMINA].blocked = True
        await telegram.state.wait_for(lambda: not handle.progress.followed, within=2)


# Feature: mpesa-payment-integration, Property 16: Status Change Updates UI
async def test_a_real_m_pesa_payment_reaches_the_progress_message_within_a_second_of_settlement(
    database_url: str, telegram
):
    """PaymentService + Daraja simulator + callback + settlement, and the real bot over HTTP."""
    async with payment_stack(database_url) as stack:
        booking = await stack.approved_booking()
        payments = stack.services.payments
        started: list[int] = []

        async def pay(inbound: Inbound) -> list[Reply]:
            view = await payments.initiate_payment(booking.id, booking.client_id, "254708374149")
            started.append(view.attempt_id)
            return [
                Reply(
                    f"{mode_marker()}\nCheck your phone to pay KES {view.amount_kes:,}.",
                    remove_keyboard=True,
                    tag=f"payment_progress:{view.attempt_id}",
                )
            ]

        async with running_bot(stack.runtime, FakeEngine(pay), telegram, payments):
            telegram.state.send_text(AMINA, "pay")
            message = await telegram.state.wait_bot_message(AMINA, lambda m: "Check your phone" in m.text)
            await telegram.state.wait_for(lambda: "Payment received" in message.text, within=5)
        attempt = await stack.attempt(started[0])
    assert attempt.status == PaymentStatus.PAID
    assert attempt.mpesa_receipt and attempt.mpesa_receipt in message.text
    settled: datetime = attempt.settled_at  # type: ignore[assignment]
    assert _wall(message.edited_at) - settled.timestamp() < 1.0  # type: ignore[arg-type]
    assert message.text.startswith(mode_marker())
