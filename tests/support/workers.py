"""Several "worker processes" on one database, and the outside systems they talk to.

A :class:`Worker` is what ``serve --role worker`` runs, built on its own Runtime (its own
engine and connection pool): an outbox dispatcher with the real Telegram, Africa's Talking
and SMTP senders, the reminder pass and the payment watchdog. :func:`outside_world` starts
the project's simulators on 127.0.0.1 (the Telegram Bot API stand-in, the AT simulator, the
SMTP capture server and the Daraja simulator) so that what each worker sent is counted where
it arrived.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from aiohttp import web

from bot.sender import TelegramSender
from core.config import Settings
from core.mpesa import DarajaClient
from core.runtime import Runtime, build_runtime
from core.services.notifications.dispatcher import Dispatcher
from core.services.notifications.outbox_types import RenderedMessage, Sender, SendResult
from core.services.notifications.reminders import run_due_reminders
from core.services.payments.initiate import PaymentService
from core.services.payments.watchdog import Watchdog
from senders.email import SmtpSender
from senders.sms import SmsSender, build_sms_gateway
from simulators.africastalking import AfricasTalkingSimulator
from simulators.smtp import SmtpCaptureServer
from simulators.telegram_api import SIMULATOR_TOKEN, TelegramApiSimulator, create_app, simulator_state
from tests.support.daraja import RunningSimulator, closed_port, make_client, running_simulator

AT_USERNAME, AT_API_KEY = "smilingsteps", "claims-test-at-key"
MAIL_FROM = "bookings@smilingsteps.example"
SECRET_KEY = "test-secret-key-for-callbacks"
ROOT = Path(__file__).resolve().parents[2]  # where ``python -m tests.support.worker_process`` runs


class StillClock:
    """A clock that stands still until the test moves it (leases run out only when told)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class OutsideWorld:
    """The simulators, and where each one listens."""

    telegram: TelegramApiSimulator
    at: AfricasTalkingSimulator
    smtp: SmtpCaptureServer
    daraja: RunningSimulator
    base_url: str  # the aiohttp site with /sim/telegram and /sim/at

    def sms_received(self) -> Counter[str]:
        """Texts the AT simulator accepted, by recipient (254…)."""
        return Counter(sms.to.lstrip("+") for sms in self.at.messages)

    def telegram_received(self) -> Counter[int]:
        """Messages the bot sent, by chat."""
        return Counter({chat: len(self.telegram.bot_messages(chat)) for chat in self.telegram.chats})

    def mail_received(self) -> Counter[str]:
        return Counter(address for mail in self.smtp.mailbox.messages for address in mail.rcpt_tos)


@asynccontextmanager
async def outside_world() -> AsyncIterator[OutsideWorld]:
    """Telegram, Africa's Talking, SMTP and Daraja stand-ins on 127.0.0.1 (any free ports)."""
    telegram_app = create_app()
    at = AfricasTalkingSimulator(username=AT_USERNAME, api_key=AT_API_KEY)
    root = web.Application()
    root.add_subapp("/sim/telegram", telegram_app)
    root.add_subapp("/sim/at", at.app())
    runner = web.AppRunner(root)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with SmtpCaptureServer() as smtp, running_simulator(prefix=None) as daraja:
            yield OutsideWorld(simulator_state(telegram_app), at, smtp, daraja, base_url)
    finally:
        await runner.cleanup()


@dataclass
class Counting:
    """A Sender that notes what went through it (which worker sent what)."""

    inner: Sender
    sent: list[str] = field(default_factory=list)

    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        result = await self.inner.send(recipient, message)
        if result.ok:
            self.sent.append(recipient)
        return result


@dataclass
class Worker:
    """One worker process's loops over its own Runtime."""

    runtime: Runtime
    dispatcher: Dispatcher
    watchdog: Watchdog
    senders: dict[str, Counting]
    daraja: DarajaClient
    close_senders: Callable[[], Awaitable[None]]

    @property
    def sent(self) -> int:
        return sum(len(s.sent) for s in self.senders.values())

    async def reminders(self, *, limit: int = 7) -> int:
        return await run_due_reminders(self.runtime, limit=limit, worker=self.dispatcher.worker)

    async def drain_outbox(self) -> None:
        while await self.dispatcher.dispatch_once():
            pass

    async def close(self) -> None:
        await self.close_senders()
        await self.daraja.aclose()
        await self.runtime.close()


def worker_settings(world: OutsideWorld, callback_port: int) -> dict[str, str]:
    """Settings (besides DATABASE_URL) pointing the workers at ``world``; callbacks go nowhere."""
    return {
        "AT_USERNAME": AT_USERNAME, "AT_API_KEY": AT_API_KEY, "AT_API_BASE_URL": f"{world.base_url}/sim/at",
        "PORT": str(callback_port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{callback_port}",
        "MPESA_API_BASE_URL": world.daraja.base_url,
        "SECRET_KEY": SECRET_KEY,
        "TELEGRAM_BOT_TOKEN": SIMULATOR_TOKEN,
        "TELEGRAM_API_BASE_URL": f"{world.base_url}/sim/telegram/bot",
    }


def process_env(database_url: str, world: OutsideWorld) -> dict[str, str]:
    """The environment of a worker *process* (tests/support/worker_process.py) for ``world``."""
    return {
        "DATABASE_URL": database_url, **worker_settings(world, closed_port()),
        "SMTP_PORT": str(world.smtp.port),
    }


def process_senders(
    settings: Settings, smtp_port: int
) -> tuple[dict[str, Sender], Callable[[], Awaitable[None]]]:
    """The real senders (as ``serve`` builds them from settings) and a function closing them."""
    telegram = TelegramSender.from_settings(settings)
    gateway = build_sms_gateway(settings)
    assert telegram is not None and gateway is not None
    email = SmtpSender.for_capture(smtp_port, sender_address=MAIL_FROM)
    return {"telegram": telegram, "sms": SmsSender(gateway), "email": email}, telegram.close


def start_worker(
    settings: Settings, world: OutsideWorld, clock: StillClock, *, batch_size: int = 10
) -> Worker:
    """A worker on a Runtime of its own (own engine), senders pointing at the simulators."""
    runtime = build_runtime(settings, clock=clock)
    real, close = process_senders(settings, world.smtp.port)
    senders = {channel: Counting(sender) for channel, sender in real.items()}
    dispatcher = Dispatcher(runtime, senders, batch_size=batch_size, concurrency=5)
    daraja = make_client(world.daraja.base_url)
    payments = PaymentService(runtime, daraja, SECRET_KEY)
    return Worker(runtime, dispatcher, Watchdog(runtime, daraja, payments), senders, daraja, close)
