"""The aiohttp app: the Bot API at /bot<token>/<method>, the driver API under /driver, /chat."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from simulators.telegram_api.driver import TelegramApiSimulator
from simulators.telegram_api.driver_api import DRIVER_ROUTES, DriverHandler
from simulators.telegram_api.protocol import (
    SIMULATOR_BOT_USERNAME,
    SIMULATOR_TOKEN,
    ApiError,
    DriverError,
    bad,
)
from simulators.telegram_chat import chat_page

_JSON_FIELDS = (
    "reply_markup",
    "allowed_updates",
    "commands",
    "scope",
    "entities",
    "reply_parameters",
    "link_preview_options",
)

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
                raise bad("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad("can't parse JSON object")
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            try:
                form = await request.post()
            except _UNREADABLE:
                raise bad("can't parse the form") from None
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for name in _JSON_FIELDS:
        value = params.get(name)
        if isinstance(value, str):
            try:
                params[name] = json.loads(value)
            except (ValueError, RecursionError):
                raise bad(f"can't parse {name} JSON object") from None
    return params


async def bot_api(request: web.Request) -> web.Response:
    """``/bot<token>/<method>``: one Bot API call, logged with its answer."""
    sim = _state(request)
    method = request.match_info["method"]
    if sim.token is not None and request.match_info["token"] != sim.token:
        return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
    params: dict[str, Any] = {}
    try:
        params = await _request_params(request)
        result = await sim.call(method, params)
    except ApiError as exc:
        sim.record(method, params, exc.code, exc.description)
        return web.json_response(exc.body(), status=exc.code)
    sim.record(method, params, 200, None)
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


def _driver(handler: DriverHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A view running ``handler``: its result as JSON, a driver mistake as a 400 with the reason."""

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
    for method, path, handler in DRIVER_ROUTES:
        if method == "GET":  # add_get also answers HEAD
            app.router.add_get(path, _driver(handler))
        else:
            app.router.add_route(method, path, _driver(handler))
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
