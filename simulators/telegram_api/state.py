"""The simulated Telegram's state and what can be read from it: updates, faults, the API log."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from simulators.telegram_api.models import CallbackRecord, Fault, SimChat, SimMessage, SimUser, Webhook
from simulators.telegram_api.protocol import (
    BLOCKED,
    DEFAULT_ALLOWED,
    SIMULATOR_BOT_USERNAME,
    SIMULATOR_TOKEN,
    ApiError,
)
from simulators.telegram_api.webhook import failure_message, post_update


def scope_key(scope: dict[str, Any] | None) -> str:
    """The key of a command list's scope (``setMyCommands``): its JSON, the default scope when None."""
    return json.dumps(scope or {"type": "default"}, sort_keys=True)


class SimulatorState:
    """The stand-in's state: users, chats, updates, webhook, commands, faults, the API log."""

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
        self.poll_generation = 0
        self.version = 0
        self._changed = asyncio.Event()
        if self._delivery is not None:
            self._delivery.cancel()
            self._delivery = None

    # -- change notification ------------------------------------------------------------
    def bump(self) -> None:
        """Note a change: ``version`` goes up and every waiter wakes."""
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
            await self.next_change(min(remaining, 0.25))

    async def next_change(self, within: float) -> None:
        """Return at the next change, or after ``within`` seconds."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), within)

    async def wait_changed(self, since: int, within: float) -> int:
        """Wait until ``version`` exceeds ``since`` or ``within`` seconds pass; return ``version``."""
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda: self.version > since, within)
        return self.version

    # -- updates for the bot ---------------------------------------------------------------
    def enqueue(self, kind: str, payload: dict[str, Any]) -> None:
        """Queue an update of ``kind`` for the bot, unless the bot did not ask for that kind."""
        allowed = self.webhook.allowed_updates if self.webhook and self.webhook.allowed_updates else None
        if kind not in (allowed or self.allowed_updates):
            self.bump()
            return
        self.pending.append({"update_id": self._next_update_id, kind: payload})
        self._next_update_id += 1
        self.bump()

    # -- reading -------------------------------------------------------------------
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
        return list(self.commands.get((scope_key(scope), language_code), []))

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
        self.bump()

    def clear_faults(self) -> None:
        self.faults.clear()
        self.bump()

    def take_fault(self, method: str) -> ApiError | None:
        """The error the next call of ``method`` must fail with, if a fault is armed for it."""
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

    # -- the API log --------------------------------------------------------------------------
    def record(self, method: str, params: dict[str, Any], status: int, description: str | None) -> None:
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
        self.bump()

    # -- webhook delivery ----------------------------------------------------------------
    def start_delivery(self) -> None:
        """Deliver pending updates to the webhook (once one is set) from a background task."""
        if self._delivery is None or self._delivery.done():
            self._delivery = asyncio.get_running_loop().create_task(
                self._deliver_loop(), name="tg-sim-webhook"
            )

    async def _deliver_loop(self) -> None:
        backoff = 0.05
        while self.webhook is not None:
            if not self.pending:
                await self.next_change(1.0)
                continue
            hook = self.webhook
            update = self.pending[0]
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession()
            status, reason = await post_update(self._session, hook, update)
            self.delivered.append(
                {"update_id": update["update_id"], "status": status, "at": time.monotonic()}
            )
            if isinstance(status, int) and 200 <= status < 300:
                if self.pending and self.pending[0] is update:
                    self.pending.pop(0)
                hook.last_error_date, hook.last_error_message, backoff = None, None, 0.05
                self.bump()
                continue
            hook.last_error_date = int(time.time())
            hook.last_error_message = failure_message(status, reason)
            self.bump()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def close(self) -> None:
        """Stop delivering, close the HTTP session and wake every waiter (the app is shutting down)."""
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
