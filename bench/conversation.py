"""Whole booking conversations under load: Telegram (real PTB + the Bot API stand-in) and SMS.

The application is built as ``serve`` builds it in local mode (``create_app``: the dialog engine,
the real PTB application polling the Telegram stand-in, the Africa's Talking hook, the outbox
dispatcher, settlement, the Daraja simulator under /sim/daraja answering at once and calling
back after 1 s), in this process. N clients hold a whole conversation each, all at once:

* Telegram (11 updates): /start, Book a session, the practitioner, the session type, a day, the
  first time, Skip (e-mail), Confirm; the practitioner's Approve; Pay with M-Pesa; Share my
  phone number — until "Check your phone" (or already "Payment received").
* SMS (10 inbound messages to ``POST /hooks/sms/{secret}/inbound``, Africa's Talking's form):
  BOOK, the practitioner's name, 1 (type), the day's number, 1 (time), 1 (skip e-mail),
  1 (confirm); the practitioner's ``A<code>``; PAY, 1 (own number) — until "Check your phone"
  (or "... is already paid" when, under load, the payment settled before the turn answered).

Each client has its own day with its practitioner (one practitioner per 15 clients on Telegram,
per 7 on SMS: a page of days), so no two clients race for one slot. Per update: from the moment
the update is queued (Telegram) or posted (SMS) to the bot's answer being visible (the message
sent or edited; the SMS reply in the outbox). Updates/s: all updates over the run's wall time
(which also holds the waits for outbox-delivered notices, e.g. the approval). Peak RSS of the
process (everything runs in it) and its CPU time per update (all threads, the driving included:
less disturbed by other load on the host than the wall-clock figures).

    .venv/bin/python bench/conversation.py [--count 100] [--channel both|telegram|sms] [--database-url URL]

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from harness import ROOT, SECRET_KEY, free_port, own_peak_rss_mb, percentile  # noqa: E402
from settlement import scratch_database  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.db.migrate import upgrade  # noqa: E402
from core.db.models import Booking, Outbox, PaymentAttempt, SessionType, Therapist  # noqa: E402
from core.domain.slots import SLOT_STEP_MINUTES, WEEKDAYS  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from core.runtime import Runtime, build_runtime  # noqa: E402
from simulators.telegram_api import SimMessage, TelegramApiSimulator  # noqa: E402

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


# -- seeding -----------------------------------------------------------------------------------------


async def seed_practitioners(runtime: Runtime, channel: str) -> None:
    """PRACTITIONERS practitioners free every day 06:00-21:00 (Telegram ones linked to a chat)."""
    hours = {day: [["06:00", "21:00"]] for day in WEEKDAYS}
    async with runtime.uow() as uow:
        for p in range(PRACTITIONERS):
            uow.session.add(
                Therapist(
                    name=practitioner_name(channel, p),
                    email=f"bench-{channel}-{p}@example.org",
                    phone=practitioner_phone(channel, p),
                    weekly_hours=hours,
                    telegram_user_id=TG_PRACTITIONER + p if channel == "telegram" else None,
                    telegram_link_code=None,
                )
            )
        if not await uow.session.scalar(select(func.count(SessionType.id))):
            # A session as long as the slot step: slots do not overlap, so a race is for one slot only.
            uow.session.add(SessionType(name="Bench", minutes=SLOT_STEP_MINUTES, price_kes=2500))
        await uow.commit()


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


# -- the run ------------------------------------------------------------------------------------------------


async def drive(channel: str, count: int, conversation: Callable[[Timings, int], Any]) -> dict[str, Any]:
    t = Timings()

    async def one(i: int) -> None:
        try:
            await conversation(t, i)
            t.completed += 1
        except Exception as exc:  # a failed conversation is a figure, not a crash of the bench
            t.failures.append(f"{channel} client {i}: {type(exc).__name__}: {str(exc)[:200]}")

    began, cpu_began = time.perf_counter(), time.process_time()
    await asyncio.gather(*[one(i) for i in range(count)])
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    ms = [s * 1000 for s in t.latencies]
    return {
        "conversations": count,
        "completed": t.completed,
        "failed": len(t.failures),
        "failures": t.failures[:5],
        "updates": len(ms),
        "seconds": round(wall, 2),
        "updates_per_s": round(len(ms) / wall, 1) if wall else 0.0,
        "cpu_ms_per_update": round(cpu * 1000 / len(ms), 2) if ms else 0.0,
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms, default=0.0), 1),
    }


async def run(count: int, channels: list[str], database_url: str | None) -> dict[str, Any]:
    from smiling_steps.app import SERVICES, TELEGRAM_SIMULATOR, create_app

    results: dict[str, Any] = {}
    async with scratch_database(database_url) as url:
        port = free_port()
        env = {
            "DATABASE_URL": url,
            "PORT": str(port),
            "SECRET_KEY": SECRET_KEY,
            "AT_WEBHOOK_SECRET": AT_SECRET,
            "LOG_LEVEL": "WARNING",
        }
        settings = load_settings(env)
        runtime = build_runtime(settings)
        await upgrade(runtime.engine)
        for channel in channels:
            await seed_practitioners(runtime, channel)
        app = create_app(settings, runtime)
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await app[SERVICES].bot.wait_ready(30.0)  # type: ignore[union-attr]
            sim = app[TELEGRAM_SIMULATOR]
            if "telegram" in channels:
                for p in range(PRACTITIONERS):  # they opened the bot earlier (linked accounts)
                    sim.add_user(TG_PRACTITIONER + p, f"Practitioner{p}", started=True)
                results["telegram"] = await drive(
                    "telegram", count, lambda t, i: tg_conversation(sim, runtime, t, i)
                )
            if "sms" in channels:
                connector = aiohttp.TCPConnector(limit=0)
                async with aiohttp.ClientSession(
                    base_url=f"http://127.0.0.1:{port}", connector=connector
                ) as http:
                    results["sms"] = await drive(
                        "sms", count, lambda t, i: sms_conversation(http, runtime, t, i)
                    )
            async with runtime.uow() as uow:
                results["payment_attempts"] = int(
                    await uow.session.scalar(select(func.count(PaymentAttempt.id))) or 0
                )
        finally:
            await runner.cleanup()
    results["database"] = url.split(":", 1)[0]
    results["peak_rss_mb"] = {"bench+app": own_peak_rss_mb()}
    return results


def print_table(f: dict[str, Any]) -> None:
    print(f"Booking conversations: {f['count']} clients at once per channel ({f['database']}, one process)")
    print(
        f"  {'channel':<9} {'done':>5} {'failed':>6} {'updates':>8} {'seconds':>8} {'upd/s':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU ms/upd':>10}"
    )
    for channel in ("telegram", "sms"):
        r = f.get(channel)
        if r:
            print(
                f"  {channel:<9} {r['completed']:>5} {r['failed']:>6} {r['updates']:>8} {r['seconds']:>8.2f} "
                f"{r['updates_per_s']:>7.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
                f"{r['cpu_ms_per_update']:>10.2f}"
            )
            for failure in r["failures"]:
                print(f"    {failure}")
    print(f"  payment attempts started: {f['payment_attempts']}; peak RSS (MB): {f['peak_rss_mb']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="conversations per channel")
    parser.add_argument("--channel", choices=("both", "telegram", "sms"), default="both")
    parser.add_argument("--database-url", help="a postgresql+asyncpg:// server URL (a throw-away database)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    os.chdir(ROOT)
    configure_logging("WARNING")  # the application's warnings, JSON on stderr
    channels = ["telegram", "sms"] if args.channel == "both" else [args.channel]
    result = asyncio.run(run(args.count, channels, args.database_url))
    f = {"bench": "conversation", "count": args.count, **result}
    print_table(f)
    print(json.dumps(f))
    return 0 if all(f[c]["failed"] == 0 for c in channels) else 1


if __name__ == "__main__":
    sys.exit(main())
