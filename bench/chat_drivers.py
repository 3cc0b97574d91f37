"""The chat clients of bench/conversation.py: a Telegram user driving the Bot API stand-in and a
handset texting the Africa's Talking hook, each holding one whole booking conversation and timing
every update until the bot's answer is visible."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from sqlalchemy import select

from core.db.models import Booking, Outbox
from core.runtime import Runtime
from simulators.telegram_api import SimMessage, TelegramApiSimulator

AT_SECRET = "bench-at-webhook-secret"
PRACTITIONERS = 10  # per channel: the booking menu lists at most 20
DAYS_USED = 6  # counted back from the last day offered (never today: its hours depend on the clock)
MAX_TURNS = 30  # time / Skip / Confirm turns before a client gives up finding a free slot
REFERENCE = re.compile(r"SS-[0-9A-Z]{6}")
STEP_WITHIN_S = 60.0
TG_CLIENT, TG_PRACTITIONER = 500_000, 900_000


def client_phone(channel: str, i: int) -> str:
    """Ends in 0: the Daraja simulator's "success" (254 7xx xxx xx0)."""
    return f"2547{1 if channel == 'sms' else 2}{i:06d}0"


def practitioner_name(channel: str, p: int) -> str:
    return f"Bench {channel.upper()} Practitioner {p:03d}"


def practitioner_phone(channel: str, p: int) -> str:
    return f"25479{1 if channel == 'sms' else 2}{p:06d}"


class Timings:
    """Per-update latencies and failures of one channel."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.completed = 0


async def booking_by_reference(runtime: Runtime, text: str) -> Booking | None:
    """The booking whose reference appears in ``text`` (the client's "Request sent" reply)."""
    match = REFERENCE.search(text)
    if match is None:
        return None
    async with runtime.uow() as uow:
        return await uow.session.scalar(select(Booking).where(Booking.reference == match.group(0)))


def assignment(i: int) -> tuple[int, int, random.Random]:
    """Client i's practitioner, day (counted from the last day offered) and chooser of times."""
    return i % PRACTITIONERS, (i // PRACTITIONERS) % DAYS_USED, random.Random(i)


# -- Telegram -----------------------------------------------------------------------------------------


def newest(sim: TelegramApiSimulator, user: int, text: str) -> SimMessage | None:
    return next((m for m in reversed(sim.bot_messages(user)) if text in (m.text or "")), None)


def screen(sim: TelegramApiSimulator, user: int) -> tuple[int, str, tuple[str, ...]]:
    """What the user sees last: the newest bot message's id, text and buttons."""
    last = sim.last_bot_message(user)
    if last is None:
        return 0, "", ()
    return last.message_id, last.text or "", tuple(last.button_labels())


async def tg_step(
    sim: TelegramApiSimulator, t: Timings, act: Callable[[], object], until: Callable[[], Any]
) -> Any:
    act()
    began = time.perf_counter()
    found = await sim.wait_for(until, STEP_WITHIN_S)
    t.latencies.append(time.perf_counter() - began)
    return found


def tg_ready(sim: TelegramApiSimulator, uid: int, before: tuple[int, str, tuple[str, ...]]) -> bool:
    """The bot answered: the newest message changed and asks for something (or the request went)."""
    now = screen(sim, uid)
    return now != before and (bool(now[2]) or "Request sent" in now[1])


async def tg_book(sim: TelegramApiSimulator, t: Timings, uid: int, i: int) -> str:
    """From the menu to "Request sent": practitioner, type, day, then time / Skip / Confirm until a
    free slot is won (a slot taken meanwhile means another time, as a person would pick)."""
    p, day, chooser = assignment(i)
    await tg_step(
        sim, t, lambda: sim.press(uid, label="Book a session"), lambda: newest(sim, uid, "Who would")
    )
    flow = newest(sim, uid, "Who would")
    assert flow is not None
    await tg_step(
        sim,
        t,
        lambda: sim.press(uid, label=practitioner_name("telegram", p)),
        lambda: "Which kind" in flow.text,
    )
    await tg_step(
        sim, t, lambda: sim.press(uid, label=flow.button_labels()[0]), lambda: "Pick a day" in flow.text
    )
    days = [label for label in flow.button_labels() if label != "More"]
    await tg_step(
        sim, t, lambda: sim.press(uid, label=days[-1 - day]), lambda: "Pick a start time" in flow.text
    )
    for _ in range(MAX_TURNS):
        _, text, labels = before = screen(sim, uid)
        if "Request sent" in text:
            return text
        if "Pick a start time" in text:
            label = chooser.choice([x for x in labels if x != "More"])
        elif labels == ("Skip",):
            label = "Skip"
        elif "Please check your request" in text:
            label = "Confirm"
        else:
            raise AssertionError(f"unexpected screen {text!r} {labels}")
        await tg_step(
            sim,
            t,
            lambda shown=before, label=label: sim.press(uid, shown[0], label=label),
            lambda shown=before: tg_ready(sim, uid, shown),
        )
    raise AssertionError("no free slot won")


async def tg_conversation(sim: TelegramApiSimulator, runtime: Runtime, t: Timings, i: int) -> None:
    uid = TG_CLIENT + i
    sim.add_user(uid, f"Client{i}", phone_number=client_phone("telegram", i))
    await tg_step(
        sim, t, lambda: sim.send_command(uid, "start"), lambda: newest(sim, uid, "What would you like")
    )
    sent = await tg_book(sim, t, uid, i)
    booking = await booking_by_reference(runtime, sent)
    if booking is None:
        raise AssertionError(f"client {i}: no booking for {sent!r}")
    practitioner, approve = TG_PRACTITIONER + assignment(i)[0], f"v1:approve:{booking.id}"
    request = await sim.wait_for(
        lambda: next(
            (
                m
                for m in sim.bot_messages(practitioner)
                if approve in [b.get("callback_data") for b in m.buttons()]
            ),
            None,
        ),
        STEP_WITHIN_S,
    )
    await tg_step(
        sim,
        t,
        lambda: sim.press(practitioner, request.message_id, data=approve),
        lambda: request.text.startswith("Approved"),
    )
    approved = await sim.wait_for(lambda: newest(sim, uid, "Your booking is approved"), STEP_WITHIN_S)
    await tg_step(
        sim,
        t,
        lambda: sim.press(uid, approved.message_id, label="Pay with M-Pesa"),
        lambda: newest(sim, uid, "Which M-Pesa number"),
    )
    await tg_step(
        sim,
        t,
        lambda: sim.tap(uid, "Share my phone number"),
        lambda: newest(sim, uid, "Check your phone") or newest(sim, uid, "Payment received"),
    )


# -- SMS ---------------------------------------------------------------------------------------------------


class SmsPhone:
    """One handset texting the shortcode through Africa's Talking; replies read from the outbox."""

    ids = itertools.count(1)  # Africa's Talking message ids: unique per run

    def __init__(self, http: aiohttp.ClientSession, runtime: Runtime, msisdn: str, t: Timings) -> None:
        self.http, self.runtime, self.msisdn, self.t = http, runtime, msisdn, t

    async def text(self, body: str) -> str:
        message_id = f"bench-{next(self.ids)}"
        form = {
            "from": "+" + self.msisdn,
            "to": "22384",
            "text": body,
            "id": message_id,
            "date": "2026-12-04 08:00:00",
            "linkId": "",
        }
        began = time.perf_counter()
        async with self.http.post(f"/hooks/sms/{AT_SECRET}/inbound", data=form) as response:
            await response.read()
            if response.status != 200:
                raise AssertionError(f"SMS hook answered {response.status}")
        reply = await self._reply(message_id)
        self.t.latencies.append(time.perf_counter() - began)
        return reply

    async def _reply(self, message_id: str) -> str:
        deadline = time.monotonic() + STEP_WITHIN_S
        while time.monotonic() < deadline:
            async with self.runtime.uow() as uow:
                row = await uow.session.scalar(
                    select(Outbox).where(Outbox.dedupe_key == f"sms:{message_id}:reply")
                )
            if row is not None:
                return str(row.data["text"])
            await asyncio.sleep(0.01)
        raise AssertionError(f"no reply to {message_id}")


def expect(reply: str, needle: str) -> str:
    if needle not in reply:
        raise AssertionError(f"expected {needle!r} in {reply!r}")
    return reply


def numbered(reply: str) -> dict[str, str]:
    """The numbered choices of an SMS reply: label -> number."""
    found = (line.split(" ", 1) for line in reply.splitlines())
    return {parts[1]: parts[0] for parts in found if len(parts) == 2 and parts[0].isdigit()}


async def sms_book(client: SmsPhone, i: int) -> str:
    """BOOK to "Request ... sent", picking another time when a slot was taken meanwhile."""
    p, day, chooser = assignment(i)
    expect(await client.text("BOOK"), "Who would you like")
    expect(await client.text(practitioner_name("sms", p)), "Which kind of session")
    days = [
        n for label, n in numbered(expect(await client.text("1"), "Pick a day")).items() if label != "More"
    ]
    reply = expect(await client.text(days[-1 - day % len(days)]), "Pick a start time")
    for _ in range(MAX_TURNS):
        choices = numbered(reply)
        if "Pick a start time" in reply:
            reply = await client.text(chooser.choice([n for label, n in choices.items() if label != "More"]))
        elif "Skip" in choices:
            reply = await client.text(choices["Skip"])
        elif "Confirm" in choices:
            reply = await client.text(choices["Confirm"])
        elif REFERENCE.search(reply) and " sent" in reply:
            return reply
        else:
            raise AssertionError(f"unexpected reply {reply!r}")
    raise AssertionError("no free slot won")


async def sms_conversation(http: aiohttp.ClientSession, runtime: Runtime, t: Timings, i: int) -> None:
    client = SmsPhone(http, runtime, client_phone("sms", i), t)
    practitioner = SmsPhone(http, runtime, practitioner_phone("sms", assignment(i)[0]), t)
    sent = await sms_book(client, i)
    booking = await booking_by_reference(runtime, sent)
    if booking is None:
        raise AssertionError(f"client {i}: no booking in {sent!r}")
    expect(await practitioner.text(f"A{booking.approval_code}"), f"Approved {booking.reference}")
    expect(await client.text("PAY"), client.msisdn)
    paying = await client.text("1")
    if "is already paid" not in paying:  # the callback may settle it before the turn's answer is read
        expect(paying, "Check your phone")
