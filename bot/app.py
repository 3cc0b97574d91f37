"""Starting and stopping the Telegram bot inside the service's event loop.

``start_bot(runtime, engine, payments, app)`` builds the PTB Application
(``Application.builder().token(…).base_url(TELEGRAM_API_BASE_URL).rate_limiter(AIORateLimiter(…))``),
registers the handlers and the bot commands, and starts receiving updates:

* polling (default): ``application.initialize()`` / ``start()`` and
  ``updater.start_polling()`` — never ``run_polling``, which would own the event loop;
* webhook (``TELEGRAM_WEBHOOK_SECRET`` set): built with ``.updater(None)``; updates come
  through ``POST /hooks/telegram`` (webhooks.telegram) and setWebhook is called with
  ``PUBLIC_BASE_URL + "/hooks/telegram"`` and the secret.

With split roles (``serve --role``) a process may run the bot without receiving updates
(``receive=False``: a worker in webhook mode, which only edits progress messages and sends the
outbox's Telegram messages) or without following progress messages (``follow_progress=False``:
a web process in webhook mode, which records them for the worker; ``bot/progress.py``).

``runtime.components["bot"]`` is "starting" until polling runs or the webhook is set, then
"ok" (``/healthz``). A token Telegram refuses fails at once (:class:`BotStartError`); if
Telegram cannot be reached, start-up keeps retrying in the background.
Nothing here is simulator-specific: pointed at api.telegram.org the same code runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from aiohttp import web
from sqlalchemy import select
from telegram import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, Update
from telegram.error import InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import AIORateLimiter, Application, ExtBot

from bot.delivery import ReplyDelivery, TelegramOut
from bot.handlers import DialogEngine, TelegramHandlers
from bot.progress import PaymentProgress
from bot.reachability import mark_telegram_unreachable
from core.config import Settings
from core.db.models import Therapist
from core.dialog.messages import say
from core.runtime import Runtime
from core.services.payments.initiate import PaymentService
from webhooks.telegram import TELEGRAM_WEBHOOK, WEBHOOK_PATH, TelegramWebhook

log = logging.getLogger(__name__)

COMPONENT = "bot"
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
# Command names; each description is the catalogue's "tg_command_<name>" (core/dialog/messages.py).
CLIENT_COMMANDS: tuple[str, ...] = ("start", "book", "sessions", "pay", "cancel", "help", "language")
THERAPIST_COMMANDS: tuple[str, ...] = ("today", "upcoming", "hours", "away")
START_RETRY_MAX_S = 30.0


def command_menu(commands: tuple[str, ...], lang: str = "en") -> list[BotCommand]:
    """The commands with their catalogue descriptions in ``lang``, for setMyCommands."""
    return [BotCommand(command, say(f"tg_command_{command}", lang=lang)) for command in commands]


class BotStartError(RuntimeError):
    """The bot cannot start with this configuration; ``str()`` is one line naming the cause."""


def build_application(
    token: str,
    base_url: str,
    *,
    webhook_mode: bool,
    max_retries: int = 5,
    concurrent_updates: int = 64,
) -> Application:
    """The PTB Application: rate-limited (429s are waited out and retried), concurrent updates."""
    builder = (
        Application.builder()
        .token(token)
        .base_url(base_url)
        .rate_limiter(AIORateLimiter(max_retries=max_retries))
        .concurrent_updates(concurrent_updates)
        .connection_pool_size(max(8, concurrent_updates // 2))
        .connect_timeout(10.0)
        .read_timeout(15.0)
        .write_timeout(15.0)
        .pool_timeout(10.0)
    )
    if webhook_mode:
        builder = builder.updater(None)
    return builder.build()


class _UpdateSink:
    """Webhook JSON → PTB Update on the application's queue; drops redelivered update ids."""

    def __init__(self, application: Application, remember: int = 2048) -> None:
        self.application = application
        self._seen: set[int] = set()
        self._order: deque[int] = deque(maxlen=remember)

    async def __call__(self, data: dict[str, Any]) -> None:
        update_id = int(data["update_id"])
        if update_id in self._seen:
            return
        try:
            update = Update.de_json(data, self.application.bot)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"cannot read update: {exc}") from None
        if len(self._order) == self._order.maxlen:
            self._seen.discard(self._order[0])
        self._order.append(update_id)
        self._seen.add(update_id)
        await self.application.update_queue.put(update)


@dataclass
class BotHandle:
    """A running bot. ``await handle.stop()`` stops it cleanly."""

    application: Application
    runtime: Runtime
    mode: Literal["polling", "webhook", "send-only"]
    progress: PaymentProgress
    handlers: TelegramHandlers
    webhook: TelegramWebhook | None = None
    webhook_url: str | None = None
    poll_timeout: float = 25.0
    # Polling waits for resume_polling() (a worker polls only while it holds the polling lease:
    # Telegram allows one poller per token; smiling_steps/polling_lease.py).
    gate_polling: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _initialized: bool = False
    _may_poll: bool = False
    _receiving: bool = False
    _starter: asyncio.Task[None] | None = None
    _stopped: bool = False

    @property
    def bot(self) -> ExtBot:
        """The rate-limited bot (one per token: share it, e.g. with the outbox's Telegram sender)."""
        return self.application.bot

    async def wait_ready(self, within: float = 10.0) -> None:
        await asyncio.wait_for(self.ready.wait(), within)

    # -- start-up ------------------------------------------------------------------------------
    async def _start_once(self) -> None:
        app = self.application
        if not self._initialized:
            await app.initialize()  # getMe: a refused token raises InvalidToken here
            self._initialized = True
            if self.mode != "send-only":
                await self._set_commands()
        if not app.running:
            await app.start()
        if not self._receiving and self.mode != "send-only":
            if self.mode == "webhook":
                assert self.webhook is not None and self.webhook_url is not None
                self.webhook.attach(_UpdateSink(app))
                await app.bot.set_webhook(
                    self.webhook_url,
                    secret_token=self.webhook.secret,
                    allowed_updates=ALLOWED_UPDATES,
                    max_connections=40,
                )
            elif not self.gate_polling or self._may_poll:
                await self._poll()
            self._receiving = True
        self.progress.start()
        self.runtime.components[COMPONENT] = "ok"
        self.ready.set()
        log.info("telegram bot started", extra={"mode": self.mode, "bot": app.bot.username})

    async def _poll(self) -> None:
        updater = self.application.updater
        assert updater is not None
        if not updater.running:
            await updater.start_polling(
                timeout=timedelta(seconds=self.poll_timeout),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=False,
                error_callback=self._polling_error,
            )
            log.info("telegram polling started")

    @property
    def polling(self) -> bool:
        updater = self.application.updater
        return bool(updater is not None and updater.running)

    async def resume_polling(self) -> None:
        """Start polling now (or once the bot has started, if Telegram was out of reach)."""
        self._may_poll = True
        if self.mode == "polling" and self._initialized and self.application.running and not self._stopped:
            await self._poll()

    async def pause_polling(self) -> None:
        """Stop polling (the polling lease was lost); sending and editing go on."""
        self._may_poll = False
        updater = self.application.updater
        with contextlib.suppress(RuntimeError):
            if updater is not None and updater.running:
                await updater.stop()
                log.info("telegram polling paused")

    async def _keep_starting(self) -> None:
        delay = 1.0
        while not self._stopped:
            await asyncio.sleep(delay)
            try:
                await self._start_once()
                return
            except (NetworkError, TimedOut, RetryAfter) as exc:
                self.runtime.components[COMPONENT] = (
                    f"starting: Telegram not reachable ({type(exc).__name__})"
                )
                log.warning("telegram bot start failed; retrying", extra={"error": repr(exc), "in_s": delay})
            except TelegramError as exc:
                self.runtime.components[COMPONENT] = f"error: {exc.message}"
                log.error("telegram bot cannot start", extra={"error": repr(exc)})
                return
            delay = min(delay * 2, START_RETRY_MAX_S)

    async def _set_commands(self) -> None:
        """The command menu: seven for everyone; linked practitioners also get /today, /upcoming,
        /hours and /away."""
        bot = self.application.bot
        client = command_menu(CLIENT_COMMANDS)
        therapist = client + command_menu(THERAPIST_COMMANDS)
        try:
            await bot.set_my_commands(client, scope=BotCommandScopeDefault())
            # Users whose Telegram is in Kiswahili see the descriptions in Kiswahili.
            await bot.set_my_commands(
                command_menu(CLIENT_COMMANDS, "sw"), scope=BotCommandScopeDefault(), language_code="sw"
            )
        except TelegramError as exc:
            log.warning("setMyCommands failed", extra={"error": repr(exc)})
        for user_id in await self._therapist_chat_ids():
            try:
                await bot.set_my_commands(therapist, scope=BotCommandScopeChat(user_id))
            except TelegramError as exc:  # e.g. the practitioner never opened the bot yet
                log.info("therapist commands not set", extra={"telegram_user": user_id, "error": repr(exc)})

    async def _therapist_chat_ids(self) -> list[int]:
        try:
            async with self.runtime.uow() as uow:
                rows = await uow.session.scalars(
                    select(Therapist.telegram_user_id).where(
                        Therapist.telegram_user_id.is_not(None), Therapist.active.is_(True)
                    )
                )
                return [int(r) for r in rows if r is not None]
        except Exception:
            log.exception("could not list practitioners for their bot commands")
            return []

    def _polling_error(self, exc: TelegramError) -> None:
        if "Conflict" in str(exc):
            log.error(
                "telegram polling conflict: another process polls with this token", extra={"error": str(exc)}
            )
        else:
            log.warning("telegram polling error; PTB retries", extra={"error": repr(exc)})

    # -- stop -------------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop receiving, finish the updates in hand, follow no more progress, close connections."""
        if self._stopped:
            return
        self._stopped = True
        self.ready.clear()
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        if self.webhook is not None:
            self.webhook.detach()  # Telegram keeps updates until we are back; the webhook stays set
        await self.progress.stop()
        app = self.application
        with contextlib.suppress(RuntimeError):
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
        with contextlib.suppress(RuntimeError):
            if app.running:
                await app.stop()
        if self._initialized:
            await app.shutdown()
        self.runtime.components[COMPONENT] = "stopped"
        log.info("telegram bot stopped")


async def start_bot(
    runtime: Runtime,
    engine: DialogEngine,
    payments: PaymentService,
    app: web.Application | None = None,
    *,
    token: str | None = None,
    base_url: str | None = None,
    poll_timeout: float = 25.0,
    progress_interval: float = 2.5,
    max_retries: int = 5,
    receive: bool = True,
    follow_progress: bool = True,
    gate_polling: bool = False,
) -> BotHandle:
    """Start the Telegram bot on the running loop and return its handle.

    ``token`` / ``base_url`` default to TELEGRAM_BOT_TOKEN / TELEGRAM_API_BASE_URL (pass
    them for the local stand-in). Webhook mode when TELEGRAM_WEBHOOK_SECRET is set: then
    ``app`` must carry :func:`webhooks.telegram.setup_telegram_webhook`'s route.
    """
    settings = runtime.settings
    token = token or settings.telegram_bot_token
    if not token:
        raise BotStartError("TELEGRAM_BOT_TOKEN: not set (the bot cannot start without a token)")
    hook = _webhook_route(settings, app) if receive else None
    webhook_mode = hook is not None
    runtime.components[COMPONENT] = "starting"
    application = build_application(
        token, base_url or settings.telegram_api_base_url, webhook_mode=webhook_mode or not receive,
        max_retries=max_retries,
    )

    async def blocked(user_id: int) -> None:
        await mark_telegram_unreachable(runtime, user_id)

    out = TelegramOut(application.bot, blocked)
    progress = PaymentProgress(runtime, payments, out, interval=progress_interval, follow=follow_progress)
    handlers = TelegramHandlers(engine, ReplyDelivery(out, progress), runtime)
    handlers.register(application)
    handle = BotHandle(
        application,
        runtime,
        ("webhook" if webhook_mode else "polling") if receive else "send-only",
        progress,
        handlers,
        webhook=hook,
        webhook_url=f"{settings.base_url}{WEBHOOK_PATH}" if webhook_mode else None,
        poll_timeout=poll_timeout,
        gate_polling=gate_polling,
    )
    await _first_start(handle)
    return handle


def _webhook_route(settings: Settings, app: web.Application | None) -> TelegramWebhook | None:
    """The webhook route in webhook mode (TELEGRAM_WEBHOOK_SECRET set); None when polling."""
    if not settings.telegram_webhook_secret:
        return None
    hook = app.get(TELEGRAM_WEBHOOK) if app is not None else None
    if hook is None:
        raise BotStartError(
            "TELEGRAM_WEBHOOK_SECRET: webhook mode needs setup_telegram_webhook(app, secret) "
            "on the aiohttp app before it starts"
        )
    return hook


async def _first_start(handle: BotHandle) -> None:
    """Start now; Telegram out of reach is retried in the background, a refusal is a BotStartError."""
    components = handle.runtime.components
    try:
        await handle._start_once()
    except InvalidToken:
        components[COMPONENT] = "error: token refused"
        await handle.stop()
        components[COMPONENT] = "error: token refused"
        raise BotStartError("TELEGRAM_BOT_TOKEN: Telegram refused the token") from None
    except (NetworkError, TimedOut, RetryAfter) as exc:
        components[COMPONENT] = f"starting: Telegram not reachable ({type(exc).__name__})"
        log.warning("telegram not reachable at start; retrying in the background", extra={"error": repr(exc)})
        handle._starter = asyncio.create_task(handle._keep_starting(), name="telegram-bot-start")
    except TelegramError as exc:
        await handle.stop()
        components[COMPONENT] = f"error: {exc.message}"
        raise BotStartError(f"Telegram bot: {exc.message}") from None
