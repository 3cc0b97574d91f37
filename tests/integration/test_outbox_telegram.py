"""TelegramSender: real python-telegram-bot over real HTTP to a tiny Bot API stand-in on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from telegram import Bot

from bot.sender import TelegramSender
from core.config import load_settings
from core.db.models import Client, Outbox
from core.runtime import Runtime
from core.services.notifications import notify as notifications
from core.services.notifications.notify import Dispatcher
from core.templates import render
from senders.sms import AfricasTalkingGateway, SmsSender
from simulators.africastalking import AfricasTalkingSimulator
from tests.factories import make_client

TOKEN = "123456:TEST-token_for-the-stand-in"
DATA = {
    "reference": "SS1A2B3C4D5E", "booking_id": 12, "therapist_name": "Dr. <b>Amani</b> & Co",
    "session_type": "Individual", "starts_at_local": "Mon 30 Nov 2026, 10:00 EAT", "amount_kes": 2500,
    "reason": "Payment cancelled. You can retry whenever you are ready.", "test_mode": True,
}


@dataclass
class BotApi:
    """Answers sendMessage like the Bot API; ``replies`` maps chat id → (HTTP status, error body)."""

    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            unauthorized = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            return web.json_response(unauthorized, status=401)
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = {k: str(v) for k, v in (await request.post()).items()}
        params["_method"] = request.match_info["method"]
        self.requests.append(params)
        chat_id = int(params["chat_id"])
        if chat_id in self.replies:
            status, body = self.replies[chat_id]
            return web.json_response(body, status=status)
        message = {"message_id": len(self.requests) + 100, "date": 1767225600,
                   "chat": {"id": chat_id, "type": "private"}, "text": params.get("text", "")}
        return web.json_response({"ok": True, "result": message})


BLOCKED = (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
FLOOD = (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
               "parameters": {"retry_after": 7}})
NOT_FOUND = (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
BAD_HTML = (400, {"ok": False, "error_code": 400,
                  "description": "Bad Request: can't parse entities: unsupported start tag"})


@pytest.fixture
async def bot_api() -> AsyncIterator[BotApi]:
    api = BotApi()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    api.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/bot"
    try:
        yield api
    finally:
        await runner.cleanup()


@pytest.fixture
async def sender(bot_api: BotApi) -> AsyncIterator[TelegramSender]:
    telegram = TelegramSender(Bot(TOKEN, base_url=bot_api.base_url))
    try:
        yield telegram
    finally:
        await telegram.close()


async def test_a_message_is_sent_as_html_with_its_inline_buttons(
    bot_api: BotApi, sender: TelegramSender
) -> None:
    message = render("booking_approved_client", "telegram", DATA)
    result = await sender.send("4242", message)
    assert result.ok and result.provider_message_id == "101"
    (request,) = bot_api.requests
    assert request["_method"] == "sendMessage" and int(request["chat_id"]) == 4242
    assert request["parse_mode"] == "HTML"
    assert "Dr. &lt;b&gt;Amani&lt;/b&gt; &amp; Co" in request["text"] and "TEST MODE" in request["text"]
    markup = request["reply_markup"]
    markup = json.loads(markup) if isinstance(markup, str) else markup
    assert markup == {"inline_keyboard": [[{"text": "Pay with M-Pesa", "callback_data": "v1:pay:12"}]]}


async def test_a_user_who_blocked_the_bot_is_permanent_and_unreachable(
    bot_api: BotApi, sender: TelegramSender
) -> None:
    bot_api.replies[4243] = BLOCKED
    result = await sender.send("4243", render("payment_failed_client", "telegram", DATA))
    assert (result.ok, result.permanent, result.unreachable) == (False, True, True)
    assert "403" in (result.error or "")


async def test_flood_control_is_retried_after_the_time_telegram_asks(
    bot_api: BotApi, sender: TelegramSender
) -> None:
    bot_api.replies[4244] = FLOOD
    result = await sender.send("4244", render("payment_failed_client", "telegram", DATA))
    assert (result.ok, result.permanent, result.retry_after) == (False, False, 7.0)


async def test_bad_requests_are_permanent_and_an_unknown_chat_is_unreachable(
    bot_api: BotApi, sender: TelegramSender
) -> None:
    bot_api.replies[4245] = NOT_FOUND
    bot_api.replies[4246] = BAD_HTML
    missing = await sender.send("4245", render("payment_failed_client", "telegram", DATA))
    broken = await sender.send("4246", render("payment_failed_client", "telegram", DATA))
    assert (missing.permanent, missing.unreachable) == (True, True)
    assert (broken.permanent, broken.unreachable) == (True, False)


async def test_network_failures_are_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    telegram = TelegramSender(Bot(TOKEN, base_url=f"http://127.0.0.1:{port}/bot"))
    try:
        result = await telegram.send("1", render("payment_failed_client", "telegram", DATA))
    finally:
        await telegram.close()
    assert (result.ok, result.permanent) == (False, False) and "unreachable" in (result.error or "")
    assert TOKEN not in (result.error or "")


def test_the_sender_is_built_from_settings_only_with_a_token() -> None:
    assert TelegramSender.from_settings(load_settings({})) is None
    built = TelegramSender.from_settings(load_settings({"TELEGRAM_BOT_TOKEN": TOKEN,
                                                        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot"}))
    assert built is not None and built.bot.base_url == f"http://127.0.0.1:9/bot{TOKEN}"


# Feature: mpesa-payment-integration, Property 63: Failed Payment Sends Notification With Reason
async def test_a_blocked_client_gets_the_failure_notice_by_sms_instead_end_to_end(
    runtime: Runtime, bot_api: BotApi, sender: TelegramSender
) -> None:
    simulator = AfricasTalkingSimulator(username="smilingsteps", api_key="k")
    app = web.Application()
    app.add_subapp("/sim/at", simulator.app())
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    at_url = f"http://127.0.0.1:{runner.addresses[0][1]}/sim/at"
    bot_api.replies[5150] = BLOCKED
    try:
        async with runtime.uow() as uow:
            client = await make_client(uow.session, telegram_user_id=5150, phone="254711555150")
            await notifications.notify_client(uow.session, client, template="payment_failed_client",
                                              data=DATA, dedupe_key="payment:5:failed:client")
            await uow.commit()
        sms = SmsSender(AfricasTalkingGateway(username="smilingsteps", api_key="k", base_url=at_url))
        dispatcher = Dispatcher(runtime, {"telegram": sender, "sms": sms})
        await dispatcher.dispatch_once()
        await dispatcher.dispatch_once()
    finally:
        await runner.cleanup()
    (texted,) = simulator.messages
    assert texted.to == "+254711555150"
    assert DATA["reason"] in texted.message and "Reply PAY to retry" in texted.message
    async with runtime.uow() as uow:
        rows = (await uow.session.scalars(select(Outbox).order_by(Outbox.id))).all()
        assert [(r.channel, r.status) for r in rows] == [("telegram", "REROUTED"), ("sms", "SENT")]
        assert rows[1].provider_message_id == texted.message_id
        assert (await uow.session.get_one(Client, client.id)).telegram_unreachable is True
