"""``POST /hooks/telegram``: Telegram's webhook (webhook mode, when TELEGRAM_WEBHOOK_SECRET is set).

Telegram sends every update with the header ``X-Telegram-Bot-Api-Secret-Token`` equal to
the ``secret_token`` given to setWebhook; anything else gets 403 (compared in constant
time as bytes, logged with the source address through the rate-limited security log). The
body is read whole (capped); malformed or deeply nested JSON gets 400. A verified update is
handed to the bot (PTB's update queue) and answered 200 at once, so a slow conversation step
never holds Telegram's connection. Before the bot has started the route answers 503 and Telegram retries.

Wiring (the composition root), while building the aiohttp app::

    setup_telegram_webhook(app, settings.telegram_webhook_secret)   # no route when None
    ...
    handle = await start_bot(runtime, engine, payments, app)       # attaches itself here
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from webhooks.request_body import BodyRejected, load_json, read_body
from webhooks.security_log import SECURITY_LOG, install_security_log
from webhooks.source_address import caller_address

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/hooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 512 * 1024
MAX_UPDATE_DEPTH = 32  # a real update nests about 6 levels; a deeper one is refused before parsing

UpdateSink = Callable[[dict[str, Any]], Awaitable[None]]


class TelegramWebhook:
    """The route's state: the expected secret and where verified updates go (set by the bot)."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the Telegram webhook needs a secret")
        self._secret = secret.encode()
        self._sink: UpdateSink | None = None

    @property
    def secret(self) -> str:
        return self._secret.decode()

    @property
    def attached(self) -> bool:
        return self._sink is not None

    def attach(self, sink: UpdateSink) -> None:
        """Send verified updates to ``sink`` (a coroutine taking the update JSON; ValueError = bad)."""
        self._sink = sink

    def detach(self) -> None:
        self._sink = None

    def verify(self, given: str | None) -> bool:
        """Constant-time check of the header, compared as the bytes that were sent."""
        # A non-UTF-8 byte in the header reaches us as a lone surrogate (aiohttp decodes with
        # surrogateescape); "surrogatepass" encodes any str, so it is a mismatch, never an exception.
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self._secret)

    async def handle(self, request: web.Request) -> web.Response:
        if not self.verify(request.headers.get(SECRET_HEADER)):
            request.app[SECURITY_LOG].warning(
                "telegram_secret_refused", "telegram webhook call without the right secret",
                source=caller_address(request), header_present=SECRET_HEADER in request.headers,
            )
            return web.Response(status=403, text="Forbidden")
        sink = self._sink
        if sink is None:
            return web.Response(status=503, text="Bot not started")
        try:
            data = load_json(await read_body(request, MAX_UPDATE_BYTES), max_depth=MAX_UPDATE_DEPTH)
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not a Telegram update")
        except BodyRejected as exc:
            log.warning("telegram webhook body rejected", extra={"error": exc.reason})
            return web.Response(status=exc.status, text=f"Bad update: {exc.reason}")
        except ValueError as exc:
            log.warning("telegram webhook body rejected", extra={"error": str(exc)[:200]})
            return web.Response(status=400, text="Bad update")
        try:
            await sink(data)
        except Exception as exc:  # an update the bot cannot read (a date out of range, …): 400, never 500
            log.warning("telegram update not readable", extra={"error_type": type(exc).__name__})
            return web.Response(status=400, text="Bad update")
        return web.Response(status=200)


TELEGRAM_WEBHOOK = web.AppKey("telegram_webhook", TelegramWebhook)


def setup_telegram_webhook(app: web.Application, secret: str | None) -> TelegramWebhook | None:
    """Register ``POST /hooks/telegram`` on ``app`` when ``secret`` is set (webhook mode).

    Call while building the app (routes cannot be added once it runs); ``start_bot(…, app)``
    then finds the returned object under :data:`TELEGRAM_WEBHOOK` and attaches the bot.
    """
    if not secret:
        return None
    hook = TelegramWebhook(secret)
    app[TELEGRAM_WEBHOOK] = hook
    install_security_log(app)
    app.router.add_post(WEBHOOK_PATH, hook.handle)
    return hook
