"""Webhook mode: the stand-in POSTs updates to our aiohttp route with the secret header."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from bot.app import BotHandle, BotStartError, start_bot
from core.dialog.types import Option, Reply
from core.runtime import Runtime, build_runtime
from simulators.telegram_api import SIMULATOR_TOKEN, create_app, simulator_state
from tests.conftest import make_settings
from tests.support.daraja import closed_port
from tests.support.telegram import FakeEngine, FakePayments, RunningTelegram, running_telegram, serving
from webhooks.telegram import SECRET_HEADER, WEBHOOK_PATH, setup_telegram_webhook

SECRET = "webhook-secret_0123456789"
AMINA = 601


@dataclass
class WebhookSetup:
    runtime: Runtime
    app: web.Application
    base_url: str
    telegram: RunningTelegram


@pytest.fixture
async def webhook(database_url: str) -> AsyncIterator[WebhookSetup]:
    port = closed_port()
    runtime = build_runtime(
        make_settings(
            database_url, TELEGRAM_WEBHOOK_SECRET=SECRET, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}"
        )
    )
    app = web.Application()
    setup_telegram_webhook(app, SECRET)
    try:
        async with running_telegram() as telegram, serving(app, port) as base_url:
            telegram.state.add_user(AMINA, "Amina", started=True)
            yield WebhookSetup(runtime, app, base_url, telegram)
    finally:
        await runtime.close()


async def _start(setup: WebhookSetup, engine: FakeEngine) -> BotHandle:
    handle = await start_bot(
        setup.runtime,
        engine,
        FakePayments(setup.runtime),
        setup.app,  # type: ignore[arg-type]
        token=setup.telegram.token,
        base_url=setup.telegram.base_url,
    )
    await handle.wait_ready(5)
    return handle


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        return response.status


def _update(update_id: int = 1, text: str = "hi") -> bytes:
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": 1,
                "date": 1700000000,
                "text": text,
                "chat": {"id": AMINA, "type": "private", "first_name": "Amina"},
                "from": {"id": AMINA, "is_bot": False, "first_name": "Amina"},
            },
        }
    ).encode()


async def test_start_sets_the_webhook_with_the_public_url_and_the_secret(webhook: WebhookSetup):
    handle = await _start(webhook, FakeEngine())
    try:
        hook = webhook.telegram.state.webhook
        assert hook is not None
        assert hook.url == f"{webhook.base_url}{WEBHOOK_PATH}"
        assert hook.secret_token == SECRET
        assert handle.mode == "webhook"
        assert handle.application.updater is None
        assert webhook.runtime.components["bot"] == "ok"
    finally:
        await handle.stop()


async def test_an_update_posted_with_the_secret_reaches_the_engine_and_is_answered(webhook: WebhookSetup):
    engine = FakeEngine()
    handle = await _start(webhook, engine)
    try:
        webhook.telegram.state.send_text(AMINA, "hello via webhook")
        reply = await webhook.telegram.state.wait_bot_message(AMINA)
    finally:
        await handle.stop()
    assert reply.text == "You said: hello via webhook"
    deliveries = webhook.telegram.state.delivered
    assert deliveries and all(d["status"] == 200 for d in deliveries)
    assert webhook.telegram.state.calls("getUpdates") == []


# Feature: mpesa-payment-integration, Property 50: Payment Endpoints Require Authentication
@pytest.mark.parametrize(
    "headers", [{}, {SECRET_HEADER: "wrong-secret-value"}, {SECRET_HEADER: SECRET + "x"}, {SECRET_HEADER: ""}]
)
async def test_a_post_without_the_right_secret_is_refused_with_403(webhook: WebhookSetup, headers):
    engine = FakeEngine()
    handle = await _start(webhook, engine)
    try:
        status = await _post(
            f"{webhook.base_url}{WEBHOOK_PATH}", _update(), {"Content-Type": "application/json", **headers}
        )
    finally:
        await handle.stop()
    assert status == 403
    assert engine.inbounds == []


async def test_a_verified_post_is_answered_200_at_once_even_when_the_engine_is_slow(webhook: WebhookSetup):
    import time

    engine = FakeEngine(delay=1.0)
    handle = await _start(webhook, engine)
    try:
        started = time.monotonic()
        status = await _post(
            f"{webhook.base_url}{WEBHOOK_PATH}",
            _update(77, "slow"),
            {"Content-Type": "application/json", SECRET_HEADER: SECRET},
        )
        answered_in = time.monotonic() - started
        await webhook.telegram.state.wait_bot_message(AMINA, within=4)
    finally:
        await handle.stop()
    assert status == 200
    assert answered_in < 0.5
    assert engine.inbounds[0].text == "slow"


async def test_the_same_update_delivered_twice_is_handled_once(webhook: WebhookSetup):
    engine = FakeEngine()
    handle = await _start(webhook, engine)
    headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
    try:
        assert await _post(f"{webhook.base_url}{WEBHOOK_PATH}", _update(5, "once"), headers) == 200
        assert await _post(f"{webhook.base_url}{WEBHOOK_PATH}", _update(5, "once"), headers) == 200
        await webhook.telegram.state.wait_bot_message(AMINA)
    finally:
        await handle.stop()
    assert [i.text for i in engine.inbounds] == ["once"]


async def test_a_body_that_is_not_an_update_is_refused_with_400(webhook: WebhookSetup):
    handle = await _start(webhook, FakeEngine())
    headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
    try:
        assert await _post(f"{webhook.base_url}{WEBHOOK_PATH}", b"{not json", headers) == 400
        assert await _post(f"{webhook.base_url}{WEBHOOK_PATH}", b"[1, 2]", headers) == 400
        assert await _post(f"{webhook.base_url}{WEBHOOK_PATH}", b'{"update_id": "x"}', headers) == 400
    finally:
        await handle.stop()


async def test_before_the_bot_starts_the_route_answers_503_so_telegram_retries(webhook: WebhookSetup):
    status = await _post(
        f"{webhook.base_url}{WEBHOOK_PATH}",
        _update(),
        {"Content-Type": "application/json", SECRET_HEADER: SECRET},
    )
    assert status == 503


async def test_every_button_press_is_answered_in_webhook_mode_too(webhook: WebhookSetup):
    engine = FakeEngine(
        lambda i: (
            [Reply("Pick", options=(Option("Yes", "v1:yes:1"),))]
            if i.text
            else [Reply("Noted", edit_previous=True)]
        )
    )
    handle = await _start(webhook, engine)
    try:
        webhook.telegram.state.send_text(AMINA, "menu")
        offer = await webhook.telegram.state.wait_bot_message(AMINA)
        press = webhook.telegram.state.press(AMINA, offer.message_id, label="Yes")
        await webhook.telegram.state.wait_for(lambda: offer.text == "Noted")
    finally:
        await handle.stop()
    assert press.answered_at is not None
    assert offer.inline_keyboard == []


async def test_webhook_mode_without_the_route_refuses_to_start(webhook: WebhookSetup):
    with pytest.raises(BotStartError, match="setup_telegram_webhook"):
        await start_bot(
            webhook.runtime,
            FakeEngine(),
            FakePayments(),
            web.Application(),  # type: ignore[arg-type]
            token=webhook.telegram.token,
            base_url=webhook.telegram.base_url,
        )


async def test_no_secret_means_no_webhook_route():
    app = web.Application()
    assert setup_telegram_webhook(app, None) is None
    assert not [r for r in app.router.routes() if r.resource and r.resource.canonical == WEBHOOK_PATH]


async def test_local_mode_layout_stand_in_and_webhook_on_one_server(database_url: str):
    """Like `serve` in local mode: the stand-in under /sim/telegram, the webhook beside it."""
    port = closed_port()
    runtime = build_runtime(
        make_settings(
            database_url, TELEGRAM_WEBHOOK_SECRET=SECRET, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}"
        )
    )
    app = web.Application()
    setup_telegram_webhook(app, SECRET)
    sim_app = create_app()
    app.add_subapp("/sim/telegram", sim_app)
    sim = simulator_state(sim_app)
    sim.add_user(AMINA, "Amina")
    try:
        async with serving(app, port) as base_url:
            handle = await start_bot(
                runtime,
                FakeEngine(),
                FakePayments(runtime),
                app,  # type: ignore[arg-type]
                token=SIMULATOR_TOKEN,
                base_url=f"{base_url}/sim/telegram/bot",
            )
            try:
                await handle.wait_ready(5)
                sim.send_command(AMINA, "help")
                reply = await sim.wait_bot_message(AMINA)
                hook_url = sim.webhook.url if sim.webhook else None
            finally:
                await handle.stop()
    finally:
        await runtime.close()
    assert reply.text == "You said: /help"
    assert hook_url == f"{base_url}{WEBHOOK_PATH}"
