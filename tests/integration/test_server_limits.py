"""The server closes idle and slow connections and bounds slow bodies (issue 9, defect 9).

The server is started the way ``smiling-steps serve`` starts it (``smiling_steps/server.py``)
but with small limits, and raw sockets play the slow clients: a connection that sends nothing,
one that dribbles its request head a byte at a time, one that never finishes its body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from smiling_steps.server import ServerLimits, start_server
from tests.support.raw_http import parse_response, seconds_until_closed, send_in_pieces
from webhooks.security_log import SECURITY_LOGGER, SecurityLog, install_malformed_request_filter
from webhooks.telegram import SECRET_HEADER, WEBHOOK_PATH, setup_telegram_webhook

SECRET = "limits-secret-0123456789"
LIMITS = ServerLimits(keepalive_timeout_s=0.5, body_timeout_s=0.5, lingering_s=0.2, shutdown_timeout_s=1)
BURST = 5
UPDATE = json.dumps({"update_id": 1, "message": {"message_id": 1, "date": 1700000000, "text": "hi",
                                                 "chat": {"id": 1, "type": "private"}}}).encode()


class DrivenClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def server(limits: ServerLimits = LIMITS) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """The Telegram webhook route (it reads a body) served with ``limits``; yields the updates it got."""
    app = web.Application()
    hook = setup_telegram_webhook(app, SECRET)
    assert hook is not None
    received: list[dict[str, Any]] = []

    async def sink(update: dict[str, Any]) -> None:
        received.append(update)

    hook.attach(sink)
    runner = await start_server(app, "127.0.0.1", 0, limits)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", received
    finally:
        await runner.cleanup()


async def test_an_idle_connection_is_closed_after_the_keepalive_time_out() -> None:
    async with server() as (base_url, _):
        closed_after = await seconds_until_closed(base_url)
    assert 0.4 <= closed_after < 3.0


async def test_a_request_head_that_never_ends_is_closed_after_the_same_time_out() -> None:
    async with server() as (base_url, _):
        closed_after = await seconds_until_closed(base_url, b"POST /hooks/telegram HTTP/1.1\r\nHost: x\r\n")
    assert 0.4 <= closed_after < 3.0


async def test_a_head_dribbled_a_byte_at_a_time_does_not_keep_the_connection_open() -> None:
    host, port = "127.0.0.1", 0
    async with server() as (base_url, _):
        port = int(base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection(host, port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        head = b"POST /hooks/telegram HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 200
        try:
            for byte in head:  # one byte every 50 ms: a slowloris client
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
                if reader.at_eof() or writer.is_closing():
                    break
        except ConnectionError:
            pass
        try:
            await asyncio.wait_for(reader.read(), 3.0)
        except ConnectionError:
            pass
        closed_after = loop.time() - started
        writer.close()
    assert closed_after < 3.0  # sending all 230 bytes would take 11.5 s


async def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    async with server() as (base_url, received):
        host, port = base_url.split("//")[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"{SECRET_HEADER}: {SECRET}\r\nContent-Length: {len(UPDATE)}\r\n\r\n".encode() + UPDATE[:10]
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5.0)
        answered_after = loop.time() - started
        writer.close()
    answer = parse_response(raw)
    assert answer.status == 408 and "not received within 0.5 s" in answer.text
    assert 0.4 <= answered_after < 3.0
    assert received == []


async def test_slow_bodies_hold_a_bounded_number_of_slots_and_a_complete_request_is_still_served() -> None:
    one_slot = ServerLimits(keepalive_timeout_s=5, body_timeout_s=0.6, max_concurrent_bodies=1, lingering_s=0)
    async with server(one_slot) as (base_url, received):
        headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
        slow = asyncio.create_task(  # holds the only slot: half its body, then 2 s of silence
            send_in_pieces(base_url, WEBHOOK_PATH, [UPDATE[:10], UPDATE[10:]], headers=headers, gap_s=2.0)
        )
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        fast = await send_in_pieces(base_url, WEBHOOK_PATH, [UPDATE], headers=headers)
        waited = loop.time() - started
        slow_answer = await slow
    assert slow_answer.status == 408
    assert fast.status == 200 and received == [json.loads(UPDATE)]
    assert waited >= 0.3  # it waited for the slow body's slot, then was served


async def test_malformed_requests_make_a_few_security_lines_not_a_traceback_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    clock = DrivenClock()
    async with server() as (base_url, _):
        security = SecurityLog(SECURITY_LOGGER, burst=BURST, interval_s=60, clock=clock)
        install_malformed_request_filter(security)
        headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
        answers = []
        for n in range(200):
            encoding = "br" if n % 2 else "gzip"  # br: refused by the parser; gzip: not gzip at all
            answers.append(
                await send_in_pieces(
                    base_url, WEBHOOK_PATH, [b"\xff\xfe not compressed"],
                    headers={**headers, "Content-Encoding": encoding},
                )
            )
        clock.now += 61
        security.flush()
    assert {a.status for a in answers} == {400}
    tracebacks = [r for r in caplog.records if r.name == "aiohttp.server" and r.exc_info]
    assert tracebacks == []
    lines = [r for r in caplog.records if getattr(r, "event", None) == "malformed_http_request"]
    assert len(lines) == BURST + 1
    assert lines[-1].suppressed >= 200 - BURST  # type: ignore[attr-defined]  # at least one per request
    sources = {r.source for r in lines[:BURST]}  # type: ignore[attr-defined]
    assert sources <= {"127.0.0.1", "unknown"}  # aiohttp names the caller when the head was bad


async def test_a_real_server_error_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    app = web.Application()
    app.router.add_get("/broken", broken)
    runner = await start_server(app, "127.0.0.1", 0, LIMITS)
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /broken HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = parse_response(await asyncio.wait_for(reader.read(), 5)).status
        writer.close()
    finally:
        await runner.cleanup()
    assert status == 500
    errors = [r for r in caplog.records if r.name == "aiohttp.server" and r.exc_info]
    assert len(errors) == 1 and isinstance(errors[0].exc_info[1], RuntimeError)  # type: ignore[index]
