"""A worker process for the multi-worker tests: ``python -m tests.support.worker_process MODE``.

Settings come from the environment (DATABASE_URL, TELEGRAM_*, AT_*, SMTP_PORT …: see
:func:`tests.support.workers.process_env`).

- ``drain``: hand due reminders to the outbox, then dispatch until nothing is due, through
  the real Telegram, Africa's Talking and SMTP senders (pointed at the test's simulators);
  prints ``SENT <n>``.
- ``hang``: one dispatcher pass whose sender prints ``SENDING <recipient>`` and never
  returns — the state a worker is in when it is SIGKILLed mid-send (the test kills it).
"""

from __future__ import annotations

import asyncio
import os
import sys

from core.config import load_settings
from core.runtime import build_runtime
from core.services.notifications.dispatcher import Dispatcher
from core.services.notifications.outbox_types import RenderedMessage, SendResult
from core.services.notifications.reminders import run_due_reminders


class Hangs:
    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        print(f"SENDING {recipient}", flush=True)
        await asyncio.Event().wait()  # the provider never answers; the process is killed here
        raise AssertionError("unreachable")


async def _drain(dispatcher: Dispatcher) -> int:
    sent = 0
    for _round in range(2):  # the other process may still hold rows on the first round's end
        await run_due_reminders(dispatcher.runtime, limit=7)
        while handled := await dispatcher.dispatch_once():
            sent += handled
    return sent


async def main(mode: str) -> None:
    from tests.support.workers import process_senders  # noqa: PLC0415 - test support, not the product

    runtime = build_runtime(load_settings(dict(os.environ)))
    try:
        if mode == "hang":
            await Dispatcher(runtime, {"sms": Hangs()}).dispatch_once()
            return
        senders, close = process_senders(runtime.settings, int(os.environ["SMTP_PORT"]))
        try:
            sent = await _drain(Dispatcher(runtime, senders, batch_size=10, concurrency=5))
        finally:
            await close()
        print(f"SENT {sent}", flush=True)
    finally:
        await runtime.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
