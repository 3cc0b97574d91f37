"""The aiohttp application: wires adapters, simulators and background workers onto one loop.

With the role ``all`` (the default) one process runs everything (DESIGN.md §1): webhooks, the
Telegram bot, the payment settlement worker and watchdog, the outbox dispatcher, the reminder job
and housekeeping — and, in local mode, the stand-ins for Daraja, Telegram, Africa's Talking and
SMTP under /sim/. The roles ``web`` and ``worker`` split that (``smiling_steps/roles.py``): a role
is a choice of the routes and the named life-cycle contexts below.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from admin_web.app import create_admin_app
from admin_web.context import AdminDeps
from core.config import Settings, ensure_secret_key
from core.db.migrate import current_revision, head_revision, is_up_to_date, upgrade
from core.dialog.engine import DialogEngine
from core.dialog.store import DialogStore
from core.mpesa import DarajaClient
from core.runtime import Runtime, Wake, build_runtime
from core.services.booking.housekeeping import run_housekeeping
from core.services.notifications.notify import Dispatcher, Sender, run_due_reminders
from core.services.payments.initiate import DarajaGateway, PaymentService
from core.services.payments.intake import CallbackIntake, SettlementWorker
from core.services.payments.watchdog import Watchdog
from core.services.settings.crypto import SettingsCipher
from core.services.settings.gateway import ConfiguredDaraja
from core.services.settings.mpesa import MpesaSettings
from smiling_steps.jobs import BackgroundJobs
from smiling_steps.polling_lease import PollingLease
from smiling_steps.roles import Role, RolePlan, plan_for, wake_ctx
from webhooks.health import setup_health
from webhooks.metrics import setup_metrics
from webhooks.mpesa import setup_mpesa_callbacks
from webhooks.sms import setup_sms_routes
from webhooks.telegram import setup_telegram_webhook

if TYPE_CHECKING:
    from bot.app import BotHandle
    from simulators.smtp import SmtpCaptureServer
    from simulators.telegram_api import TelegramApiSimulator

log = logging.getLogger(__name__)
# 6 MB: the admin's statement upload (5 MB) plus its form; webhooks read with their own, smaller caps.
MAX_BODY_BYTES = 6 * 1024 * 1024
WATCHDOG_INTERVAL_S = 5
REMINDER_INTERVAL_S = 30
HOUSEKEEPING_INTERVAL_S = 60
STOP_GRACE_S = 5.0


class NotMigrated(RuntimeError):
    """The database schema is older than this code."""


@dataclass
class Services:
    """What the adapters share."""

    runtime: Runtime
    daraja: DarajaGateway
    payments: PaymentService
    settlement: SettlementWorker
    watchdog: Watchdog
    engine: DialogEngine
    # The saved M-Pesa mode and credentials (admin settings) with a Daraja client per configuration.
    mpesa: ConfiguredDaraja
    # The running bot, once bot_ctx has started it (after the application froze, hence a field
    # and not an AppKey); the senders reuse its Bot for Telegram messages.
    bot: BotHandle | None = None


SERVICES = web.AppKey("services", Services)
# An aiohttp cleanup context: set-up before the yield, tear-down after it.
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
# Local mode's stand-ins of outside systems, set while the application is built.
MAIL_CAPTURE: web.AppKey[SmtpCaptureServer] = web.AppKey("mail_capture")
TELEGRAM_SIMULATOR: web.AppKey[TelegramApiSimulator] = web.AppKey("telegram_simulator")


async def prepare_database(runtime: Runtime, *, auto_upgrade: bool) -> None:
    """Upgrade (local mode) or refuse to run on a database that is not at the newest migration."""
    if await is_up_to_date(runtime.engine):
        return
    if auto_upgrade:
        await upgrade(runtime.engine)
        log.info("database upgraded", extra={"revision": head_revision()})
        return
    current = await current_revision(runtime.engine)
    raise NotMigrated(
        f"database is at revision {current or 'none (empty)'}, this code needs {head_revision()}: "
        "run `smiling-steps db upgrade` first"
    )


def at_webhook_secret(settings: Settings, secret_key: str) -> str | None:
    """AT_WEBHOOK_SECRET, or in local mode one derived from SECRET_KEY (stable across restarts)."""
    if settings.at_webhook_secret:
        return settings.at_webhook_secret
    if settings.local_mode:
        return hmac.new(secret_key.encode(), b"at-webhook", hashlib.sha256).hexdigest()[:24]
    return None


def create_app(
    settings: Settings,
    runtime: Runtime | None = None,
    *,
    daraja: DarajaClient | None = None,
    with_bot: bool = True,
    with_notifications: bool = True,
    role: Role = Role.ALL,
) -> web.Application:
    """Build the application of ``role`` (tests may pass a runtime, a Daraja client, or switch parts off)."""
    runtime = runtime or build_runtime(settings)
    plan = plan_for(role, settings)
    secret_key = ensure_secret_key(settings)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    services = _build_services(settings, runtime, secret_key, daraja)
    app[SERVICES] = services
    intake = CallbackIntake(runtime, secret_key, on_stored=services.settlement.notify)
    if plan.site:
        bot_token, bot_base_url = _add_routes(app, settings, services, secret_key, intake)
    else:  # a worker answers /healthz and /metrics on its own port, nothing else
        setup_health(app, runtime)
        setup_metrics(app, runtime)
        bot_token, bot_base_url = _worker_bot_target(app, settings)
    wants_bot = bool(with_bot and bot_token and (plan.bot_receives or plan.follows_progress))
    runtime.components["bot"] = "starting" if wants_bot else "disabled"
    runtime.process.update(role=plan.role.value, runs=",".join(plan.runs(bot=wants_bot)))

    # Only a process serving the site upgrades a local-mode database (a worker waits for it).
    app.cleanup_ctx.append(_database_ctx(services, intake, auto_upgrade=settings.local_mode and plan.site))
    wake = wake_ctx(runtime, plan)
    if wake is not None:
        app.cleanup_ctx.append(wake)
    if plan.workers:
        app.cleanup_ctx.append(_payment_workers_ctx(services))
    if wants_bot and bot_token:
        app.cleanup_ctx.append(_bot_ctx(services, bot_token, bot_base_url, plan))
    if with_notifications and plan.workers:
        app.cleanup_ctx.append(_notification_workers_ctx(settings, services))
    return app


def _worker_bot_target(app: web.Application, settings: Settings) -> tuple[str | None, str]:
    """A worker's bot: the configured one, or in local mode the web process's Telegram stand-in.

    In local mode the stand-ins live in the web process (PUBLIC_BASE_URL must name it); the
    worker keeps its own e-mail capture, since the SMTP stand-in is not reachable over HTTP.
    """
    if settings.local_mode and not settings.smtp_host:
        from simulators import smtp

        app[MAIL_CAPTURE] = smtp.SmtpCaptureServer()
    if settings.telegram_bot_token or not settings.local_mode:
        return settings.telegram_bot_token, settings.telegram_api_base_url
    from simulators.telegram_api import SIMULATOR_TOKEN

    return SIMULATOR_TOKEN, f"{settings.stand_ins_url}/sim/telegram/bot"


def _build_services(
    settings: Settings, runtime: Runtime, secret_key: str, daraja: DarajaClient | None
) -> Services:
    # Saved admin settings win over the environment for every NEW payment, without a restart.
    mpesa = ConfiguredDaraja(MpesaSettings(runtime, SettingsCipher(secret_key)))
    client: DarajaGateway = daraja or mpesa
    payments = PaymentService(runtime, client, secret_key, on_change=lambda _id: runtime.wake(Wake.PAYMENTS))
    settlement = SettlementWorker(
        runtime, confirm=client.stk_query if settings.confirm_success_by_query else None
    )
    watchdog = Watchdog(runtime, client, payments)
    engine = DialogEngine(runtime, payments)
    return Services(runtime, client, payments, settlement, watchdog, engine, mpesa)


def _add_routes(
    app: web.Application, settings: Settings, services: Services, secret_key: str, intake: CallbackIntake
) -> tuple[str | None, str]:
    """Health, metrics, the provider webhooks, /admin and, in local mode, the stand-ins under /sim/.

    Returns the bot's token and Bot API base URL (local mode's Telegram stand-in when no real bot).
    """
    runtime = services.runtime
    setup_health(app, runtime)
    setup_metrics(app, runtime)
    setup_mpesa_callbacks(app, intake, settings)
    sms_secret = at_webhook_secret(settings, secret_key)
    if sms_secret:
        setup_sms_routes(app, runtime, services.engine, sms_secret)
    setup_telegram_webhook(app, settings.telegram_webhook_secret)
    admin = AdminDeps(
        runtime, secret_key, daraja=services.daraja, payments=services.payments, mpesa=services.mpesa
    )
    _mount_admin(app, admin, settings.local_mode)
    if settings.local_mode:
        return _mount_simulators(app, settings, services, sms_secret, settings.telegram_bot_token)
    return settings.telegram_bot_token, settings.telegram_api_base_url


def _database_ctx(services: Services, intake: CallbackIntake, *, auto_upgrade: bool) -> CleanupContext:
    async def database(_app: web.Application) -> AsyncIterator[None]:
        await prepare_database(services.runtime, auto_upgrade=auto_upgrade)
        yield
        await intake.close()
        await services.mpesa.aclose()
        await services.runtime.close()

    return database


def _payment_workers_ctx(services: Services) -> CleanupContext:
    runtime = services.runtime

    async def payment_workers(_app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        settler = asyncio.create_task(services.settlement.run(stop), name="settlement")
        jobs = BackgroundJobs()
        # Property 76: pick up every live attempt at start-up, then every few seconds.
        jobs.every(WATCHDOG_INTERVAL_S, "payment-watchdog", services.watchdog.tick)
        # Expire/complete bookings whose time has passed, purge idle chats (docs/architecture.md).
        purge_dialogs = DialogStore(runtime).purge
        jobs.every(
            HOUSEKEEPING_INTERVAL_S, "housekeeping",
            lambda: run_housekeeping(runtime, purge_dialogs=purge_dialogs),
        )
        jobs.start()
        yield
        await jobs.stop()
        await _stop_task(settler, stop, runtime, Wake.SETTLEMENT)

    return payment_workers


def _notification_workers_ctx(settings: Settings, services: Services) -> CleanupContext:
    runtime = services.runtime

    async def notification_workers(app: web.Application) -> AsyncIterator[None]:
        capture = app.get(MAIL_CAPTURE)
        if capture is not None:
            await capture.start()
        senders = await _senders(settings, services, capture)
        stop = asyncio.Event()
        dispatcher = asyncio.create_task(Dispatcher(runtime, senders).run(stop), name="outbox")
        jobs = BackgroundJobs()
        jobs.every(REMINDER_INTERVAL_S, "reminders", lambda: _queue_due_reminders(runtime))
        jobs.start()
        yield
        await jobs.stop()
        await _stop_task(dispatcher, stop, runtime, Wake.OUTBOX)
        if capture is not None:
            await capture.stop()

    return notification_workers


def _bot_ctx(services: Services, token: str, base_url: str, plan: RolePlan) -> CleanupContext:
    async def bot(app: web.Application) -> AsyncIterator[None]:
        from bot.app import start_bot

        sim_runner, url = None, base_url
        simulator = app.get(TELEGRAM_SIMULATOR)
        if simulator is not None:
            sim_runner, url = await _private_telegram(simulator)
        # Several workers on PostgreSQL: only the holder of the polling lease polls.
        gated = plan.role is Role.WORKER and plan.bot_receives and not services.runtime.settings.is_sqlite
        handle = await start_bot(
            services.runtime, services.engine, services.payments, app, token=token, base_url=url,
            receive=plan.bot_receives, follow_progress=plan.follows_progress, gate_polling=gated,
        )
        services.bot = handle
        lease = PollingLease(services.runtime, handle.resume_polling, handle.pause_polling) if gated else None
        if lease is not None:
            await lease.start()
        yield
        if lease is not None:
            await lease.stop()
        await handle.stop()
        if sim_runner is not None:
            await sim_runner.cleanup()

    return bot


def _mount_admin(app: web.Application, deps: AdminDeps, local: bool) -> None:
    """The admin site at /admin in every mode; ``/`` leads to /sim/ in local mode, else to /admin/."""
    home = "/sim/" if local else "/admin/"

    async def to_admin(_request: web.Request) -> web.Response:
        return _see_other("/admin/")

    async def to_home(_request: web.Request) -> web.Response:
        return _see_other(home)

    app.router.add_get("/admin", to_admin)  # before the sub-app claims it
    app.add_subapp("/admin", create_admin_app(deps))
    app.router.add_get("/", to_home)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _mount_simulators(
    app: web.Application,
    settings: Settings,
    services: Services,
    sms_secret: str | None,
    bot_token: str | None,
) -> tuple[str | None, str]:
    """Local mode: the outside systems' stand-ins under /sim/ (only those not configured for real)."""
    from simulators import africastalking, smtp, telegram_api, telegram_chat
    from simulators import phone as phone_sim
    from simulators.daraja import create_app as daraja_app
    from simulators.daraja import simulator_state
    from simulators.index import index_page, to_index

    base = f"http://127.0.0.1:{settings.port}"
    mounted: set[str] = set()
    sources = phone_sim.PhoneSources(None, None, None, None, None, shortcode=settings.at_shortcode or "22384")
    if settings.mpesa_api_base_url is None:
        daraja_sim = daraja_app()
        app.add_subapp("/sim/daraja", daraja_sim)
        sources.daraja = simulator_state(daraja_sim)
        mounted.add("daraja")
    bot_base_url = settings.telegram_api_base_url
    if bot_token is None:
        # One simulated Telegram, two doors: /sim/telegram for people and tests, and a private
        # listener the bot polls (it must be up before the main site listens and stay up until
        # the bot has stopped, which the main site's life cycle cannot give).
        state = telegram_api.TelegramApiSimulator(telegram_api.SIMULATOR_TOKEN)
        for user_id, first_name, phone in telegram_chat.PRESETS:  # the chat page's people, already started
            state.add_user(user_id, first_name, phone_number=phone, started=True)
        app.add_subapp("/sim/telegram", telegram_api.create_app(state=state))
        app[TELEGRAM_SIMULATOR] = state
        sources.telegram = state
        mounted.add("telegram")
        bot_token, bot_base_url = telegram_api.SIMULATOR_TOKEN, ""  # base URL known once listening
    if settings.at_api_base_url is None and not settings.at_username:
        report_url = f"{base}/hooks/sms/{sms_secret}/delivery" if sms_secret else None
        sources.at = africastalking.AfricasTalkingSimulator(delivery_report_url=report_url)
        sources.sms_inbound_url = f"{base}/hooks/sms/{sms_secret}/inbound" if sms_secret else None
        app.add_subapp("/sim/at", sources.at.app())
        mounted.add("at")
    if not settings.smtp_host:
        capture = smtp.SmtpCaptureServer()
        app[MAIL_CAPTURE] = capture
        app.add_subapp("/sim/mail", smtp.create_app(capture.mailbox))
        sources.mailbox = capture.mailbox
        mounted.add("mail")
    app.add_subapp("/sim/phone", phone_sim.create_app(sources))  # the phone page's API and files
    app.router.add_get("/sim/", phone_sim.page)
    app.router.add_get("/sim/stand-ins", index_page(mounted))
    app.router.add_get("/sim", to_index)
    return bot_token, bot_base_url


async def _private_telegram(state: TelegramApiSimulator) -> tuple[web.AppRunner, str]:
    """Serve the simulated Telegram on a private loopback port for the bot; returns its base URL."""
    from simulators import telegram_api

    runner = web.AppRunner(telegram_api.create_app(state=state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/bot"


async def _senders(
    settings: Settings, services: Services, capture: SmtpCaptureServer | None
) -> dict[str, Sender]:
    from bot.sender import TelegramSender
    from senders.email import SmtpSender
    from senders.sms import SmsSender, build_sms_gateway

    senders: dict[str, Sender] = {}
    email = SmtpSender.from_settings(settings) or (
        SmtpSender.for_capture(capture.port, sender_address=settings.smtp_from) if capture else None
    )
    if email is not None:
        senders["email"] = email
    gateway = build_sms_gateway(settings)
    if gateway is not None:
        senders["sms"] = SmsSender(gateway)
    handle = services.bot
    telegram = TelegramSender(handle.application.bot) if handle else TelegramSender.from_settings(settings)
    if telegram is not None:
        senders["telegram"] = telegram
    return senders


async def _stop_task(task: asyncio.Task[None], stop: asyncio.Event, runtime: Runtime, worker: Wake) -> None:
    stop.set()
    runtime.wake(worker)
    try:
        await asyncio.wait_for(task, STOP_GRACE_S)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _queue_due_reminders(runtime: Runtime) -> None:
    if await run_due_reminders(runtime):
        runtime.wake(Wake.OUTBOX)
