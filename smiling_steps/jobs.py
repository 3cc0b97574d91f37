"""Periodic background jobs (APScheduler) that shut down cleanly.

APScheduler's ``shutdown(wait=False)`` leaves a running coroutine job going; if the
database engine is disposed under it, the job can hang the shutdown. Jobs registered
here are tracked while they run, and ``stop()`` waits for them (then cancels).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)


class BackgroundJobs:
    """Interval jobs on the running loop: errors are logged, never fatal; stop() waits for them."""

    def __init__(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: set[asyncio.Task[object]] = set()
        self._stopping = False

    def every(self, seconds: float, name: str, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` now and then every ``seconds`` (one instance at a time)."""

        async def run() -> None:
            if self._stopping:
                return
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await job()
            except Exception:  # a failing tick must not kill the scheduler; the next one retries
                log.exception("background job failed", extra={"job": name})
            finally:
                self._running.discard(task)

        self._scheduler.add_job(
            run,
            "interval",
            seconds=seconds,
            id=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),
        )

    def start(self) -> None:
        self._scheduler.start()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop scheduling, let running jobs finish for ``grace_s``, then cancel them."""
        self._stopping = True
        self._scheduler.shutdown(wait=False)
        running = list(self._running)
        if not running:
            return
        _done, pending = await asyncio.wait(running, timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
