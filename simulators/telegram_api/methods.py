"""The Bot API methods the product uses, with Telegram's checks and error wording."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from simulators.telegram_api.html_parser import parse_html
from simulators.telegram_api.models import SimChat, SimMessage, Webhook
from simulators.telegram_api.protocol import (
    BLOCKED,
    CHAT_ACTIONS,
    DEFAULT_ALLOWED,
    MAX_CALLBACK_DATA,
    MAX_LONG_POLL,
    MAX_TEXT,
    NOT_MODIFIED,
    QUERY_TOO_OLD,
    ApiError,
    bad,
)
from simulators.telegram_api.state import SimulatorState, scope_key


def _int_param(params: dict[str, Any], name: str, missing: str) -> int:
    value = params.get(name)
    if value is None or value == "":
        raise bad(missing)
    try:
        return int(value)
    except (TypeError, ValueError):
        if name == "chat_id":
            raise bad("chat not found") from None
        raise bad(f"invalid {name} specified") from None


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
        raise bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
        for button in (b for row in rows for b in row):
            if not isinstance(button, dict) or not button.get("text"):
                raise bad(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise bad("BUTTON_DATA_INVALID")
        return markup
    if inline_only:
        raise bad("inline keyboard expected")
    if "keyboard" in markup or markup.get("remove_keyboard") or "force_reply" in markup:
        return markup
    raise bad("can't parse reply keyboard markup JSON object")


def _text_and_entities(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None, str | None]:
    source = params.get("text")
    if source is None or str(source) == "":
        raise bad("message text is empty")
    source = str(source)
    mode = params.get("parse_mode")
    if mode and str(mode).lower() == "html":
        try:
            text, entities = parse_html(source)
        except ValueError as exc:
            raise bad(f"can't parse entities: {exc}") from None
    elif mode and str(mode).lower() not in ("markdown", "markdownv2"):
        raise bad(f"unsupported parse_mode {mode}")
    else:  # Markdown modes are not parsed by the simulator: shown as sent
        text, entities = source, list(params.get("entities") or [])
    if not text.strip():
        raise bad("message text is empty")
    if len(text) > MAX_TEXT:
        raise bad("message is too long")
    return text, entities, source, (str(mode) if mode else None)


def _chat_for_send(sim: SimulatorState, params: dict[str, Any]) -> SimChat:
    chat_id = _int_param(params, "chat_id", "chat_id is empty")
    chat = sim.chats.get(chat_id)
    if chat is None:
        raise bad("chat not found")
    if chat.user.blocked:
        raise ApiError(403, BLOCKED)
    if not chat.user.started:
        raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
    return chat

def _bot_message_for_edit(
    sim: SimulatorState, params: dict[str, Any], missing: str
) -> tuple[SimChat, SimMessage]:
    if "inline_message_id" in params:
        raise bad("inline messages are not supported by the simulator")
    chat = _chat_for_send(sim, params)
    message_id = _int_param(params, "message_id", "message identifier is not specified")
    message = chat.message(message_id)
    if message is None:
        raise bad(missing)
    if not message.from_bot:
        raise bad("message can't be edited")
    return chat, message

def _edit(
    sim: SimulatorState,
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
        raise bad(NOT_MODIFIED.removeprefix("Bad Request: "))
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
    sim.bump()
    return message.to_api(sim.bot_user, chat.user)


# -- methods ------------------------------------------------------------------------------


async def _get_me(sim: SimulatorState, params: dict[str, Any]) -> Any:
    return sim.bot_user


def _webhook_active() -> ApiError:
    return ApiError(
        409,
        "Conflict: can't use getUpdates method while webhook is active; "
        "use deleteWebhook to delete the webhook first",
    )


async def _get_updates(sim: SimulatorState, params: dict[str, Any]) -> Any:
    if sim.webhook is not None:
        raise _webhook_active()
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
    sim.poll_generation += 1
    generation = sim.poll_generation
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not sim.pending and loop.time() < deadline and not sim.closing:
        # short slices: a newer poll ends this one promptly
        await sim.next_change(min(0.25, max(0.0, deadline - loop.time())))
        if sim.poll_generation != generation:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        if sim.webhook is not None:
            raise _webhook_active()
    return sim.pending[:limit]


async def _set_webhook(sim: SimulatorState, params: dict[str, Any]) -> Any:
    url = str(params.get("url") or "")
    if not url:
        return await _delete_webhook(sim, params)
    if not re.match(r"https?://[^/\s]+", url):
        raise bad("bad webhook: Failed to resolve host: Name or service not known")
    if sim.require_https and not url.startswith("https://"):
        raise bad("bad webhook: An HTTPS URL must be provided for webhook")
    secret = params.get("secret_token")
    if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
        raise bad("secret token contains unallowed characters")
    allowed = params.get("allowed_updates")
    if _bool_param(params, "drop_pending_updates"):
        sim.pending.clear()
    sim.webhook = Webhook(
        url=url,
        secret_token=str(secret) if secret else None,
        allowed_updates=frozenset(allowed) if isinstance(allowed, list) and allowed else None,
        max_connections=int(params.get("max_connections") or 40),
    )
    sim.bump()
    sim.start_delivery()
    return True


async def _delete_webhook(sim: SimulatorState, params: dict[str, Any]) -> Any:
    if _bool_param(params, "drop_pending_updates"):
        sim.pending.clear()
    sim.webhook = None
    sim.bump()
    return True


async def get_webhook_info(sim: SimulatorState, params: dict[str, Any]) -> Any:
    """getWebhookInfo (also shown by the driver API)."""
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


async def _set_my_commands(sim: SimulatorState, params: dict[str, Any]) -> Any:
    commands = params.get("commands")
    if not isinstance(commands, list):
        raise bad("can't parse commands JSON object")
    if len(commands) > 100:
        raise bad("too many commands specified")
    for item in commands:
        if not isinstance(item, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}", str(item.get("command", ""))):
            raise bad("BOT_COMMAND_INVALID")
        if not 1 <= len(str(item.get("description", "")).strip()) <= 256:
            raise bad("BOT_COMMAND_DESCRIPTION_INVALID")
    scope = params.get("scope")
    if scope is not None and (not isinstance(scope, dict) or "type" not in scope):
        raise bad("can't parse BotCommandScope JSON object")
    key = (scope_key(scope), str(params.get("language_code") or ""))
    sim.commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
    sim.bump()
    return True


async def _get_my_commands(sim: SimulatorState, params: dict[str, Any]) -> Any:
    scope = params.get("scope") if isinstance(params.get("scope"), dict) else None
    return sim.my_commands(scope, str(params.get("language_code") or ""))


async def _delete_my_commands(sim: SimulatorState, params: dict[str, Any]) -> Any:
    scope = params.get("scope") if isinstance(params.get("scope"), dict) else None
    sim.commands.pop((scope_key(scope), str(params.get("language_code") or "")), None)
    sim.bump()
    return True


async def _send_message(sim: SimulatorState, params: dict[str, Any]) -> Any:
    chat = _chat_for_send(sim, params)
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
    sim.bump()
    return message.to_api(sim.bot_user, chat.user)


async def _edit_message_text(sim: SimulatorState, params: dict[str, Any]) -> Any:
    chat, message = _bot_message_for_edit(sim, params, "message to edit not found")
    text, entities, source, mode = _text_and_entities(params)
    markup = _check_markup(params.get("reply_markup"), inline_only=True)
    return _edit(sim, chat, message, text, entities, source, mode, markup)


async def _edit_message_reply_markup(sim: SimulatorState, params: dict[str, Any]) -> Any:
    chat, message = _bot_message_for_edit(sim, params, "message to edit not found")
    markup = _check_markup(params.get("reply_markup"), inline_only=True)
    return _edit(
        sim,
        chat, message, message.text or "", message.entities, message.source, message.parse_mode, markup
    )


async def _answer_callback_query(sim: SimulatorState, params: dict[str, Any]) -> Any:
    query_id = str(params.get("callback_query_id") or "")
    record = sim.callbacks.get(query_id)
    if record is None or record.answered_at is not None:
        raise bad(QUERY_TOO_OLD.removeprefix("Bad Request: "))
    text = params.get("text")
    if text is not None and len(str(text)) > 200:
        raise bad("MESSAGE_TOO_LONG")
    record.answered_at = time.monotonic()
    record.answer = {"text": text, "show_alert": _bool_param(params, "show_alert"), "url": params.get("url")}
    sim.bump()
    return True


async def _send_chat_action(sim: SimulatorState, params: dict[str, Any]) -> Any:
    chat = _chat_for_send(sim, params)
    action = str(params.get("action") or "")
    if action not in CHAT_ACTIONS:
        raise bad("wrong parameter action in request")
    sim.chat_actions.append({"chat_id": chat.user.id, "action": action, "at": time.monotonic()})
    sim.bump()
    return True


async def _delete_message(sim: SimulatorState, params: dict[str, Any]) -> Any:
    chat = _chat_for_send(sim, params)
    message_id = _int_param(params, "message_id", "message identifier is not specified")
    message = chat.message(message_id)
    if message is None:
        raise bad("message to delete not found")
    message.deleted = True
    sim.bump()
    return True


_METHODS = {
    "getme": _get_me,
    "getupdates": _get_updates,
    "setwebhook": _set_webhook,
    "deletewebhook": _delete_webhook,
    "getwebhookinfo": get_webhook_info,
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


async def call(sim: SimulatorState, method: str, params: dict[str, Any]) -> Any:
    """Run one Bot API method (name in any case); returns the ``result`` or raises ApiError."""
    name = method.lower()
    handler = _METHODS.get(name)
    if handler is None:
        raise ApiError(404, "Not Found")
    fault = sim.take_fault(name)
    if fault:
        raise fault
    return await handler(sim, params)
