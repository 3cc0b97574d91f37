"""The driver API over HTTP (JSON): what tests and the browser "phone" page ask the stand-in to do.

Each handler takes the simulator, the request and its JSON body (``{}`` when there is none) and
returns what to answer as JSON; :data:`DRIVER_ROUTES` says where each one is served.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from simulators.telegram_api.driver import TelegramApiSimulator
from simulators.telegram_api.methods import get_webhook_info
from simulators.telegram_api.models import SimUser
from simulators.telegram_api.protocol import MAX_LONG_POLL

DriverHandler = Callable[[TelegramApiSimulator, web.Request, dict[str, Any]], Any | Awaitable[Any]]


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
    return _user_card(user)


def _d_users(sim: TelegramApiSimulator, request: web.Request, body: dict[str, Any]) -> Any:
    return {"users": [_user_card(u) for u in sim.users.values()]}


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
    return {**await get_webhook_info(sim, {}), "deliveries": sim.delivered[-100:]}


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


def _user_card(user: SimUser) -> dict[str, Any]:
    extra = {"phone_number": user.phone_number, "started": user.started, "blocked": user.blocked}
    return {**user.to_api(), **extra}


DRIVER_ROUTES: tuple[tuple[str, str, DriverHandler], ...] = (
    ("GET", "/driver/users", _d_users),
    ("POST", "/driver/users", _d_add_user),
    ("POST", "/driver/users/{user_id}/text", _d_text),
    ("POST", "/driver/users/{user_id}/command", _d_command),
    ("POST", "/driver/users/{user_id}/contact", _d_contact),
    ("POST", "/driver/users/{user_id}/tap", _d_tap),
    ("POST", "/driver/users/{user_id}/press", _d_press),
    ("POST", "/driver/users/{user_id}/block", _d_block),
    ("POST", "/driver/users/{user_id}/unblock", _d_unblock),
    ("GET", "/driver/chats/{chat_id}/messages", _d_messages),
    ("GET", "/driver/chats/{chat_id}/keyboard", _d_keyboard),
    ("GET", "/driver/callback-answers", _d_answers),
    ("GET", "/driver/chat-actions", _d_actions),
    ("GET", "/driver/commands", _d_commands),
    ("GET", "/driver/webhook", _d_webhook),
    ("GET", "/driver/log", _d_log),
    ("GET", "/driver/events", _d_events),
    ("*", "/driver/faults", _d_faults),
    ("POST", "/driver/reset", _d_reset),
)
