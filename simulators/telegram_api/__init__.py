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

Modules: :mod:`.protocol` (token, limits, error wording), :mod:`.html_parser`,
:mod:`.models`, :mod:`.state` (state, faults, API log, webhook delivery loop) with
:mod:`.webhook` (one delivery), :mod:`.methods` (the Bot API), :mod:`.driver` (the phone
side: :class:`TelegramApiSimulator`), :mod:`.driver_api` (the driver over HTTP) and
:mod:`.app` (the aiohttp app). Everything is importable from the package itself.
"""

from simulators.telegram_api.app import (
    TELEGRAM_SIMULATOR,
    bot_api,
    create_app,
    main,
    run_standalone,
    simulator_state,
)
from simulators.telegram_api.driver import TelegramApiSimulator
from simulators.telegram_api.html_parser import parse_html
from simulators.telegram_api.models import CallbackRecord, Fault, SimChat, SimMessage, SimUser, Webhook
from simulators.telegram_api.protocol import (
    BLOCKED,
    CHAT_ACTIONS,
    DEFAULT_ALLOWED,
    MAX_CALLBACK_DATA,
    MAX_LONG_POLL,
    MAX_TEXT,
    NOT_MODIFIED,
    QUERY_TOO_OLD,
    SECRET_HEADER,
    SIMULATOR_BOT_USERNAME,
    SIMULATOR_TOKEN,
    ApiError,
    DriverError,
)
from simulators.telegram_api.state import SimulatorState

__all__ = [
    "BLOCKED",
    "CHAT_ACTIONS",
    "DEFAULT_ALLOWED",
    "MAX_CALLBACK_DATA",
    "MAX_LONG_POLL",
    "MAX_TEXT",
    "NOT_MODIFIED",
    "QUERY_TOO_OLD",
    "SECRET_HEADER",
    "SIMULATOR_BOT_USERNAME",
    "SIMULATOR_TOKEN",
    "TELEGRAM_SIMULATOR",
    "ApiError",
    "CallbackRecord",
    "DriverError",
    "Fault",
    "SimChat",
    "SimMessage",
    "SimUser",
    "SimulatorState",
    "TelegramApiSimulator",
    "Webhook",
    "bot_api",
    "create_app",
    "main",
    "parse_html",
    "run_standalone",
    "simulator_state",
]
