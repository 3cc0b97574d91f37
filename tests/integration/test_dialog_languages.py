"""Choosing the language: Telegram's language_code, DEFAULT_LANGUAGE on SMS, /language, LUGHA,
the Kiswahili keywords, a switch in the middle of a booking, and the notifications that follow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from core.db.models import Client, Therapist
from core.dialog import messages
from core.dialog.types import Inbound
from core.runtime import Runtime
from core.services.notifications.notify import Dispatcher
from core.services.notifications.outbox_types import RenderedMessage, SendResult
from tests.integration.test_dialog_support import (
    SMS_THERAPIST_PHONE,
    THERAPIST_TELEGRAM_ID,
    Chat,
    World,
    book,
    build_world,
)

SMS_CLIENT = "254711082300"


@pytest.fixture
async def world(runtime: Runtime) -> AsyncIterator[World]:
    yield await build_world(runtime)


class Recorder:
    """A Sender keeping what the dispatcher rendered for it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, RenderedMessage]] = []

    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        self.sent.append((recipient, message))
        return SendResult.sent(f"rec-{len(self.sent)}")


async def _dispatch(runtime: Runtime) -> list[tuple[str, RenderedMessage]]:
    recorder = Recorder()
    dispatcher = Dispatcher(runtime, {"telegram": recorder, "sms": recorder, "email": recorder})
    while await dispatcher.dispatch_once():
        pass
    return recorder.sent


async def _language(runtime: Runtime, model: Any, **where: Any) -> str | None:
    async with runtime.uow() as uow:
        query = select(model.language)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return await uow.session.scalar(query)


def _telegram(world: World, user_key: str, language_code: str | None) -> Chat:
    chat = world.chat(user_key)
    extras = {"language_code": language_code} if language_code else {}

    async def turn(**fields: Any) -> Any:
        inbound = Inbound("telegram", user_key, display_name="Wanjiru", extras=extras, **fields)
        chat.last = await chat.engine.handle(inbound)
        return chat.last

    chat._turn = turn  # type: ignore[method-assign]
    return chat


async def test_telegram_starts_from_the_users_language_code_and_remembers_it(world: World) -> None:
    swahili = _telegram(world, "9101", "sw-KE")
    await swahili.send("/start")
    assert "Karibu Smiling Steps!" in swahili.text
    assert swahili.labels == ["Panga kikao", "Vikao vyangu", "Msaada"]
    assert all(r.lang == "sw" for r in swahili.last)
    await swahili.send("/my")  # the first look-up of the client stores the language it was served in
    assert "Huna vikao vijavyo" in swahili.text
    assert await _language(world.runtime, Client, telegram_user_id=9101) == "sw"
    english = _telegram(world, "9102", "fr")
    await english.send("/start")
    assert "Welcome to Smiling Steps!" in english.text


async def test_sms_starts_in_the_default_language_and_kiswahili_keywords_work_in_english_too(
    world: World,
) -> None:
    sms = world.chat(SMS_CLIENT, channel="sms")
    await sms.send("MIADI")  # a Kiswahili keyword, the practice's default language (English)
    assert messages.say("choose_therapist", "sms") in sms.text
    await sms.send("ACHA")
    assert sms.text == messages.say("stopped", "sms")
    await sms.send("zangu")
    assert "no upcoming sessions" in sms.text
    await sms.send("MSAADA")
    assert "SWAHILI for Kiswahili" in sms.text
    await sms.send("LIPA")
    assert "no approved session" in sms.text


async def test_a_switch_in_the_middle_of_booking_answers_in_the_new_language_and_keeps_the_step(
    world: World,
) -> None:
    chat = world.chat()
    await chat.send("/book")
    await chat.press(world.therapist_name)
    menu = chat.last[-1]  # "Which kind of session?" with its buttons
    await chat.send("/language")
    assert chat.labels == ["English", "Kiswahili"]
    await chat.press("Kiswahili")
    assert chat.text == "Sawa, nitakuandikia kwa Kiswahili.\n" + messages.say("help_step", lang="sw")
    await chat.choose(menu.options[0].value)  # the earlier button still works; the next step speaks Kiswahili
    assert chat.text.startswith("Chagua siku (saa za Nairobi):")
    days = chat.last[-1]
    assert await _language(world.runtime, Client, telegram_user_id=int(chat.user_key)) == "sw"
    await chat.send("LANGUAGE english")
    assert chat.text.startswith("OK, I will write to you in English.")
    await chat.choose(days.options[0].value)
    assert chat.text.startswith("Pick a start time on")


async def test_lugha_on_sms_switches_to_the_other_language_and_names_work_too(world: World) -> None:
    sms = world.chat(SMS_CLIENT, channel="sms")
    await sms.send("BOOK")
    await sms.send("LUGHA")
    assert sms.text.startswith("Sawa, nitakuandikia kwa Kiswahili.")
    await sms.send("1")  # the numbers of the practitioner menu still work
    assert sms.text.startswith("Kikao cha aina gani?")
    await sms.send("lugha")
    assert sms.text.startswith("OK, I will write to you in English.")
    await sms.send("Kiswahili")
    assert sms.text.startswith("Sawa")
    await sms.send("ENGLISH")
    assert sms.text.startswith("OK")


async def test_a_practitioners_choice_is_stored_on_the_practitioner_and_used_for_their_notices(
    world: World,
) -> None:
    therapist = world.chat(SMS_THERAPIST_PHONE, channel="sms")
    await therapist.send("SWAHILI")
    assert therapist.text.startswith("Sawa, nitakuandikia kwa Kiswahili.")
    assert "Habari Brian Otieno" in therapist.text
    assert await _language(world.runtime, Therapist, id=world.sms_therapist_id) == "sw"
    client = world.chat()
    await book(client, world, therapist=world.sms_therapist_name)
    sent = await _dispatch(world.runtime)
    [request] = [m for _, m in sent if m.template == "booking_requested_therapist"]
    assert request.text.startswith("Miadi mpya ") and "kukubali" in request.text


async def test_notifications_follow_the_clients_latest_choice(world: World) -> None:
    client = world.chat()
    await book(client, world)  # English so far
    therapist = world.chat(str(THERAPIST_TELEGRAM_ID))
    await therapist.send("/language sw")  # the practitioner now reads Kiswahili
    [booking] = await world.bookings()
    await client.send("/language sw")  # the client switches before the approval notice is sent
    await therapist.choose(f"v1:approve:{booking.id}")
    sent = await _dispatch(world.runtime)
    [approved] = [m for _, m in sent if m.template == "booking_approved_client"]
    assert "<b>Miadi yako imekubaliwa</b>" in approved.text
    assert [b.label for b in approved.buttons] == ["Lipa kwa M-Pesa"]
    [requested] = [m for _, m in sent if m.template == "booking_requested_therapist"]
    assert "<b>Ombi jipya la miadi</b>" in requested.text


async def test_a_practitioner_whose_telegram_is_in_kiswahili_gets_kiswahili_notices(world: World) -> None:
    therapist = _telegram(world, str(THERAPIST_TELEGRAM_ID), "sw")
    await therapist.send("/start")
    assert therapist.text.startswith("Habari Dr. Amani Wanjiku.")
    assert await _language(world.runtime, Therapist, id=world.therapist_id) == "sw"
    await book(world.chat(), world)  # an English client
    sent = await _dispatch(world.runtime)
    [requested] = [m for _, m in sent if m.template == "booking_requested_therapist"]
    assert "<b>Ombi jipya la miadi</b>" in requested.text
    assert [b.label for b in requested.buttons] == ["Kubali", "Kataa"]
