"""E-mail addresses end to end: one rule at every input, the normalised form stored, none in the log.

The chat goes through the real dialog engine (the path Telegram and SMS share), the
practitioner directory through its service, and mail through the real outbox dispatcher
and SmtpSender to an aiosmtpd server on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select

from core.db.models import Client, Outbox
from core.dialog import messages
from core.logging import JsonFormatter
from core.runtime import Runtime
from core.services.booking.directory import DirectoryError, add_therapist
from core.services.notifications import notify as notifications
from core.services.notifications.notify import Dispatcher
from senders.email import SmtpSender
from simulators.smtp import SmtpCaptureServer
from tests.factories import make_client
from tests.integration.test_dialog_support import World, build_world
from tests.integration.test_email_smtp import DATA, FROM

PROBES = ["xss.probe+<b>@example.org", '"><script>alert(1)</script>@example.org']


@pytest.fixture
async def world(runtime: Runtime) -> World:
    return await build_world(runtime)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpCaptureServer]:
    async with SmtpCaptureServer() as server:
        yield server


class _Lines(logging.Handler):
    """Every INFO+ record as the JSON line the service would write (message, extras, traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    handler, root = _Lines(), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # LOG_LEVEL's default
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def _at_email_step(world: World):
    chat = world.chat()
    await chat.send("/book")
    await chat.press(world.therapist_name)
    for _ in range(3):  # session type, day, time
        await chat.press_first()
    assert "e-mail" in chat.text
    return chat


@pytest.mark.parametrize("probe", PROBES)
async def test_the_chat_refuses_a_probe_address_with_the_usual_message_and_stores_nothing(
    world: World, probe: str
):
    chat = await _at_email_step(world)
    await chat.send(probe)
    assert chat.text == messages.say("invalid_email")
    await chat.press("Skip")
    await chat.press("Confirm")
    [booking] = await world.bookings()
    assert booking.email is None
    async with world.runtime.uow() as uow:
        assert all(c.email is None for c in (await uow.session.scalars(select(Client))).all())


async def test_the_chat_stores_the_normalised_address(world: World):
    chat = await _at_email_step(world)
    await chat.send("  Wanjiru.K@Example.ORG ")
    assert "Wanjiru.K@example.org" in chat.text  # the summary shows what will be used
    await chat.press("Confirm")
    [booking] = await world.bookings()
    assert booking.email == "Wanjiru.K@example.org"


@pytest.mark.parametrize("probe", PROBES)
async def test_the_directory_refuses_a_probe_address_without_repeating_it(runtime: Runtime, probe: str):
    with pytest.raises(DirectoryError) as error:
        await add_therapist(runtime.uow(), name="Dr. Probe", email=probe, phone="0712000009")
    assert "<" not in str(error.value) and "e-mail" in str(error.value)


async def test_a_refused_recipient_is_recorded_and_logged_without_the_address(
    runtime: Runtime, smtp: SmtpCaptureServer, log_lines: list[str]
):
    smtp.mailbox.reject["gone.person@example.org"] = "550 5.1.1 <gone.person@example.org>: no such user"
    async with runtime.uow() as uow:
        client = await make_client(uow.session, email="gone.person@example.org")
        assert await notifications.email_client(uow.session, client, email=client.email,
                                                template="booking_approved_email", data=DATA,
                                                dedupe_key="b:1:approved:email")
        await uow.commit()
    sender = SmtpSender.for_capture(smtp.port, sender_address=FROM)
    await Dispatcher(runtime, {"email": sender}).dispatch_once()
    async with runtime.uow() as uow:
        [row] = (await uow.session.scalars(select(Outbox))).all()
    assert row.status == "FAILED" and "550" in (row.last_error or "")
    assert "gone.person" not in (row.last_error or "")
    assert any("notification failed" in line for line in log_lines)
    assert not [line for line in log_lines if "gone.person" in line]


async def test_a_stored_address_from_before_the_rule_is_given_up_without_a_traceback_or_the_address(
    runtime: Runtime, smtp: SmtpCaptureServer, log_lines: list[str]
):
    legacy = '"><script>alert(1)</script>@example.org'
    async with runtime.uow() as uow:  # queued by an older version that accepted it
        uow.session.add(Outbox(channel="email", recipient=legacy, template="booking_approved_email",
                               data=DATA, dedupe_key="legacy:1"))
        await uow.commit()
    sender = SmtpSender.for_capture(smtp.port, sender_address=FROM)
    await Dispatcher(runtime, {"email": sender}).dispatch_once()
    async with runtime.uow() as uow:
        [row] = (await uow.session.scalars(select(Outbox))).all()
    assert row.status == "FAILED" and row.attempts == 1  # given up at once, not refused ten times
    assert smtp.mailbox.messages == []
    assert log_lines and not [line for line in log_lines if "script" in line or "example.org" in line]
    assert not [line for line in log_lines if "exception" in json.loads(line)]
