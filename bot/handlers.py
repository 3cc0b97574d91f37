"""PTB handlers: one per kind of update, each turning it into an Inbound for the engine.

* text and commands → ``Inbound(text=…)`` (``/cmd@BotName`` loses the ``@BotName``);
* button presses → the callback query is answered *first*, then ``Inbound(option=data)``;
  the engine re-checks every value, so a stale or repeated button does no harm;
* a shared contact → ``Inbound(contact_phone=…)`` only when it is the sender's own
  contact (``contact.user_id == from.id``), else a short refusal;
* ``my_chat_member`` → blocked / unblocked the bot (reachability for the outbox);
* anything else (stickers, photos…) → a hint that only text and buttons are read.

The refusal, the hint and the failure apology are catalogue texts (:mod:`core.dialog.messages`).

Updates are processed concurrently across users but strictly in arrival order per user
(:class:`KeyedSequencer`), so one user's slow payment step never delays another user.
Only private chats are served.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Hashable
from types import TracebackType
from typing import Protocol

from telegram import Message, Update, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.delivery import ChatUnreachable, ReplyDelivery
from bot.reachability import set_telegram_reachable
from bot.render import clear_reply_keyboard
from core import i18n
from core.dialog.messages import say
from core.dialog.types import Inbound, Reply
from core.runtime import Runtime
from core.services.booking.language import stored_language

log = logging.getLogger(__name__)

ENGINE_TIMEOUT_S = 30.0
_COMMAND_AT = re.compile(r"^(/[A-Za-z0-9_]+)@[A-Za-z0-9_]+")


class DialogEngine(Protocol):
    """What the adapter needs from core.dialog.engine.DialogEngine."""

    async def handle(self, inbound: Inbound) -> list[Reply]: ...


class KeyedSequencer:
    """Runs work for the same key one at a time, in the order :meth:`reserve` was called.

    ``reserve`` is synchronous so the place in line is taken the moment an update is seen,
    even if the handler then awaits something (answering a callback query) first.
    """

    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Future[None]] = {}

    def reserve(self, key: Hashable) -> _Turn:
        loop = asyncio.get_running_loop()
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = loop.create_future()
        self._tails[key] = mine
        return _Turn(self, key, previous, mine)

    def busy(self) -> int:
        return len(self._tails)


class _Turn:
    def __init__(
        self,
        owner: KeyedSequencer,
        key: Hashable,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ) -> None:
        self._owner, self._key, self._previous, self._mine = owner, key, previous, mine

    async def __aenter__(self) -> None:
        if self._previous is None or self._previous.done():
            return
        try:
            await asyncio.shield(self._previous)
        except asyncio.CancelledError:
            self.abandon()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def abandon(self) -> None:
        """Give the place up without running: only once the one before is done, so order holds."""
        if self._previous is None or self._previous.done():
            self.release()
        else:
            self._previous.add_done_callback(lambda _f: self.release())

    def release(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)
        if self._owner._tails.get(self._key) is self._mine:
            del self._owner._tails[self._key]


def _private(message: Message | None) -> bool:
    return message is not None and message.chat.type == ChatType.PRIVATE


def _inbound(user: User, chat_id: int, **fields: str) -> Inbound:
    """What a Telegram user did, for the engine."""
    extras = _extras(user, chat_id)
    return Inbound("telegram", str(user.id), display_name=user.full_name, extras=extras, **fields)


def _extras(user: User, chat_id: int) -> dict[str, str]:
    extras = {"chat_id": str(chat_id)}
    if user.username:
        extras["username"] = user.username
    if user.language_code:
        extras["language_code"] = user.language_code
    return extras


def command_text(text: str) -> str:
    """``/book@SmilingStepsBot 12`` → ``/book 12`` (the engine sees plain commands)."""
    return _COMMAND_AT.sub(r"\1", text.strip(), count=1)


class TelegramHandlers:
    """Holds the engine and the reply delivery; registers the handlers on an Application."""

    def __init__(
        self,
        engine: DialogEngine,
        delivery: ReplyDelivery,
        runtime: Runtime,
        *,
        engine_timeout: float = ENGINE_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.delivery = delivery
        self.runtime = runtime
        self.engine_timeout = engine_timeout
        self.sequencer = KeyedSequencer()

    def register(self, application: Application) -> None:
        private_message = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        application.add_handler(MessageHandler(private_message & filters.COMMAND, self.on_command))
        application.add_handler(
            MessageHandler(private_message & filters.TEXT & ~filters.COMMAND, self.on_text)
        )
        application.add_handler(MessageHandler(private_message & filters.CONTACT, self.on_contact))
        application.add_handler(CallbackQueryHandler(self.on_button))
        application.add_handler(ChatMemberHandler(self.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
        application.add_handler(
            MessageHandler(
                private_message & ~filters.TEXT & ~filters.CONTACT & ~filters.StatusUpdate.ALL, self.on_other
            )
        )
        application.add_error_handler(self.on_error)

    # -- handlers -----------------------------------------------------------------------------
    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start, /book, /sessions, /pay, /cancel, /help, /today, /upcoming … → the engine."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.text is None:
            return
        async with self.sequencer.reserve(user.id):
            inbound = Inbound(
                "telegram",
                str(user.id),
                text=command_text(message.text),
                display_name=user.full_name,
                extras=_extras(user, message.chat.id),
            )
            await self._converse(inbound, message.chat.id)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Typed text (a reply-keyboard tap arrives as text too) → the engine."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.text is None:
            return
        async with self.sequencer.reserve(user.id):
            await self._converse(_inbound(user, message.chat.id, text=message.text), message.chat.id)

    async def on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A shared contact: only the sender's own number is accepted."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or message.contact is None:
            return
        async with self.sequencer.reserve(user.id):
            contact = message.contact
            if contact.user_id != user.id:
                log.info("telegram contact of someone else refused", extra={"telegram_user": user.id})
                lang = await self._language(user)
                await self._say(message.chat.id, say("tg_own_number_only", lang=lang), lang)
                return
            inbound = _inbound(user, message.chat.id, contact_phone=contact.phone_number)
            await self._converse(inbound, message.chat.id)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An inline button: answer the query at once, then let the engine decide."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        turn = self.sequencer.reserve(user.id)  # our place in line, before any await
        try:
            try:
                await query.answer()
            except TelegramError as exc:  # too old / already answered: the press still counts
                log.info(
                    "callback query answer failed", extra={"telegram_user": user.id, "error": exc.message}
                )
            message = query.message
            if not query.data or (message is not None and message.chat.type != ChatType.PRIVATE):
                return
            chat_id = message.chat.id if message is not None else user.id
            pressed = message.message_id if isinstance(message, Message) else None
            async with turn:
                extras = _extras(user, chat_id)
                if pressed is not None:
                    extras["message_id"] = str(pressed)
                inbound = Inbound(
                    "telegram", str(user.id), option=query.data, display_name=user.full_name, extras=extras
                )
                await self._converse(inbound, chat_id, pressed_message_id=pressed)
        finally:
            turn.abandon()  # no-op after a normal turn; never leaves the user's line blocked

    async def on_my_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The user blocked (kicked) or restarted the bot in their private chat."""
        change = update.my_chat_member
        if change is None or change.chat.type != ChatType.PRIVATE:
            return
        status = change.new_chat_member.status
        if status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
            await set_telegram_reachable(self.runtime, change.chat.id, reachable=False)
        elif status == ChatMemberStatus.MEMBER:
            await set_telegram_reachable(self.runtime, change.chat.id, reachable=True)

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, voice notes…: say what the bot understands."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        async with self.sequencer.reserve(user.id):
            lang = await self._language(user)
            await self._say(message.chat.id, say("tg_text_only", lang=lang), lang)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram update failed", exc_info=context.error)

    # -- internals ------------------------------------------------------------------------------
    async def _converse(
        self, inbound: Inbound, chat_id: int, *, pressed_message_id: int | None = None
    ) -> None:
        try:
            replies = await asyncio.wait_for(self.engine.handle(inbound), self.engine_timeout)
        except Exception:
            log.exception("dialog engine failed", extra={"telegram_user": inbound.user_key})
            lang = i18n.from_telegram(inbound.extras.get("language_code")) or i18n.DEFAULT
            replies = [Reply(say("error", lang=lang), lang=lang)]
        else:
            # The phone keyboard must not outlive the phone step, even one the engine no longer
            # remembers (it expired): a typed number would otherwise leave the keyboard up.
            replies = clear_reply_keyboard(replies, can_edit=pressed_message_id is not None)
        await self.delivery.deliver(chat_id, replies, pressed_message_id=pressed_message_id)

    async def _say(self, chat_id: int, text: str, lang: str) -> None:
        await self.delivery.deliver(chat_id, [Reply(text, lang=lang)])

    async def _language(self, user: User) -> str:
        """For the few words said outside the engine: the stored choice, else Telegram's."""
        stored = await stored_language(self.runtime, "telegram", str(user.id))
        return stored or i18n.from_telegram(user.language_code) or i18n.DEFAULT


__all__ = ["ChatUnreachable", "DialogEngine", "KeyedSequencer", "TelegramHandlers", "command_text"]
