"""Shared helpers for the conversation tests (a scripted chat user and a small practice),
plus checks of the helpers themselves.

Other test modules import ``world``, ``Chat``, ``book`` and friends from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from core.db.models import Booking, DialogState, Outbox
from core.dialog import messages
from core.dialog.engine import DialogEngine
from core.dialog.types import Inbound, Option, Reply
from core.runtime import Runtime
from core.services.payments.initiate import PaymentService
from tests.factories import make_session_type, make_therapist

THERAPIST_TELEGRAM_ID = 7001
THERAPIST_PHONE = "254712000111"
SMS_THERAPIST_PHONE = "254712000222"
CLIENT_TELEGRAM_ID = "9001"


class NoGateway:
    """A Daraja gateway for tests that must never reach M-Pesa."""

    async def stk_push(self, **_: Any) -> Any:
        raise AssertionError("no STK Push expected in this test")

    async def stk_query(self, checkout_request_id: str) -> Any:
        raise AssertionError("no STK Query expected in this test")


@dataclass
class World:
    """A practice with one Telegram practitioner, one SMS-only practitioner and one session type."""

    runtime: Runtime
    engine: DialogEngine
    therapist_id: int
    therapist_name: str
    sms_therapist_id: int
    sms_therapist_name: str
    session_type_id: int
    session_type_name: str

    async def bookings(self) -> list[Booking]:
        async with self.runtime.uow() as uow:
            return list((await uow.session.scalars(select(Booking).order_by(Booking.id))).all())

    async def outbox(self, **where: Any) -> list[Outbox]:
        async with self.runtime.uow() as uow:
            query = select(Outbox).order_by(Outbox.id)
            for key, value in where.items():
                query = query.where(getattr(Outbox, key) == value)
            return list((await uow.session.scalars(query)).all())

    async def dialog(self, channel: str, user_key: str) -> DialogState | None:
        async with self.runtime.uow() as uow:
            return await uow.session.scalar(
                select(DialogState).where(DialogState.channel == channel, DialogState.user_key == user_key)
            )

    def chat(
        self, user_key: str = CLIENT_TELEGRAM_ID, channel: str = "telegram", name: str = "Wanjiru"
    ) -> Chat:
        return Chat(self.engine, channel, user_key, name)

    def therapist_chat(self) -> Chat:
        return Chat(self.engine, "telegram", str(THERAPIST_TELEGRAM_ID), "Amani")


async def build_world(runtime: Runtime, payments: PaymentService | None = None) -> World:
    async with runtime.uow() as uow:
        therapist = await make_therapist(
            uow.session,
            name="Dr. Amani Wanjiku",
            telegram_user_id=THERAPIST_TELEGRAM_ID,
            telegram_link_code=None,
            phone=THERAPIST_PHONE,
        )
        sms_therapist = await make_therapist(uow.session, name="Brian Otieno", phone=SMS_THERAPIST_PHONE)
        session_type = await make_session_type(uow.session, name="Individual", minutes=50, price_kes=2500)
        await uow.commit()
    engine = DialogEngine(runtime, payments or PaymentService(runtime, NoGateway(), "test-secret"))
    return World(
        runtime,
        engine,
        therapist.id,
        therapist.name,
        sms_therapist.id,
        sms_therapist.name,
        session_type.id,
        session_type.name,
    )


@pytest.fixture
async def world(runtime: Runtime) -> AsyncIterator[World]:
    yield await build_world(runtime)


class Chat:
    """One chat user talking to the engine; keeps the last replies to press their options."""

    def __init__(self, engine: DialogEngine, channel: str, user_key: str, name: str | None = None) -> None:
        self.engine, self.channel, self.user_key, self.name = engine, channel, user_key, name
        self.last: list[Reply] = []

    async def _turn(self, **fields: Any) -> list[Reply]:
        inbound = Inbound(channel=self.channel, user_key=self.user_key, display_name=self.name, **fields)  # type: ignore[arg-type]
        self.last = await self.engine.handle(inbound)
        assert self.last, "the engine must always answer"
        return self.last

    async def send(self, text: str) -> list[Reply]:
        return await self._turn(text=text)

    async def choose(self, value: str) -> list[Reply]:
        return await self._turn(option=value)

    async def share_contact(self, phone: str) -> list[Reply]:
        return await self._turn(contact_phone=phone)

    def option(self, label: str) -> Option:
        for reply in reversed(self.last):
            for option in reply.options:
                if option.label == label:
                    return option
        raise AssertionError(f"no option {label!r} in {self.labels}")

    async def press(self, label: str) -> list[Reply]:
        return await self.choose(self.option(label).value)

    async def press_first(self) -> list[Reply]:
        for reply in reversed(self.last):
            if reply.options:
                return await self.choose(reply.options[0].value)
        raise AssertionError(f"no options in {self.text!r}")

    @property
    def text(self) -> str:
        return "\n".join(r.text for r in self.last)

    @property
    def labels(self) -> list[str]:
        return [o.label for r in self.last for o in r.options]


async def book(
    chat: Chat, world: World, *, email: str | None = None, therapist: str | None = None
) -> list[Reply]:
    """Walk the booking steps with the first free slot; returns the final replies."""
    await chat.send("/book")
    assert messages.say("choose_therapist", chat.channel) in chat.text
    await chat.press(therapist or world.therapist_name)
    assert messages.say("choose_type", chat.channel) in chat.text
    await chat.press_first()  # the session type
    await chat.press_first()  # the first day with free times
    await chat.press_first()  # the first free time
    assert "e-mail" in chat.text
    if email:
        await chat.send(email)
    else:
        await chat.press("Skip")
    assert chat.labels == ["Confirm", "Cancel"]
    return await chat.press("Confirm")


# -- the helpers themselves -------------------------------------------------------------------


async def test_a_world_has_two_practitioners_and_one_session_type(world: World) -> None:
    assert world.therapist_name != world.sms_therapist_name
    assert await world.bookings() == []


async def test_the_scripted_chat_books_a_session(world: World) -> None:
    chat = world.chat()
    await book(chat, world)
    assert "Request sent" in chat.text
    assert len(await world.bookings()) == 1
