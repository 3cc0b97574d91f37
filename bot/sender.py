"""The Telegram channel's Sender for the outbox dispatcher (python-telegram-bot v22).

Errors: Forbidden (the user blocked the bot) and "chat not found" are permanent and mark
the person unreachable, so the dispatcher falls back to SMS; other BadRequests (e.g. bad
HTML) are permanent; RetryAfter (429) waits as long as Telegram asks; NetworkError and
TimedOut are retried.
"""

from __future__ import annotations

import logging
import warnings
from datetime import timedelta

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from core.config import Settings
from core.services.notifications.outbox_types import Button, RenderedMessage, SendResult

log = logging.getLogger(__name__)

_UNREACHABLE_HINTS = ("chat not found", "user not found", "bot was blocked", "user is deactivated")


def _keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    row = [InlineKeyboardButton(b.label, callback_data=b.callback_data) for b in buttons]
    return InlineKeyboardMarkup([row])


def _retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int form is deprecated
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


SEND_POOL_SIZE = 10  # the outbox dispatcher's default concurrency


class TelegramSender:
    """Sends rendered HTML messages (with inline buttons) through a ``telegram.Bot``.

    Pass the PTB Application's bot (``application.bot``) to share its connection pool and
    rate limiter, or build one from settings with :meth:`from_settings`.
    """

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramSender | None:
        """A standalone Bot for TELEGRAM_BOT_TOKEN / TELEGRAM_API_BASE_URL, or None without a token."""
        if not settings.telegram_bot_token:
            return None
        # PTB's default pool is ONE connection (1 s pool timeout): the dispatcher's concurrent
        # sends (10) would time out waiting for it and be retried seconds later for nothing.
        request = HTTPXRequest(connection_pool_size=SEND_POOL_SIZE)
        return cls(Bot(settings.telegram_bot_token, base_url=settings.telegram_api_base_url, request=request))

    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        try:
            chat_id = int(recipient)
        except ValueError:
            return SendResult.give_up("not a Telegram chat id")
        try:
            sent = await self.bot.send_message(
                chat_id=chat_id,
                text=message.text,
                parse_mode=ParseMode.HTML,
                reply_markup=_keyboard(message.buttons),
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except Forbidden as exc:
            return SendResult.give_up(f"Telegram 403: {exc.message}", unreachable=True)
        except RetryAfter as exc:
            seconds = _retry_after_seconds(exc)
            return SendResult.retry(f"Telegram 429: retry after {seconds:.0f} s", retry_after=seconds)
        except BadRequest as exc:  # subclass of NetworkError: check first
            unreachable = any(hint in exc.message.lower() for hint in _UNREACHABLE_HINTS)
            return SendResult.give_up(f"Telegram 400: {exc.message}", unreachable=unreachable)
        except InvalidToken as exc:
            return SendResult.retry(f"Telegram rejected the bot token: {type(exc).__name__}")
        except NetworkError as exc:  # includes TimedOut
            return SendResult.retry(f"Telegram unreachable: {type(exc).__name__}: {exc.message}")
        except TelegramError as exc:
            return SendResult.retry(f"Telegram error: {type(exc).__name__}: {exc.message}")
        return SendResult.sent(str(sent.message_id))

    async def close(self) -> None:
        """Release the bot's HTTP connections (only for a bot built by :meth:`from_settings`)."""
        await self.bot.shutdown()
