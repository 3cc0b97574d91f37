"""Nothing a caller sends makes any public route answer 5xx (issue 9, defect 6).

The whole application runs in local mode (webhooks, health, metrics and the simulators under
/sim/ on one server, the Telegram webhook answered by the real bot) and gets hostile requests
over a real socket: JSON nested 5 000 deep, broken compression, multipart without a boundary,
bytes that are not UTF-8 in the body, the path and the secret header, an update the bot cannot
read. Every answer must be a 2xx-4xx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from core.runtime import Runtime, build_runtime
from smiling_steps.app import create_app
from tests.conftest import make_settings
from tests.integration.test_health import free_port
from tests.support.raw_http import send_in_pieces

TELEGRAM_SECRET = "hostile-tg-secret-0123456789"
AT_SECRET = "hostile-at-secret-0123456789"
SECRET_HEADER = b"X-Telegram-Bot-Api-Secret-Token"

DEEP_ARRAY = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000
NOT_GZIP = b"\xff\xfe\x00 certainly not gzip"
UNREADABLE_UPDATE = json.dumps(  # a date no platform can hold: PTB raises OverflowError
    {"update_id": 9, "message": {"message_id": 1, "date": 10**20, "chat": {"id": 1, "type": "private"}}}
).encode()

POST_ROUTES = [
    "/hooks/lnm/no-such-secret",
    "/hooks/lnm/%FF%FE",
    "/hooks/lnm/%ED%A0%80",
    f"/hooks/sms/{AT_SECRET}/inbound",
    f"/hooks/sms/{AT_SECRET}/delivery",
    "/hooks/sms/%FF/inbound",
    "/hooks/telegram",
    "/sim/daraja/mpesa/stkpush/v1/processrequest",
    "/sim/daraja/mpesa/stkpushquery/v1/query",
    "/sim/daraja/control/next-outcome",
    "/sim/daraja/control/faults",
    "/sim/daraja/control/resolve",
    "/sim/daraja/control/interactive",
    "/sim/daraja/control/decide",
    "/sim/phone/api/sms",
    "/sim/phone/api/prompts/ws_CO_1",
    "/sim/telegram/bot123:abc/sendMessage",
    "/sim/telegram/driver/users",
    "/sim/telegram/driver/users/1/text",
    "/sim/telegram/driver/faults",
    "/sim/at/version1/messaging",
    "/sim/at/control/delivery-report",
]

# (what it is, body, headers)
HOSTILE: list[tuple[str, bytes, dict[str, str]]] = [
    ("deep JSON array", DEEP_ARRAY, {"Content-Type": "application/json"}),
    ("deep JSON object", DEEP_OBJECT, {"Content-Type": "application/json"}),
    ("broken gzip", NOT_GZIP, {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    ("broken gzip form", NOT_GZIP, {"Content-Type": "application/x-www-form-urlencoded",
                                    "Content-Encoding": "gzip"}),
    ("multipart without a boundary", b"from=x", {"Content-Type": "multipart/form-data"}),
    ("multipart garbage", b"--x\r\n\xff\r\n", {"Content-Type": "multipart/form-data; boundary=x"}),
    ("not UTF-8", b"\xff\xfe\x00", {"Content-Type": "application/json; charset=bogus"}),
    ("form in a bogus charset", b"from=%FF&id=%FF",
     {"Content-Type": "application/x-www-form-urlencoded; charset=x"}),
    ("huge integer", b"1" * 5000, {"Content-Type": "application/json"}),
]


@asynccontextmanager
async def whole_app(database_url: str) -> AsyncIterator[tuple[str, Runtime]]:
    """The application in local mode, in Telegram webhook mode, with the bot attached."""
    port = free_port()
    runtime = build_runtime(
        make_settings(
            database_url, PORT=str(port), TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET, AT_WEBHOOK_SECRET=AT_SECRET
        )
    )
    runner = web.AppRunner(create_app(runtime.settings, runtime))
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        for _ in range(300):  # the bot attaches itself to the webhook route once started
            if runtime.components.get("bot") == "ok":
                break
            await asyncio.sleep(0.05)
        assert runtime.components.get("bot") == "ok"
        yield f"http://127.0.0.1:{port}", runtime
    finally:
        await runner.cleanup()
        await runtime.close()


async def _status(base_url: str, path: str, body: bytes, headers: dict[str, str], *, chunked: bool = False,
                  raw_headers: tuple[bytes, ...] = ()) -> int:
    answer = await send_in_pieces(base_url, path, [body], headers=headers, raw_headers=raw_headers,
                                  chunked=chunked)
    return answer.status


async def test_no_hostile_body_on_any_post_route_gets_a_5xx(database_url: str) -> None:
    server_errors = []
    async with whole_app(database_url) as (base_url, _runtime):
        for path in POST_ROUTES:
            for name, body, headers in HOSTILE:
                # the right secret on the Telegram route, so the body is read and parsed
                secret = (SECRET_HEADER + b": " + TELEGRAM_SECRET.encode(),)
                for chunked in (False, True):
                    status = await _status(base_url, path, body, headers, chunked=chunked, raw_headers=secret)
                    if status >= 500:
                        server_errors.append((path, name, "chunked" if chunked else "length", status))
    assert server_errors == []


async def test_the_telegram_webhook_refuses_hostile_input_with_4xx(database_url: str) -> None:
    json_type = {"Content-Type": "application/json"}
    right = SECRET_HEADER + b": " + TELEGRAM_SECRET.encode()
    async with whole_app(database_url) as (base_url, _runtime):
        non_utf8_secret = await _status(
            base_url, "/hooks/telegram", b'{"update_id": 1}', json_type,
            raw_headers=(SECRET_HEADER + b": \xff" + TELEGRAM_SECRET.encode(),),
        )
        deep, deep_object, unreadable = [
            await _status(base_url, "/hooks/telegram", body, json_type, raw_headers=(right,))
            for body in (DEEP_ARRAY, DEEP_OBJECT, UNREADABLE_UPDATE)
        ]
    assert non_utf8_secret == 403
    assert (deep, deep_object) == (400, 400)
    assert unreadable == 400
