"""The Bot API stand-in speaks Telegram's protocol (checked with raw HTTP and with PTB's Bot)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken

from simulators.telegram_api import NOT_MODIFIED, SECRET_HEADER, parse_html
from tests.support.telegram import RunningTelegram, running_telegram, serving

AMINA = 801


@pytest.fixture
async def telegram() -> AsyncIterator[RunningTelegram]:
    async with running_telegram() as running:
        running.state.add_user(AMINA, "Amina", phone_number="254712345678")
        yield running


@pytest.fixture
async def bot(telegram: RunningTelegram) -> AsyncIterator[Bot]:
    async with Bot(telegram.token, base_url=telegram.base_url) as ptb:
        yield ptb


async def _call(
    telegram: RunningTelegram,
    method: str,
    *,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, Any]]:
    url = f"{telegram.root_url}/bot{token or telegram.token}/{method}"
    async with aiohttp.ClientSession() as http:
        kwargs: dict[str, Any] = {"json": json_body} if json_body is not None else {"data": form or {}}
        async with http.post(url, **kwargs) as response:
            return response.status, await response.json()


async def _driver(telegram: RunningTelegram, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{telegram.root_url}/driver{path}", json=body) as response,
    ):
        return response.status, await response.json()


# -- Telegram's HTML ---------------------------------------------------------------------------


def test_html_is_parsed_into_plain_text_and_entities_with_utf16_offsets():
    text, entities = parse_html('🙂 <b>Hi</b> &lt;you&gt; <a href="https://x.org/?a=1&amp;b=2">link</a>')
    assert text == "🙂 Hi <you> link"
    assert entities == [
        {"type": "bold", "offset": 3, "length": 2},
        {"type": "text_link", "offset": 12, "length": 4, "url": "https://x.org/?a=1&b=2"},
    ]


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<x>hi</x>", 'Unsupported start tag "x" at byte offset 0'),
        ("<b>hi", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>hi</i>", 'Unmatched end tag at byte offset 5, expected "</b>", found "</i>"'),
        ("hi</b>", "Unexpected end tag at byte offset 2"),
    ],
)
def test_bad_html_is_refused_with_telegrams_wording(source, error):
    with pytest.raises(ValueError) as caught:
        parse_html(source)
    assert str(caught.value) == error


def test_unknown_named_entities_stay_literal_and_numeric_ones_decode():
    assert parse_html("&nbsp; &#65; &#x42; &amp;")[0] == "&nbsp; A B &"


# -- Bot API over HTTP -------------------------------------------------------------------------


async def test_a_wrong_token_is_unauthorized_and_an_unknown_method_not_found(telegram):
    assert await _call(telegram, "getMe", token="1:wrong") == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    assert await _call(telegram, "launchRockets") == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found"},
    )


async def test_json_and_form_bodies_are_both_accepted(telegram):
    telegram.state.send_text(AMINA, "hi")
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "v1:go"}]]}
    status, sent = await _call(
        telegram, "sendMessage", json_body={"chat_id": AMINA, "text": "json", "reply_markup": markup}
    )
    assert status == 200 and sent["result"]["reply_markup"] == markup
    status, sent = await _call(
        telegram,
        "sendmessage",
        form={
            "chat_id": str(AMINA),
            "text": "<b>form</b>",
            "parse_mode": "HTML",
            "reply_markup": json.dumps(markup),
        },
    )
    assert status == 200
    result = sent["result"]
    assert result["text"] == "form" and result["entities"] == [{"type": "bold", "offset": 0, "length": 4}]
    assert result["from"]["is_bot"] is True and result["chat"] == {
        "id": AMINA,
        "first_name": "Amina",
        "type": "private",
    }


async def test_messages_to_unknown_chats_and_before_start_are_refused_like_telegram(telegram, bot):
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(999, "hello")
    with pytest.raises(Forbidden, match="can't initiate conversation"):
        await bot.send_message(AMINA, "hello")  # Amina never wrote to the bot


async def test_editing_with_the_same_content_is_not_modified(telegram, bot):
    telegram.state.send_text(AMINA, "hi")
    sent = await bot.send_message(AMINA, "Same")
    with pytest.raises(BadRequest, match="is not modified"):
        await bot.edit_message_text("Same", chat_id=AMINA, message_id=sent.message_id)
    status, body = await _call(
        telegram,
        "editMessageText",
        json_body={"chat_id": AMINA, "text": "Same", "message_id": sent.message_id},
    )
    assert (status, body["description"]) == (400, NOT_MODIFIED)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", chat_id=AMINA, message_id=999)


async def test_editing_text_without_a_keyboard_removes_the_inline_keyboard(telegram, bot):
    telegram.state.send_text(AMINA, "hi")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Pay", callback_data="v1:pay:1")]])
    sent = await bot.send_message(AMINA, "Pay?", reply_markup=keyboard)
    await bot.edit_message_text("Paid", chat_id=AMINA, message_id=sent.message_id)
    message = telegram.state.message(AMINA, sent.message_id)
    assert message is not None and message.inline_keyboard == [] and message.history[0]["text"] == "Pay?"


async def test_callback_data_over_64_bytes_is_refused(telegram, bot):
    telegram.state.send_text(AMINA, "hi")
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(
            AMINA,
            "x",
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("Long", callback_data="v1:" + "x" * 62)]]
            ),
        )


async def test_a_callback_query_can_be_answered_once(telegram, bot):
    telegram.state.send_text(AMINA, "hi")
    sent = await bot.send_message(
        AMINA, "Pick", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="v1:a")]])
    )
    press = telegram.state.press(AMINA, sent.message_id, label="A")
    assert await bot.answer_callback_query(press.id) is True
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(press.id)
    assert press.answered_at is not None and press.to_driver()["answer_delay"] >= 0


async def test_get_updates_long_polls_and_returns_as_soon_as_an_update_arrives(telegram, bot):
    async def later() -> None:
        await asyncio.sleep(0.3)
        telegram.state.send_text(AMINA, "ping")

    task = asyncio.create_task(later())
    started = time.monotonic()
    updates = await bot.get_updates(timeout=5)
    await task
    assert 0.25 < time.monotonic() - started < 4.0  # returned on the update, not at the 5 s timeout
    assert [u.message.text for u in updates] == ["ping"]  # type: ignore[union-attr]
    again = await bot.get_updates(timeout=0)
    assert len(again) == 1  # not confirmed yet
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()


async def test_a_newer_get_updates_ends_an_older_one_with_a_conflict(telegram, bot):
    first = asyncio.create_task(_call(telegram, "getUpdates", json_body={"timeout": 5}))
    await asyncio.sleep(0.1)
    await bot.get_updates(timeout=0)
    status, body = await asyncio.wait_for(first, 2)
    assert status == 409 and "terminated by other getUpdates request" in body["description"]


async def test_get_updates_is_refused_while_a_webhook_is_set(telegram, bot):
    await bot.set_webhook("http://127.0.0.1:9/hooks/telegram", secret_token="s3cret-token")
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    info = await bot.get_webhook_info()
    assert info.url == "http://127.0.0.1:9/hooks/telegram"
    await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""


async def test_updates_are_posted_to_the_webhook_with_the_secret_and_retried_until_accepted(telegram, bot):
    received: list[tuple[dict[str, Any], str | None]] = []
    answers = [500, 200, 200]

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers.get(SECRET_HEADER)))
        return web.Response(status=answers.pop(0))

    app = web.Application()
    app.router.add_post("/hooks/telegram", hook)
    async with serving(app) as base:
        await bot.set_webhook(f"{base}/hooks/telegram", secret_token="s3cret-token")
        telegram.state.send_text(AMINA, "one")
        telegram.state.send_text(AMINA, "two")
        await telegram.state.wait_for(lambda: not telegram.state.pending and len(received) == 3, within=3)
        info = await bot.get_webhook_info()
        await bot.delete_webhook()
    assert [body["message"]["text"] for body, _ in received] == ["one", "one", "two"]
    assert {secret for _, secret in received} == {"s3cret-token"}
    assert [d["status"] for d in telegram.state.delivered] == [500, 200, 200]
    assert info.pending_update_count == 0


async def test_the_429_switch_fails_the_next_calls_with_retry_after(telegram, bot):
    telegram.state.send_text(AMINA, "hi")
    status, body = await _driver(
        telegram, "POST", "/faults", {"method": "sendMessage", "count": 1, "retry_after": 2}
    )
    assert status == 200 and body["faults"]["sendmessage"][0]["remaining"] == 1
    status, error = await _call(telegram, "sendMessage", json_body={"chat_id": AMINA, "text": "x"})
    assert status == 429 and error == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 2",
        "parameters": {"retry_after": 2},
    }
    assert (await _call(telegram, "sendMessage", json_body={"chat_id": AMINA, "text": "x"}))[0] == 200


async def test_a_blocked_user_gives_403_and_the_bot_hears_of_it(telegram, bot):
    telegram.state.send_text(AMINA, "hi")
    await _driver(telegram, "POST", f"/users/{AMINA}/block")
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(AMINA, "hello")
    updates = await bot.get_updates(timeout=0)
    assert updates[-1].my_chat_member.new_chat_member.status == "kicked"  # type: ignore[union-attr]


async def test_the_driver_api_plays_a_whole_phone_over_http(telegram, bot):
    assert (
        await _driver(
            telegram, "POST", "/users", {"id": 802, "first_name": "Baraka", "phone_number": "254700000802"}
        )
    )[0] == 200
    await _driver(telegram, "POST", "/users/802/command", {"command": "start"})
    await bot.send_message(
        802,
        "Pick",
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="v1:yes")]]),
    )
    status, press = await _driver(telegram, "POST", "/users/802/press", {"label": "Yes"})
    assert status == 200 and press["data"] == "v1:yes" and press["answered"] is False
    assert (await _driver(telegram, "POST", "/users/802/press", {"label": "No"}))[0] == 400
    await _driver(telegram, "POST", "/users/802/contact", {})
    await _driver(telegram, "POST", "/users/802/contact", {"user_id": None, "phone_number": "254799999999"})
    await bot.answer_callback_query(press["id"], text="OK")
    _, chat = await _driver(telegram, "GET", "/chats/802/messages")
    assert [(m["from_bot"], m["text"]) for m in chat["messages"]][:2] == [(False, "/start"), (True, "Pick")]
    assert chat["messages"][2]["contact"] == {
        "phone_number": "254700000802",
        "first_name": "Baraka",
        "user_id": 802,
    }
    assert "user_id" not in chat["messages"][3]["contact"]
    _, answers = await _driver(telegram, "GET", "/callback-answers")
    assert (
        answers["callback_queries"][0]["answered"] is True
        and answers["callback_queries"][0]["answer"]["text"] == "OK"
    )
    _, log = await _driver(telegram, "GET", "/log")
    assert {e["method"] for e in log["entries"]} >= {"sendMessage", "answerCallbackQuery"}
    version = chat["version"]
    waiter = asyncio.create_task(_driver(telegram, "GET", f"/events?since={version}&timeout=5"))
    await asyncio.sleep(0.1)
    await _driver(telegram, "POST", "/users/802/text", {"text": "later"})
    status, event = await asyncio.wait_for(waiter, 2)
    assert status == 200 and event["version"] > version


async def test_a_bad_driver_request_is_a_400_with_a_reason(telegram):
    status, body = await _driver(telegram, "POST", "/users/12345/text", {"text": "who am I"})
    assert status == 400 and "no user 12345" in body["error"]


async def test_ptb_reports_a_refused_token(telegram):
    with pytest.raises(InvalidToken):
        async with Bot("1:wrong", base_url=telegram.base_url) as wrong:
            await wrong.get_me()
