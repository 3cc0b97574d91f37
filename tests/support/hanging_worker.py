"""A worker process that claims outbox rows and hangs in the middle of sending them.

``python -m tests.support.hanging_worker`` (DATABASE_URL from the environment): one
dispatcher pass whose sender prints ``SENDING <recipient>`` and then never returns, the
state a worker is in when it is SIGKILLed mid-send. The test kills it there.
"""

from __future__ import annotations

import asyncio
import os

from core.config import load_settings
from core.runtime import build_runtime
from core.services.notifications.dispatcher import Dispatcher
from core.services.notifications.outbox_types import RenderedMessage, SendResult


class Hangs:
    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        print(f"SENDING {recipient}", flush=True)
        await asyncio.Event().wait()  # the provider never answers; the process is killed here
        raise AssertionError("unreachable")


async def main() -> None:
    runtime = build_runtime(load_settings({"DATABASE_URL": os.environ["DATABASE_URL"]}))
    try:
        await Dispatcher(runtime, {"sms": Hangs()}).dispatch_once()
    finally:
        await runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
