"""Sending and editing chat messages with one error policy, and delivering engine replies.

Policy: a 403 (the user blocked the bot) marks the person unreachable (SMS takes over)
and stops the conversation turn; "message is not modified" is success; an edit of a
message that is gone or too old becomes a new message; 429 is retried by PTB's
AIORateLimiter before it ever reaches here; anything else is logged, never raised into
PTB's update processing.

A button press leaves no keyboard behind (DESIGN §4): the answer either replaces the pressed
message (``edit_previous``) or the pressed message loses its inline keyboard first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, Message, ReplyKeyboardMarkup
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.render import Markup, Outgoing, progress_attempt_id, render_reply
from core.dialog.types import Option, Reply

log = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
EditResult = Literal["edited", "unchanged", "gone", "failed"]


class ChatUnreachable(Exception):
    """The user blocked the bot (Telegram answered 403)."""


class TelegramOut:
    """The bot's outgoing calls for private chats (chat id == user id)."""

    def __init__(self, bot: Bot, on_blocked: Callable[[int], Awaitable[object]]) -> None:
        self.bot = bot
        self._on_blocked = on_blocked

    async def _blocked(self, chat_id: int, exc: Forbidden) -> None:
        log.info("telegram user blocked the bot", extra={"telegram_user": chat_id, "error": exc.message})
        try:
            await self._on_blocked(chat_id)
        except Exception:
            log.exception("could not mark a telegram user unreachable", extra={"telegram_user": chat_id})
        raise ChatUnreachable(str(chat_id)) from None

    async def send(self, chat_id: int, html: str, markup: Markup | None = None) -> Message | None:
        """Send one HTML message; None when Telegram refused it (logged)."""
        try:
            return await self.bot.send_message(
                chat_id, html, parse_mode=ParseMode.HTML, reply_markup=markup, link_preview_options=NO_PREVIEW
            )
        except Forbidden as exc:
            await self._blocked(chat_id, exc)
        except TelegramError as exc:
            log.error("telegram send failed", extra={"telegram_user": chat_id, "error": repr(exc)})
        return None

    async def edit(
        self, chat_id: int, message_id: int, html: str, markup: InlineKeyboardMarkup | None = None
    ) -> EditResult:
        """Replace a bot message's text and inline keyboard (None removes the keyboard)."""
        return await self._edited(chat_id, self.bot.edit_message_text(
            html,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
            link_preview_options=NO_PREVIEW,
        ))

    async def remove_buttons(self, chat_id: int, message_id: int) -> EditResult:
        """Take the inline keyboard off a bot message, keeping its text."""
        call = self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id, reply_markup=None)
        return await self._edited(chat_id, call)

    async def _edited(self, chat_id: int, call: Awaitable[object]) -> EditResult:
        try:
            await call
            return "edited"
        except Forbidden as exc:
            await self._blocked(chat_id, exc)
        except BadRequest as exc:
            text = exc.message.lower()
            if "not modified" in text:
                return "unchanged"
            if "not found" in text or "can't be edited" in text:
                return "gone"
            log.error("telegram edit refused", extra={"telegram_user": chat_id, "error": exc.message})
        except TelegramError as exc:
            log.error("telegram edit failed", extra={"telegram_user": chat_id, "error": repr(exc)})
        return "failed"

    async def typing(self, chat_id: int) -> None:
        """Show "typing…" in the chat for a few seconds (best effort)."""
        try:
            await self.bot.send_chat_action(chat_id, ChatAction.TYPING)
        except Forbidden as exc:
            await self._blocked(chat_id, exc)
        except TelegramError as exc:
            log.debug("chat action failed", extra={"telegram_user": chat_id, "error": repr(exc)})

    async def delete(self, chat_id: int, message_id: int) -> bool:
        try:
            return bool(await self.bot.delete_message(chat_id, message_id))
        except Forbidden as exc:
            await self._blocked(chat_id, exc)
        except TelegramError as exc:
            log.debug("delete failed", extra={"telegram_user": chat_id, "error": repr(exc)})
        return False


class ProgressRegistry(Protocol):
    """Where payment-progress messages are reported (implemented by bot.progress)."""

    def track(
        self,
        attempt_id: int,
        chat_id: int,
        message_id: int,
        base_text: str,
        options: Sequence[Option],
        lang: str,
    ) -> None: ...

    def pressed(self, chat_id: int, message_id: int) -> None: ...


def _replaces_pressed(replies: Sequence[Reply]) -> bool:
    """Whether the first reply is drawn over the pressed message (text and keyboard)."""
    if not replies:
        return False
    items = render_reply(replies[0], can_edit=True)
    return bool(items) and items[0].edit


class ReplyDelivery:
    """Delivers one engine answer (a list of Replies) to one private chat."""

    def __init__(self, out: TelegramOut, progress: ProgressRegistry | None = None) -> None:
        self.out = out
        self.progress = progress

    async def deliver(
        self, chat_id: int, replies: Sequence[Reply], *, pressed_message_id: int | None = None
    ) -> None:
        """Send (or edit, for ``edit_previous`` after a button press) every reply in order.

        Only the first reply may edit the pressed message; a blocked chat stops delivery.
        A pressed message that the answer does not replace loses its inline keyboard first
        (DESIGN §4: a used keyboard is removed), so old buttons do not linger.
        """
        editable = pressed_message_id
        try:
            if pressed_message_id is not None and not _replaces_pressed(replies):
                await self.out.remove_buttons(chat_id, pressed_message_id)
                if self.progress is not None:
                    self.progress.pressed(chat_id, pressed_message_id)
            for reply in replies:
                for item in render_reply(reply, can_edit=editable is not None):
                    message_id = await self._one(chat_id, item, editable)
                    if item.edit:
                        editable = None
                    attempt_id = progress_attempt_id(item.tag)
                    if attempt_id is not None and message_id is not None and self.progress is not None:
                        self.progress.track(
                            attempt_id, chat_id, message_id, item.plain, item.options, reply.lang
                        )
        except ChatUnreachable:
            return

    async def _one(self, chat_id: int, item: Outgoing, editable: int | None) -> int | None:
        if item.edit and editable is not None and not isinstance(item.markup, ReplyKeyboardMarkup):
            inline = item.markup if isinstance(item.markup, InlineKeyboardMarkup) else None
            result = await self.out.edit(chat_id, editable, item.html, inline)
            if result in ("edited", "unchanged"):
                return editable
            # gone / too old / refused: say it in a new message instead
        message = await self.out.send(chat_id, item.html, item.markup)
        return message.message_id if message else None
