"""Webhook delivery of one update: the POST Telegram makes, and how a failure reads in getWebhookInfo.

The loop that sends pending updates one at a time, in order, with back-off, is
``SimulatorState.start_delivery``.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from simulators.telegram_api.models import Webhook
from simulators.telegram_api.protocol import SECRET_HEADER


async def post_update(
    session: aiohttp.ClientSession, hook: Webhook, update: dict[str, Any]
) -> tuple[int | str, str]:
    """POST ``update`` to the webhook; the HTTP status and reason, or ``("error", exception name)``."""
    headers = {"Content-Type": "application/json"}
    if hook.secret_token:
        headers[SECRET_HEADER] = hook.secret_token
    try:
        async with session.post(
            hook.url,
            data=json.dumps(update),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            return response.status, response.reason or ""
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return "error", type(exc).__name__


def failure_message(status: int | str, reason: str) -> str:
    """``last_error_message`` after a delivery that did not get a 2xx."""
    if isinstance(status, int):
        return f"Wrong response from the webhook: {status} {reason}"
    return f"Connection error: {reason}"
