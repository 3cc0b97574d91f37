"""Rescheduling through the real channel adapters: real PTB against the Telegram stand-in, and
form posts to our SMS webhook over HTTP on 127.0.0.1 (replies read from the outbox).

The runtime's clock starts at a fixed Nairobi Monday morning (no wall-clock dependence); the
outbox dispatcher delivers the practitioner's and the client's notices to the stand-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.sender import TelegramSender
from core.dialog import messages
from core.domain.states import BookingStatus
from core.runtime import Runtime, build_runtime
from core.services.notifications.notify import Dispatcher
from simulators.telegram_api import SimMessage, TelegramApiSimulator
from tests.conftest import make_settings
from tests.e2e.test_telegram_booking import Recorder
from tests.integration.test_dialog_reschedule import BOOKED, NEW, SMS_CLIENT, START, booked, reload
from tests.integration.test_dialog_support import CLIENT_TELEGRAM_ID, THERAPIST_TELEGRAM_ID, build_world
from tests.integration.test_sms_conversation import Phone, sms_webhook
from tests.support.payments import Clock
from tests.support.telegram import running_bot, running_telegram

CLIENT = int(CLIENT_TELEGRAM_ID)


@asynccontextmanager
async def dispatching(runtime: Runtime, sender: TelegramSender) -> AsyncIterator[Recorder]:
    """The outbox dispatcher: Telegram to the stand-in, SMS and e-mail to a recorder."""
    recorder = Recorder()
    dispatcher = Dispatcher(
        runtime, {"telegram": sender, "sms": recorder, "email": recorder}, poll_interval=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield recorder
    finally:
        stop.set()
        runtime.wake("outbox")
        await asyncio.wait_for(task, 5)


def _find(sim: TelegramApiSimulator, user: int, text: str) -> SimMessage | None:
    return next((m for m in reversed(sim.bot_messages(user)) if text in (m.text or "")), None)


async def _press(sim: TelegramApiSimulator, user: int, label: str, text: str) -> SimMessage:
    sim.press(user, label=label)
    return await sim.wait_for(lambda: _find(sim, user, text), within=5)


async def test_on_telegram_a_client_moves_a_paid_session_and_the_practitioner_approves_it(database_url: str):
    settings = make_settings(database_url, RESCHEDULE_NEEDS_APPROVAL="true", CLIENT_CANCEL_WINDOW_HOURS="24")
    runtime = build_runtime(settings, clock=Clock(start=START))
    try:
        world = await build_world(runtime)
        booking = await booked(world, paid=True)
        async with running_telegram() as telegram:
            sim = telegram.state
            sim.add_user(CLIENT, "Wanjiru", phone_number="254708374149")
            sim.add_user(THERAPIST_TELEGRAM_ID, "Amani", started=True)
            async with (
                running_bot(runtime, world.engine, telegram) as handle,
                dispatching(runtime, TelegramSender(handle.bot)) as recorder,
            ):
                sim.send_command(CLIENT, "my")
                card = await sim.wait_for(lambda: _find(sim, CLIENT, booking.reference), within=5)
                assert card.button_labels()[-2:] == ["Cancel booking", "Reschedule"]
                await _press(sim, CLIENT, "Reschedule", "Pick a day")
                await _press(sim, CLIENT, messages.day_label(NEW.date()), "Pick a start time")
                await _press(sim, CLIENT, messages.time_label(NEW), "Move ")
                await _press(sim, CLIENT, "Yes, move it", "Request sent")

                request = await sim.wait_for(lambda: _find(sim, THERAPIST_TELEGRAM_ID, "Request to move"), 5)
                assert request.button_labels() == ["Approve", "Decline"]
                assert "Asked for: Thu 13 Mar 2031, 11:00 EAT" in request.text
                assert (await reload(world, booking.id)).starts_at == BOOKED
                await _press(sim, THERAPIST_TELEGRAM_ID, "Approve", "Approved:")
                notice = await sim.wait_for(lambda: _find(sim, CLIENT, "Your session has a new time"), 5)
                assert "New time: Thu 13 Mar 2031, 11:00 EAT" in notice.text
                assert "Join link (unchanged)" in notice.text
                await sim.wait_for(
                    lambda: any(m.template == "booking_rescheduled_email" for _, m in recorder.sent), 5
                )
        moved = await reload(world, booking.id)
        assert (moved.starts_at, moved.status) == (NEW, BookingStatus.CONFIRMED)
        [(_, mail)] = [(r, m) for r, m in recorder.sent if m.template == "booking_rescheduled_email"]
        assert b"SEQUENCE:1" in mail.attachments[0].content
    finally:
        await runtime.close()


async def test_over_the_sms_webhook_a_client_moves_an_unpaid_session_with_my_then_numbers(database_url: str):
    runtime = build_runtime(make_settings(database_url), clock=Clock(start=START))
    try:
        world = await build_world(runtime)
        booking = await booked(world, paid=False, channel="sms", user_key=SMS_CLIENT, email=None)
        async with sms_webhook(runtime, world.engine) as base_url:
            phone = Phone(base_url, runtime, SMS_CLIENT)
            listing = await phone.text("MY")
            number = _number_of(listing, "Reschedule")
            days = await phone.text(number)
            assert "Moving" in days and booking.reference in days
            times = await phone.text(_number_of(days, messages.day_label(NEW.date())))
            confirm = await phone.text(_number_of(times, messages.time_label(NEW)))
            assert f"Move {booking.reference} to Thu 13 Mar, 11:00?" in confirm
            done = await phone.text(_number_of(confirm, "Yes, move it"))
            assert done.startswith(f"Done: {booking.reference} is now on Thu 13 Mar, 11:00.")
        moved = await reload(world, booking.id)
        assert (moved.starts_at, moved.status) == (NEW, BookingStatus.APPROVED)
    finally:
        await runtime.close()


def _number_of(sms: str, label: str) -> str:
    """The number an SMS shows in front of ``label`` ("3 Reschedule" → "3")."""
    for line in sms.splitlines():
        number, _, rest = line.partition(" ")
        if number.isdigit() and rest == label:
            return number
    raise AssertionError(f"no numbered {label!r} in {sms!r}")
