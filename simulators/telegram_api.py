"""A local stand-in for the Telegram Bot API (the part of it Smiling Steps uses).

Self-contained on purpose: it imports nothing from the product, so it stays honest to
the wire protocol.

Bot API (relative to wherever the app is mounted; standalone at the root, in local mode
the service mounts it under ``/sim/telegram`` and PTB's ``base_url`` is then
``http://127.0.0.1:PORT/sim/telegram/bot``)::

    GET|POST /bot<token>/<method>

Bodies may be JSON, ``application/x-www-form-urlencoded`` or ``multipart/form-data``
(PTB posts forms whose nested values are JSON strings), plus query-string parameters,
like the real API. Method names are case-insensitive. Answers are ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error_code": N, "description": "..."}`` with the
real API's wording. Methods: getMe, getUpdates (long polling; ``offset`` confirms
updates; a newer call ends an older one with 409), setWebhook, deleteWebhook,
getWebhookInfo, setMyCommands, getMyCommands, deleteMyCommands, sendMessage,
editMessageText, editMessageReplyMarkup, answerCallbackQuery, sendChatAction,
deleteMessage. ``parse_mode=HTML`` is parsed like Telegram does (supported tags only,
``&lt; &gt; &amp; &quot;`` and numeric character references) into plain ``text`` plus
``entities``; bad markup is a 400 "can't parse entities".

With a webhook set, updates are POSTed to it (JSON, header
``X-Telegram-Bot-Api-Secret-Token`` when a secret was given) one at a time, in order,
retried with back-off until the receiver answers 2xx; getUpdates then answers 409.
Differences from Telegram (documented, deliberate): http:// webhook URLs on any port are
accepted unless ``require_https=True``; deliveries are sequential (max_connections 1);
back-off is short (50 ms doubling to 1 s); callback queries do not expire.

Driver API (not Telegram's; for tests and the browser "phone" page), as Python methods
on :class:`TelegramApiSimulator` and as JSON over HTTP:

* ``GET /chat`` — the browser "phone": chat with the bot as any user (simulators/telegram_chat.py)
* ``POST /driver/users`` ``{"id": 42, "first_name": "Amina", "phone_number": "2547..."}``;
  ``GET /driver/users`` lists them
* ``POST /driver/users/{id}/text`` ``{"text": "hello"}`` — a typed message
* ``POST /driver/users/{id}/command`` ``{"command": "start", "args": "abc"}``
* ``POST /driver/users/{id}/contact`` ``{"phone_number": "...", "user_id": 42}`` — a shared
  contact card; ``user_id`` defaults to the sender (their own contact), ``null`` or
  another id shares someone else's
* ``POST /driver/users/{id}/tap`` ``{"label": "Share my phone number"}`` — a reply-keyboard
  button (``request_contact`` buttons share the user's own contact)
* ``POST /driver/users/{id}/press`` ``{"message_id": 7, "label": "Approve"}`` (or
  ``"data"``) — an inline button; ``"forge": true`` sends any data, even if no such button
* ``POST /driver/users/{id}/block`` and ``/unblock`` — also sends ``my_chat_member``
* ``GET /driver/chats/{id}/messages`` — every message of the chat (both sides), with
  ``reply_markup``, edit history and ``deleted``
* ``GET /driver/chats/{id}/keyboard`` — the reply keyboard the user currently sees
* ``GET /driver/callback-answers``, ``GET /driver/chat-actions``, ``GET /driver/commands``,
  ``GET /driver/webhook``, ``GET /driver/log?since=SEQ``
* ``GET /driver/events?since=VERSION&timeout=S`` — long poll: answers when anything changed
* ``POST /driver/faults`` ``{"method": "sendMessage", "count": 2, "status": 429,
  "retry_after": 1}`` — the next ``count`` calls fail (429 carries
  ``parameters.retry_after``); ``DELETE /driver/faults`` clears them
* ``POST /driver/reset`` — forget users, chats, updates, webhook, faults and the log
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from simulators.telegram_chat import chat_page

log = logging.getLogger(__name__)

# A token shaped like a real one (<bot id>:<35 characters>); the stand-in's own, not a secret.
SIMULATOR_TOKEN = "7000000001:AAsimulatorLocalBotTokenNotSecret0"
SIMULATOR_BOT_USERNAME = "SmilingStepsSimBot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
MAX_LONG_POLL = 50.0
DEFAULT_ALLOWED = frozenset({"message", "edited_message", "callback_query", "my_chat_member"})
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
BLOCKED = "Forbidden: bot was blocked by the user"


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


class DriverError(ValueError):
    """A driver request that a real phone could not make (no such user, no such button...)."""


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


# -- Telegram's HTML parse mode ----------------------------------------------------------

_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_CHARREF = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ATTR = re.compile(r"""\s*([A-Za-z_-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode_refs(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref in _NAMED:
            return _NAMED[ref]
        number = int(ref[2:], 16) if ref[1] in "xX" else int(ref[1:])
        return chr(number) if 0 < number <= 0x10FFFF else m.group(0)

    return _CHARREF.sub(one, text)


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML: plain text and entities (UTF-16 offsets), or ValueError with its wording."""
    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, int, dict[str, str]]] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(source)

    def emit(piece: str) -> None:
        nonlocal pos16
        out.append(piece)
        pos16 += _utf16_len(piece)

    while i < n:
        char = source[i]
        if char == "&":
            m = _CHARREF.match(source, i)
            if m:
                emit(_decode_refs(m.group(0)))
                i = m.end()
            else:
                emit("&")
                i += 1
            continue
        if char != "<":
            j = i
            while j < n and source[j] not in "<&":
                j += 1
            emit(source[i:j])
            i = j
            continue
        offset = len(source[:i].encode())
        if source.startswith("</", i):
            end = source.find(">", i)
            if end < 0:
                raise ValueError(f"Unclosed end tag at byte offset {offset}")
            name = source[i + 2 : end].strip().lower()
            if not stack:
                raise ValueError(f"Unexpected end tag at byte offset {offset}")
            tag, start, attrs = stack.pop()
            if name and name != tag:
                raise ValueError(
                    f'Unmatched end tag at byte offset {offset}, expected "</{tag}>", found "</{name}>"'
                )
            entity = _entity(tag, attrs, start, pos16 - start, stack)
            if entity:
                entities.append(entity)
            i = end + 1
            continue
        j = i + 1
        while j < n and not source[j].isspace() and source[j] not in ">/":
            j += 1
        name = source[i + 1 : j].lower()
        if name not in _TAG_ENTITY:
            raise ValueError(f'Unsupported start tag "{name}" at byte offset {offset}')
        attrs: dict[str, str] = {}
        while True:
            if j >= n:
                raise ValueError(f'Unclosed start tag "{name}" at byte offset {offset}')
            if source[j] == ">":
                break
            m = _ATTR.match(source, j)
            if not m or m.end() == j:
                if source[j] in " \t\r\n/":
                    j += 1
                    continue
                raise ValueError(f'Empty attribute name in the tag "{name}" at byte offset {offset}')
            value = next((g for g in m.groups()[1:] if g is not None), "")
            attrs[m.group(1).lower()] = _decode_refs(value)
            j = m.end()
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise ValueError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
        stack.append((name, pos16, attrs))
        i = j + 1
    if stack:
        raise ValueError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _entity(
    tag: str, attrs: dict[str, str], start: int, length: int, outer: list[tuple[str, int, dict[str, str]]]
) -> dict[str, Any] | None:
    if length <= 0:
        return None
    kind = _TAG_ENTITY[tag]
    entity: dict[str, Any] = {"type": kind, "offset": start, "length": length}
    if tag == "a":
        if not attrs.get("href"):
            return None
        entity["url"] = attrs["href"]
    elif tag == "code" and outer and outer[-1][0] == "pre":
        language = attrs.get("class", "")
        if language.startswith("language-"):
            outer[-1][2]["language"] = language.removeprefix("language-")
        return None
    elif tag == "pre" and attrs.get("language"):
        entity["language"] = attrs["language"]
    elif tag == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif tag == "tg-emoji":
        entity["custom_emoji_id"] = attrs.get("emoji-id", "")
    return entity


# -- state ------------------------------------------------------------------------------


@dataclass
class SimUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    phone_number: str | None = None
    language_code: str = "en"
    started: bool = False  # a bot may message a user only after the user wrote to it
    blocked: bool = False

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        out["language_code"] = self.language_code
        return out

    def chat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "first_name": self.first_name, "type": "private"}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        return out


@dataclass
class SimMessage:
    """One message in a private chat, from the user or from the bot."""

    message_id: int
    chat_id: int
    from_bot: bool
    date: int
    at: float  # time.monotonic() when sent
    text: str | None = None  # what the user sees (entities applied, markup removed)
    entities: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None  # exactly what the bot sent (HTML before parsing)
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None  # any markup the bot sent (inline or reply keyboard)
    contact: dict[str, Any] | None = None
    other: str | None = None  # e.g. "sticker" for a non-text message
    edit_date: int | None = None
    edited_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier versions, oldest first
    deleted: bool = False

    @property
    def inline_keyboard(self) -> list[list[dict[str, Any]]]:
        return list((self.reply_markup or {}).get("inline_keyboard") or [])

    def buttons(self) -> list[dict[str, Any]]:
        """The inline buttons, row by row, flattened."""
        return [button for row in self.inline_keyboard for button in row]

    def button_labels(self) -> list[str]:
        return [button["text"] for button in self.buttons()]

    def to_api(self, bot: dict[str, Any], user: SimUser) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "from": bot if self.from_bot else user.to_api(),
            "chat": user.chat(),
            "date": self.date,
        }
        if self.edit_date:
            out["edit_date"] = self.edit_date
        if self.text is not None:
            out["text"] = self.text
        if self.entities:
            out["entities"] = self.entities
        if self.contact:
            out["contact"] = self.contact
        if self.other == "sticker":
            out["sticker"] = {
                "file_id": "CAACAgIAAxkBAAEBsimulator",
                "file_unique_id": "AgADsim",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
        if self.reply_markup and "inline_keyboard" in self.reply_markup:  # Telegram echoes inline only
            out["reply_markup"] = {"inline_keyboard": self.reply_markup["inline_keyboard"]}
        return out

    def to_driver(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "chat_id": self.chat_id,
            "from_bot": self.from_bot,
            "date": self.date,
            "text": self.text,
            "entities": self.entities,
            "source": self.source,
            "parse_mode": self.parse_mode,
            "reply_markup": self.reply_markup,
            "contact": self.contact,
            "other": self.other,
            "edit_date": self.edit_date,
            "history": self.history,
            "deleted": self.deleted,
        }


@dataclass
class SimChat:
    user: SimUser
    messages: list[SimMessage] = field(default_factory=list)
    next_message_id: int = 1
    reply_keyboard: dict[str, Any] | None = None  # the ReplyKeyboardMarkup the user currently sees

    def message(self, message_id: int) -> SimMessage | None:
        for message in self.messages:
            if message.message_id == message_id and not message.deleted:
                return message
        return None


@dataclass
class CallbackRecord:
    """A button press and how the bot answered it."""

    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    at: float  # monotonic time of the press
    answered_at: float | None = None
    answer: dict[str, Any] | None = None

    def to_driver(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "data": self.data,
            "answered": self.answered_at is not None,
            "answer_delay": None if self.answered_at is None else round(self.answered_at - self.at, 4),
            "answer": self.answer,
        }


@dataclass
class Fault:
    status: int
    description: str
    remaining: int
    retry_after: int | None = None


@dataclass
class Webhook:
    url: str
    secret_token: str | None
    allowed_updates: frozenset[str] | None
    max_connections: int
    last_error_date: int | None = None
    last_error_message: str | None = None


class TelegramApiSimulator:
    """The stand-in's state: users, chats, updates, webhook, faults; plus the driver methods."""

    def __init__(
        self,
        token: str | None = SIMULATOR_TOKEN,
        *,
        require_https: bool = False,
        bot_username: str = SIMULATOR_BOT_USERNAME,
    ) -> None:
        self.token = token
        self.require_https = require_https
        self.bot_username = bot_username
        bot_id = int(token.split(":", 1)[0]) if token and token.split(":", 1)[0].isdigit() else 7000000001
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Smiling Steps",
            "username": bot_username,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._session: aiohttp.ClientSession | None = None
        self.closing = False
        self._delivery: asyncio.Task[None] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget everything (users, chats, updates, webhook, commands, faults, log)."""
        self.users: dict[int, SimUser] = {}
        self.chats: dict[int, SimChat] = {}
        self.pending: list[dict[str, Any]] = []  # updates not yet confirmed (getUpdates) or delivered
        self.delivered: list[dict[str, Any]] = []  # webhook deliveries: update_id, status, at
        self._next_update_id = 700_000_001
        self.allowed_updates: frozenset[str] = DEFAULT_ALLOWED
        self.webhook: Webhook | None = None
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.callbacks: dict[str, CallbackRecord] = {}
        self.chat_actions: list[dict[str, Any]] = []
        self.faults: dict[str, list[Fault]] = {}
        self.log: list[dict[str, Any]] = []
        self._log_seq = itertools.count(1)
        self._poll_generation = 0
        self.version = 0
        self._changed = asyncio.Event()
        if self._delivery is not None:
            self._delivery.cancel()
            self._delivery = None

    # -- change notification ------------------------------------------------------------
    def _bump(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[], Any], within: float = 3.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every change); return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {within}s")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.25))

    async def wait_changed(self, since: int, within: float) -> int:
        """Wait until ``version`` exceeds ``since`` or ``within`` seconds pass; return ``version``."""
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda: self.version > since, within)
        return self.version

    # -- driver: people ------------------------------------------------------------------
    def add_user(
        self,
        user_id: int,
        first_name: str = "User",
        *,
        last_name: str | None = None,
        username: str | None = None,
        phone_number: str | None = None,
        language_code: str = "en",
        started: bool = False,
    ) -> SimUser:
        """Create (or update) a Telegram user with a private chat with the bot."""
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = SimUser(user_id, first_name)
            self.chats[user_id] = SimChat(user)
        user.first_name, user.last_name, user.username = first_name, last_name, username
        user.language_code = language_code
        if phone_number is not None:
            user.phone_number = phone_number
        user.started = user.started or started
        self._bump()
        return user

    def _user(self, user_id: int) -> SimUser:
        try:
            return self.users[user_id]
        except KeyError:
            raise DriverError(f"no user {user_id}; add_user() first") from None

    def send_text(self, user_id: int, text: str) -> SimMessage:
        """The user types ``text`` (a command if it starts with "/")."""
        entities = []
        command = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?", text)
        if command:
            entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command.group(0))})
        return self._user_message(user_id, text=text, entities=entities)

    def send_command(self, user_id: int, command: str, args: str = "") -> SimMessage:
        """The user sends ``/command args``."""
        return self.send_text(user_id, f"/{command.lstrip('/')}" + (f" {args}" if args else ""))

    def share_contact(
        self,
        user_id: int,
        phone_number: str | None = None,
        *,
        contact_user_id: int | None | str = "self",
        first_name: str | None = None,
    ) -> SimMessage:
        """The user shares a contact card: their own by default (``contact_user_id="self"``).

        ``contact_user_id`` another id or None shares someone else's contact (as from the
        address book); ``phone_number`` defaults to the user's own number.
        """
        user = self._user(user_id)
        phone = phone_number or user.phone_number
        if not phone:
            raise DriverError(f"user {user_id} has no phone_number to share")
        contact: dict[str, Any] = {"phone_number": phone, "first_name": first_name or user.first_name}
        owner = user_id if contact_user_id == "self" else contact_user_id
        if owner is not None:
            contact["user_id"] = int(owner)
        return self._user_message(user_id, contact=contact)

    def send_sticker(self, user_id: int) -> SimMessage:
        """The user sends something that is not text (a sticker)."""
        return self._user_message(user_id, other="sticker")

    def tap(self, user_id: int, label: str) -> SimMessage:
        """The user taps a button of the reply keyboard they currently see."""
        chat = self.chats[self._user(user_id).id]
        keyboard = chat.reply_keyboard
        buttons = [b for row in (keyboard or {}).get("keyboard", []) for b in row]
        button = next((b for b in buttons if (b if isinstance(b, str) else b.get("text")) == label), None)
        if button is None:
            raise DriverError(f"no reply-keyboard button {label!r}; visible: {self.keyboard_labels(user_id)}")
        if keyboard and keyboard.get("one_time_keyboard"):
            chat.reply_keyboard = None
        if isinstance(button, dict) and button.get("request_contact"):
            return self.share_contact(user_id)
        return self.send_text(user_id, label)

    def keyboard_labels(self, user_id: int) -> list[str]:
        """Labels of the reply keyboard the user currently sees (empty if none)."""
        keyboard = self.chats[self._user(user_id).id].reply_keyboard or {}
        return [b if isinstance(b, str) else b["text"] for row in keyboard.get("keyboard", []) for b in row]

    def press(
        self,
        user_id: int,
        message_id: int | None = None,
        *,
        label: str | None = None,
        data: str | None = None,
        forge: bool = False,
    ) -> CallbackRecord:
        """The user presses an inline button (by label or data) of a bot message.

        Without ``message_id`` the newest bot message offering that button is used. The
        button must be on the message as it is now, unless ``forge`` (any data at all).
        """
        user = self._user(user_id)
        chat = self.chats[user.id]
        if label is None and data is None:
            raise DriverError("press() needs a label or data")
        candidates = [m for m in reversed(chat.messages) if m.from_bot and not m.deleted]
        if message_id is not None:
            candidates = [m for m in candidates if m.message_id == message_id]
            if not candidates:
                raise DriverError(f"no bot message {message_id} in chat {user_id}")
        for message in candidates:
            for button in message.buttons():
                if "callback_data" not in button:
                    continue
                if (label is None or button["text"] == label) and (
                    data is None or button["callback_data"] == data
                ):
                    return self._callback(user, message, button["callback_data"])
        if forge and data is not None and candidates:
            return self._callback(user, candidates[0], data)
        raise DriverError(f"no inline button label={label!r} data={data!r} in chat {user_id}")

    def block(self, user_id: int) -> None:
        """The user blocks the bot: sends now fail with 403; the bot gets my_chat_member."""
        user = self._user(user_id)
        if not user.blocked:
            user.blocked = True
            self._member_update(user, "member", "kicked")

    def unblock(self, user_id: int) -> None:
        user = self._user(user_id)
        if user.blocked:
            user.blocked = False
            self._member_update(user, "kicked", "member")

    def _user_message(self, user_id: int, **fields: Any) -> SimMessage:
        user = self._user(user_id)
        if user.blocked:  # writing to a blocked bot restarts it, like the "Restart" button
            self.unblock(user_id)
        user.started = True
        chat = self.chats[user.id]
        message = SimMessage(
            chat.next_message_id, user.id, False, int(time.time()), time.monotonic(), **fields
        )
        chat.next_message_id += 1
        chat.messages.append(message)
        self._enqueue("message", message.to_api(self.bot_user, user))
        return message

    def _callback(self, user: SimUser, message: SimMessage, data: str) -> CallbackRecord:
        query_id = str(secrets.randbelow(9 * 10**18) + 10**18)
        record = CallbackRecord(
            query_id, user.id, message.chat_id, message.message_id, data, time.monotonic()
        )
        self.callbacks[query_id] = record
        self._enqueue(
            "callback_query",
            {
                "id": query_id,
                "from": user.to_api(),
                "message": message.to_api(self.bot_user, user),
                "chat_instance": str(-(user.id * 7919 % 10**18)),
                "data": data,
            },
        )
        return record

    def _member_update(self, user: SimUser, old: str, new: str) -> None:
        member: dict[str, Any] = {
            "user": {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")}
        }
        self._enqueue(
            "my_chat_member",
            {
                "chat": user.chat(),
                "from": user.to_api(),
                "date": int(time.time()),
                "old_chat_member": {
                    **member,
                    "status": old,
                    **({"until_date": 0} if old == "kicked" else {}),
                },
                "new_chat_member": {
                    **member,
                    "status": new,
                    **({"until_date": 0} if new == "kicked" else {}),
                },
            },
        )

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> None:
        allowed = self.webhook.allowed_updates if self.webhook and self.webhook.allowed_updates else None
        if kind not in (allowed or self.allowed_updates):
            self._bump()
            return
        self.pending.append({"update_id": self._next_update_id, kind: payload})
        self._next_update_id += 1
        self._bump()

    # -- driver: reading -------------------------------------------------------------------
    def messages(
        self, chat_id: int, *, from_bot: bool | None = None, include_deleted: bool = False
    ) -> list[SimMessage]:
        chat = self.chats.get(chat_id)
        if chat is None:
            return []
        return [
            m
            for m in chat.messages
            if (from_bot is None or m.from_bot == from_bot) and (include_deleted or not m.deleted)
        ]

    def bot_messages(self, chat_id: int) -> list[SimMessage]:
        """What the bot sent to this chat (current versions, deleted ones left out)."""
        return self.messages(chat_id, from_bot=True)

    def last_bot_message(self, chat_id: int) -> SimMessage | None:
        sent = self.bot_messages(chat_id)
        return sent[-1] if sent else None

    def message(self, chat_id: int, message_id: int) -> SimMessage | None:
        chat = self.chats.get(chat_id)
        return chat.message(message_id) if chat else None

    def callback_answers(self) -> list[CallbackRecord]:
        """Every button press, answered or not, in press order."""
        return sorted(self.callbacks.values(), key=lambda r: r.at)

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """The API log (optionally one method): seq, at, method, params, status, description."""
        return [e for e in self.log if method is None or e["method"].lower() == method.lower()]

    def my_commands(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, str]]:
        return list(self.commands.get((_scope_key(scope), language_code), []))

    async def wait_bot_message(
        self,
        chat_id: int,
        predicate: Callable[[SimMessage], bool] | None = None,
        within: float = 3.0,
        *,
        after: int = 0,
    ) -> SimMessage:
        """Wait for a bot message in ``chat_id`` (id > ``after``) matching ``predicate``."""

        def find() -> SimMessage | None:
            for m in self.bot_messages(chat_id):
                if m.message_id > after and (predicate is None or predicate(m)):
                    return m
            return None

        return await self.wait_for(find, within)

    # -- faults -----------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: int = 1,
        description: str | None = None,
    ) -> None:
        """The next ``count`` calls of ``method`` ("*" for any) fail with ``status``."""
        if status == 429:
            fault = Fault(
                429, description or f"Too Many Requests: retry after {retry_after}", count, retry_after
            )
        else:
            fault = Fault(
                status,
                description
                or {
                    400: "Bad Request: simulated",
                    403: BLOCKED,
                    500: "Internal Server Error",
                    502: "Bad Gateway",
                }.get(status, "Error"),
                count,
            )
        self.faults.setdefault(method.lower(), []).append(fault)
        self._bump()

    def clear_faults(self) -> None:
        self.faults.clear()
        self._bump()

    def _take_fault(self, method: str) -> ApiError | None:
        for key in (method.lower(), "*"):
            queue = self.faults.get(key) or []
            while queue and queue[0].remaining <= 0:
                queue.pop(0)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                params = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
                return ApiError(fault.status, fault.description, params)
        return None

    # -- the Bot API --------------------------------------------------------------------------
    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Run one Bot API method; returns the ``result`` or raises ApiError."""
        name = method.lower()
        handler = _METHODS.get(name)
        if handler is None:
            raise ApiError(404, "Not Found")
        fault = self._take_fault(name)
        if fault:
            raise fault
        return await handler(self, params)

    def _record(self, method: str, params: dict[str, Any], status: int, description: str | None) -> None:
        self.log.append(
            {
                "seq": next(self._log_seq),
                "at": time.monotonic(),
                "method": method,
                "params": params,
                "status": status,
                "description": description,
            }
        )
        self._bump()

    def _chat_for_send(self, params: dict[str, Any]) -> SimChat:
        chat_id = _int_param(params, "chat_id", "chat_id is empty")
        chat = self.chats.get(chat_id)
        if chat is None:
            raise _bad("chat not found")
        if chat.user.blocked:
            raise ApiError(403, BLOCKED)
        if not chat.user.started:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return chat

    def _bot_message_for_edit(self, params: dict[str, Any], missing: str) -> tuple[SimChat, SimMessage]:
        if "inline_message_id" in params:
            raise _bad("inline messages are not supported by the simulator")
        chat = self._chat_for_send(params)
        message_id = _int_param(params, "message_id", "message identifier is not specified")
        message = chat.message(message_id)
        if message is None:
            raise _bad(missing)
        if not message.from_bot:
            raise _bad("message can't be edited")
        return chat, message

    def _edit(
        self,
        chat: SimChat,
        message: SimMessage,
        text: str,
        entities: list[dict[str, Any]],
        source: str | None,
        parse_mode: str | None,
        markup: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if (text, entities, _norm_markup(markup)) == (
            message.text,
            message.entities,
            _norm_markup(_inline_only(message.reply_markup)),
        ):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        message.history.append(
            {
                "text": message.text,
                "source": message.source,
                "reply_markup": message.reply_markup,
                "at": message.edited_at or message.at,
            }
        )
        message.text, message.entities, message.source, message.parse_mode = (
            text,
            entities,
            source,
            parse_mode,
        )
        message.reply_markup = markup
        message.edit_date = int(time.time())
        message.edited_at = time.monotonic()
        self._bump()
        return message.to_api(self.bot_user, chat.user)

    # -- webhook delivery ----------------------------------------------------------------
    def _start_delivery(self) -> None:
        if self._delivery is None or self._delivery.done():
            self._delivery = asyncio.get_running_loop().create_task(
                self._deliver_loop(), name="tg-sim-webhook"
            )

    async def _deliver_loop(self) -> None:
        backoff = 0.05
        while self.webhook is not None:
            if not self.pending:
                event = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), 1.0)
                continue
            hook = self.webhook
            update = self.pending[0]
            headers = {"Content-Type": "application/json"}
            if hook.secret_token:
                headers[SECRET_HEADER] = hook.secret_token
            status: int | str
            try:
                if self._session is None or self._session.closed:
                    self._session = aiohttp.ClientSession()
                async with self._session.post(
                    hook.url,
                    data=json.dumps(update),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    status = response.status
                    reason = response.reason or ""
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                status, reason = "error", type(exc).__name__
            self.delivered.append(
                {"update_id": update["update_id"], "status": status, "at": time.monotonic()}
            )
            if isinstance(status, int) and 200 <= status < 300:
                if self.pending and self.pending[0] is update:
                    self.pending.pop(0)
                hook.last_error_date, hook.last_error_message, backoff = None, None, 0.05
                self._bump()
                continue
            hook.last_error_date = int(time.time())
            hook.last_error_message = (
                f"Wrong response from the webhook: {status} {reason}"
                if isinstance(status, int)
                else f"Connection error: {reason}"
            )
            self._bump()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def close(self) -> None:
        self.closing = True
        self.webhook = None
        if self._delivery is not None:
            self._delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._delivery
            self._delivery = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._changed.set()


# -- parameter helpers -----------------------------------------------------------------

_JSON_FIELDS = (
    "reply_markup",
    "allowed_updates",
    "commands",
    "scope",
    "entities",
    "reply_parameters",
    "link_preview_options",
)


def _scope_key(scope: dict[str, Any] | None) -> str:
    return json.dumps(scope or {"type": "default"}, sort_keys=True)


def _int_param(params: dict[str, Any], name: str, missing: str) -> int:
    value = params.get(name)
    if value is None or value == "":
        raise _bad(missing)
    try:
        return int(value)
    except (TypeError, ValueError):
        if name == "chat_id":
            raise _bad("chat not found") from None
        raise _bad(f"invalid {name} specified") from None


def _bool_param(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def _norm_markup(markup: dict[str, Any] | None) -> Any:
    if not markup or not markup.get("inline_keyboard"):
        return None
    return json.dumps(markup, sort_keys=True)


def _inline_only(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    return markup if markup and "inline_keyboard" in markup else None


def _check_markup(markup: Any, *, inline_only: bool = False) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
        for button in (b for row in rows for b in row):
            if not isinstance(button, dict) or not button.get("text"):
                raise _bad(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise _bad("BUTTON_DATA_INVALID")
        return markup
    if inline_only:
        raise _bad("inline keyboard expected")
    if "keyboard" in markup or markup.get("remove_keyboard") or "force_reply" in markup:
        return markup
    raise _bad("can't parse reply keyboard markup JSON object")


def _text_and_entities(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None, str | None]:
    source = params.get("text")
    if source is None or str(source) == "":
        raise _bad("message text is empty")
    source = str(source)
    mode = params.get("parse_mode")
    if mode and str(mode).lower() == "html":
        try:
            text, entities = parse_html(source)
        except ValueError as exc:
            raise _bad(f"can't parse entities: {exc}") from None
    elif mode and str(mode).lower() not in ("markdown", "markdownv2"):
        raise _bad(f"unsupported parse_mode {mode}")
    else:  # Markdown modes are not parsed by the simulator: shown as sent
        text, entities = source, list(params.get("entities") or [])
    if not text.strip():
        raise _bad("message text is empty")
    if len(text) > MAX_TEXT:
        raise _bad("message is too long")
    return text, entities, source, (str(mode) if mode else None)


# -- methods ------------------------------------------------------------------------------


async def _get_me(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    return sim.bot_user


async def _get_updates(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    if sim.webhook is not None:
        raise ApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first",
        )
    offset = int(params.get("offset") or 0)
    limit = max(1, min(int(params.get("limit") or 100), 100))
    timeout = max(0.0, min(float(params.get("timeout") or 0), MAX_LONG_POLL))
    allowed = params.get("allowed_updates")
    if isinstance(allowed, list):
        sim.allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED
    if offset > 0:
        sim.pending = [u for u in sim.pending if u["update_id"] >= offset]
    elif offset < 0:
        sim.pending = sim.pending[offset:]
    sim._poll_generation += 1
    generation = sim._poll_generation
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not sim.pending and loop.time() < deadline and not sim.closing:
        event = sim._changed
        with contextlib.suppress(TimeoutError):  # short slices: a newer poll ends this one promptly
            await asyncio.wait_for(event.wait(), min(0.25, max(0.0, deadline - loop.time())))
        if sim._poll_generation != generation:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        if sim.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
    return sim.pending[:limit]


async def _set_webhook(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    url = str(params.get("url") or "")
    if not url:
        return await _delete_webhook(sim, params)
    if not re.match(r"https?://[^/\s]+", url):
        raise _bad("bad webhook: Failed to resolve host: Name or service not known")
    if sim.require_https and not url.startswith("https://"):
        raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
    secret = params.get("secret_token")
    if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
        raise _bad("secret token contains unallowed characters")
    allowed = params.get("allowed_updates")
    if _bool_param(params, "drop_pending_updates"):
        sim.pending.clear()
    sim.webhook = Webhook(
        url=url,
        secret_token=str(secret) if secret else None,
        allowed_updates=frozenset(allowed) if isinstance(allowed, list) and allowed else None,
        max_connections=int(params.get("max_connections") or 40),
    )
    sim._bump()
    sim._start_delivery()
    return True


async def _delete_webhook(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    if _bool_param(params, "drop_pending_updates"):
        sim.pending.clear()
    sim.webhook = None
    sim._bump()
    return True


async def _get_webhook_info(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    hook = sim.webhook
    info: dict[str, Any] = {
        "url": hook.url if hook else "",
        "has_custom_certificate": False,
        "pending_update_count": len(sim.pending),
    }
    if hook:
        info["max_connections"] = hook.max_connections
        if hook.allowed_updates:
            info["allowed_updates"] = sorted(hook.allowed_updates)
        if hook.last_error_date:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message
    return info


async def _set_my_commands(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise _bad("can't parse commands JSON object")
    if len(commands) > 100:
        raise _bad("too many commands specified")
    for item in commands:
        if not isinstance(item, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}", str(item.get("command", ""))):
            raise _bad("BOT_COMMAND_INVALID")
        if not 1 <= len(str(item.get("description", "")).strip()) <= 256:
            raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
    scope = params.get("scope")
    if scope is not None and (not isinstance(scope, dict) or "type" not in scope):
        raise _bad("can't parse BotCommandScope JSON object")
    key = (_scope_key(scope), str(params.get("language_code") or ""))
    sim.commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
    sim._bump()
    return True


async def _get_my_commands(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    scope = params.get("scope") if isinstance(params.get("scope"), dict) else None
    return sim.my_commands(scope, str(params.get("language_code") or ""))


async def _delete_my_commands(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    scope = params.get("scope") if isinstance(params.get("scope"), dict) else None
    sim.commands.pop((_scope_key(scope), str(params.get("language_code") or "")), None)
    sim._bump()
    return True


async def _send_message(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    chat = sim._chat_for_send(params)
    text, entities, source, mode = _text_and_entities(params)
    markup = _check_markup(params.get("reply_markup"))
    message = SimMessage(
        chat.next_message_id,
        chat.user.id,
        True,
        int(time.time()),
        time.monotonic(),
        text=text,
        entities=entities,
        source=source,
        parse_mode=mode,
        reply_markup=markup,
    )
    chat.next_message_id += 1
    chat.messages.append(message)
    if markup and "keyboard" in markup:
        chat.reply_keyboard = markup
    elif markup and markup.get("remove_keyboard"):
        chat.reply_keyboard = None
    sim._bump()
    return message.to_api(sim.bot_user, chat.user)


async def _edit_message_text(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    chat, message = sim._bot_message_for_edit(params, "message to edit not found")
    text, entities, source, mode = _text_and_entities(params)
    markup = _check_markup(params.get("reply_markup"), inline_only=True)
    return sim._edit(chat, message, text, entities, source, mode, markup)


async def _edit_message_reply_markup(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    chat, message = sim._bot_message_for_edit(params, "message to edit not found")
    markup = _check_markup(params.get("reply_markup"), inline_only=True)
    return sim._edit(
        chat, message, message.text or "", message.entities, message.source, message.parse_mode, markup
    )


async def _answer_callback_query(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    query_id = str(params.get("callback_query_id") or "")
    record = sim.callbacks.get(query_id)
    if record is None or record.answered_at is not None:
        raise _bad(QUERY_TOO_OLD.removeprefix("Bad Request: "))
    text = params.get("text")
    if text is not None and len(str(text)) > 200:
        raise _bad("MESSAGE_TOO_LONG")
    record.answered_at = time.monotonic()
    record.answer = {"text": text, "show_alert": _bool_param(params, "show_alert"), "url": params.get("url")}
    sim._bump()
    return True


async def _send_chat_action(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    chat = sim._chat_for_send(params)
    action = str(params.get("action") or "")
    if action not in CHAT_ACTIONS:
        raise _bad("wrong parameter action in request")
    sim.chat_actions.append({"chat_id": chat.user.id, "action": action, "at": time.monotonic()})
    sim._bump()
    return True


async def _delete_message(sim: TelegramApiSimulator, params: dict[str, Any]) -> Any:
    chat = sim._chat_for_send(params)
    message_id = _int_param(params, "message_id", "message identifier is not specified")
    message = chat.message(message_id)
    if message is None:
        raise _bad("message to delete not found")
    message.deleted = True
    sim._bump()
    return True


_METHODS = {
    "getme": _get_me,
    "getupdates": _get_updates,
    "setwebhook": _set_webhook,
    "deletewebhook": _delete_webhook,
    "getwebhookinfo": _get_webhook_info,
    "setmycommands": _set_my_commands,
    "getmycommands": _get_my_commands,
    "deletemycommands": _delete_my_commands,
    "sendmessage": _send_message,
    "editmessagetext": _edit_message_text,
    "editmessagereplymarkup": _edit_message_reply_markup,
    "answercallbackquery": _answer_callback_query,
    "sendchataction": _send_chat_action,
    "deletemessage": _delete_message,
}


# -- HTTP ----------------------------------------------------------------------------------

TELEGRAM_SIMULATOR: web.AppKey[TelegramApiSimulator] = web.AppKey("telegram_simulator", TelegramApiSimulator)


def simulator_state(app: web.Application) -> TelegramApiSimulator:
    """The state object of an app made by :func:`create_app`."""
    return app[TELEGRAM_SIMULATOR]


def _state(request: web.Request) -> TelegramApiSimulator:
    return request.app[TELEGRAM_SIMULATOR]


# What reading a caller's body may raise: bad JSON or encoding (ValueError), an unknown charset
# (LookupError), absurd nesting, broken framing or compression, a body over the size limit.
# All are the caller's fault: 400.
_UNREADABLE = (
    ValueError, LookupError, RecursionError, RequestPayloadError, HttpProcessingError,
    web.HTTPRequestEntityTooLarge,
)


async def _request_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except _UNREADABLE:
                raise _bad("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise _bad("can't parse JSON object")
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            try:
                form = await request.post()
            except _UNREADABLE:
                raise _bad("can't parse the form") from None
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for name in _JSON_FIELDS:
        value = params.get(name)
        if isinstance(value, str):
            try:
                params[name] = json.loads(value)
            except (ValueError, RecursionError):
                raise _bad(f"can't parse {name} JSON object") from None
    return params


async def bot_api(request: web.Request) -> web.Response:
    sim = _state(request)
    method = request.match_info["method"]
    if sim.token is not None and request.match_info["token"] != sim.token:
        return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
    params: dict[str, Any] = {}
    try:
        params = await _request_params(request)
        result = await sim.call(method, params)
    except ApiError as exc:
        sim._record(method, params, exc.code, exc.description)
        return web.json_response(exc.body(), status=exc.code)
    sim._record(method, params, 200, None)
    return web.json_response({"ok": True, "result": result})


def _driver_error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _driver_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except _UNREADABLE:
        raise DriverError("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise DriverError("body must be a JSON object")
    return body


def _driver(handler: Callable[[TelegramApiSimulator, web.Request, dict[str, Any]], Any]) -> Any:
    async def view(request: web.Request) -> web.Response:
        sim = _state(request)
        try:
            body = await _driver_body(request)
            result = handler(sim, request, body)
            if asyncio.iscoroutine(result):
                result = await result
        except DriverError as exc:
            return _driver_error(str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return _driver_error(f"bad request: {exc}")
        return web.json_response(result)

    return view


def _uid(request: web.Request) -> int:
    return int(request.match_info["user_id"])


def _d_add_user(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    user = sim.add_user(
        int(body["id"]),
        str(body.get("first_name") or "User"),
        last_name=body.get("last_name"),
        username=body.get("username"),
        phone_number=body.get("phone_number"),
        language_code=body.get("language_code", "en"),
        started=bool(body.get("started", False)),
    )
    return {
        **user.to_api(),
        "phone_number": user.phone_number,
        "started": user.started,
        "blocked": user.blocked,
    }


def _d_users(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return {
        "users": [
            {**u.to_api(), "phone_number": u.phone_number, "started": u.started, "blocked": u.blocked}
            for u in sim.users.values()
        ]
    }


def _d_text(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return sim.send_text(_uid(request), str(body["text"])).to_driver()


def _d_command(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return sim.send_command(_uid(request), str(body["command"]), str(body.get("args", ""))).to_driver()


def _d_contact(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    owner = body.get("user_id", "self")
    return sim.share_contact(
        _uid(request), body.get("phone_number"), contact_user_id=owner, first_name=body.get("first_name")
    ).to_driver()


def _d_tap(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return sim.tap(_uid(request), str(body["label"])).to_driver()


def _d_press(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    message_id = body.get("message_id")
    record = sim.press(
        _uid(request),
        int(message_id) if message_id is not None else None,
        label=body.get("label"),
        data=body.get("data"),
        forge=bool(body.get("forge", False)),
    )
    return record.to_driver()


def _d_block(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    sim.block(_uid(request))
    return {"blocked": True}


def _d_unblock(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    sim.unblock(_uid(request))
    return {"blocked": False}


def _d_messages(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    chat_id = int(request.match_info["chat_id"])
    deleted = request.query.get("include_deleted") in ("1", "true")
    return {
        "chat_id": chat_id,
        "version": sim.version,
        "messages": [m.to_driver() for m in sim.messages(chat_id, include_deleted=deleted)],
    }


def _d_keyboard(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    chat = sim.chats.get(int(request.match_info["chat_id"]))
    return {"reply_keyboard": chat.reply_keyboard if chat else None}


def _d_answers(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return {"callback_queries": [r.to_driver() for r in sim.callback_answers()]}


def _d_actions(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return {"chat_actions": sim.chat_actions}


def _d_commands(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return {
        "commands": [
            {"scope": json.loads(scope), "language_code": lang, "commands": cmds}
            for (scope, lang), cmds in sim.commands.items()
        ]
    }


async def _d_webhook(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return {**await _get_webhook_info(sim, {}), "deliveries": sim.delivered[-100:]}


def _d_log(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    since = int(request.query.get("since", "0"))
    return {"entries": [e for e in sim.log if e["seq"] > since]}


async def _d_events(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    since = int(request.query.get("since", "0"))
    wait = max(0.0, min(float(request.query.get("timeout", "25")), MAX_LONG_POLL))
    return {"version": await sim.wait_changed(since, wait)}


def _d_faults(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    if request.method == "DELETE":
        sim.clear_faults()
    elif request.method == "POST":
        sim.fail_next(
            str(body["method"]),
            int(body.get("count", 1)),
            status=int(body.get("status", 429)),
            retry_after=int(body.get("retry_after", 1)),
            description=body.get("description"),
        )
    return {"faults": {m: [f.__dict__ for f in q if f.remaining > 0] for m, q in sim.faults.items()}}


def _d_reset(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    sim.reset()
    return {"reset": True}


async def _close_state(app: web.Application) -> None:
    await app[TELEGRAM_SIMULATOR].close()


def create_app(
    *,
    token: str | None = SIMULATOR_TOKEN,
    require_https: bool = False,
    bot_username: str = SIMULATOR_BOT_USERNAME,
    state: TelegramApiSimulator | None = None,
) -> web.Application:
    """Build the stand-in; mount it anywhere (``add_subapp``) or serve it standalone.

    ``token``: the only bot token accepted (others get 401); None accepts any token.
    ``state``: share one simulated Telegram between several apps (e.g. a private listener
    for the bot and the public /sim/telegram pages).
    """
    app = web.Application()
    app[TELEGRAM_SIMULATOR] = state or TelegramApiSimulator(
        token, require_https=require_https, bot_username=bot_username
    )
    app.router.add_route("*", "/bot{token}/{method}", bot_api)
    app.router.add_get("/chat", chat_page)
    app.router.add_get("/driver/users", _driver(_d_users))
    app.router.add_post("/driver/users", _driver(_d_add_user))
    app.router.add_post("/driver/users/{user_id}/text", _driver(_d_text))
    app.router.add_post("/driver/users/{user_id}/command", _driver(_d_command))
    app.router.add_post("/driver/users/{user_id}/contact", _driver(_d_contact))
    app.router.add_post("/driver/users/{user_id}/tap", _driver(_d_tap))
    app.router.add_post("/driver/users/{user_id}/press", _driver(_d_press))
    app.router.add_post("/driver/users/{user_id}/block", _driver(_d_block))
    app.router.add_post("/driver/users/{user_id}/unblock", _driver(_d_unblock))
    app.router.add_get("/driver/chats/{chat_id}/messages", _driver(_d_messages))
    app.router.add_get("/driver/chats/{chat_id}/keyboard", _driver(_d_keyboard))
    app.router.add_get("/driver/callback-answers", _driver(_d_answers))
    app.router.add_get("/driver/chat-actions", _driver(_d_actions))
    app.router.add_get("/driver/commands", _driver(_d_commands))
    app.router.add_get("/driver/webhook", _driver(_d_webhook))
    app.router.add_get("/driver/log", _driver(_d_log))
    app.router.add_get("/driver/events", _driver(_d_events))
    app.router.add_route("*", "/driver/faults", _driver(_d_faults))
    app.router.add_post("/driver/reset", _driver(_d_reset))
    app.on_shutdown.append(_close_state)
    return app


def run_standalone(host: str, port: int, **kwargs: Any) -> None:
    """Serve the stand-in at the root of http://host:port until interrupted (blocking)."""
    web.run_app(create_app(**kwargs), host=host, port=port)


def main(argv: list[str] | None = None) -> None:
    """``python -m simulators.telegram_api --port 8091``."""
    parser = argparse.ArgumentParser(description="Local Telegram Bot API stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--token", default=SIMULATOR_TOKEN, help="the accepted bot token ('any' for any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    run_standalone(args.host, args.port, token=None if args.token == "any" else args.token)


if __name__ == "__main__":
    main()
