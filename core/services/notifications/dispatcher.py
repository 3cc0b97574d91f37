"""The outbox dispatcher: claims due messages, renders, sends, records; retries and falls back.

Each message is rendered in its recipient's language as stored when it is sent (the
``_route`` names the client or practitioner), so a switch with /language or LUGHA also
changes messages queued before it; nobody stored: DEFAULT_LANGUAGE.

Guarantee: at least once, and at most one repeat per crash. A message is marked SENT in a
transaction *after* the provider accepted it, so a crash between the two leaves the row
claimed; when its lease runs out another pass sends it again. Nothing is ever dropped.

Several dispatchers (threads of one process, processes, machines) may share a database:
each claims rows under its own name with a lease (core.db.claims), and right before a send
it makes sure the lease outlasts the send (``send_timeout``), extending it if a row waited
for a free slot; a row taken over meanwhile is dropped, not sent. So two *live* workers
never send one message; only a worker that dies after the provider accepted a message and
before the mark causes one repeat (docs/notifications.md, "Several workers").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.claims import new_worker_id
from core.db.models import Client, Therapist
from core.i18n import LANGUAGE_CODES
from core.runtime import Runtime, Wake
from core.services.notifications import outbox_store as store
from core.services.notifications.outbox_types import Sender, SendResult
from core.templates import TEMPLATES, parse_time, render

log = logging.getLogger(__name__)

OUTBOX_WORKER = Wake.OUTBOX
WRITE_TRIES = 3
T = TypeVar("T")


def backoff(attempts: int, *, base: float = 5.0, cap: float = 1800.0) -> timedelta:
    """Delay before the next try after ``attempts`` tries: 5 s, 10 s, 20 s, … capped at 30 min."""
    exponent = max(attempts - 1, 0)
    return timedelta(seconds=min(base * (2 ** min(exponent, 30)), cap))


class Dispatcher:
    """Sends outbox rows through ``senders`` (channel → Sender).

    ``run(stop)`` loops until ``stop`` is set: one :meth:`dispatch_once` pass, then it
    waits for ``runtime.wake(Wake.OUTBOX)`` or ``poll_interval`` seconds. Every pass also
    reclaims rows whose lease ran out. Several dispatchers (processes) may share a database.
    """

    def __init__(
        self,
        runtime: Runtime,
        senders: Mapping[str, Sender],
        *,
        batch_size: int = 50,
        poll_interval: float = 2.0,
        lease: timedelta = timedelta(seconds=60),
        send_timeout: float = 45.0,
        max_attempts: int = 10,
        concurrency: int = 10,
        worker: str | None = None,
    ) -> None:
        if send_timeout >= lease.total_seconds():
            raise ValueError("send_timeout must be shorter than the lease")
        self.worker = worker or new_worker_id("outbox")
        self.runtime = runtime
        self.senders = dict(senders)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.send_timeout = send_timeout
        self.max_attempts = max_attempts
        self._slots = asyncio.Semaphore(concurrency)

    # -- the loop -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set; errors are logged and the loop carries on."""
        wake = self.runtime.wakeup(OUTBOX_WORKER)
        log.info("outbox dispatcher started", extra={"channels": ",".join(sorted(self.senders))})
        while not stop.is_set():
            wake.clear()
            try:
                handled = await self.dispatch_once()
            except Exception:
                log.exception("outbox pass failed; retrying after the poll interval")
                handled = 0
            if handled >= self.batch_size:
                continue  # more may be waiting
            await _wait_any(wake, stop, timeout=self.poll_interval)
        log.info("outbox dispatcher stopped")

    async def dispatch_once(self) -> int:
        """Claim the due rows (one batch), send them concurrently, record each outcome."""
        now = self.runtime.clock()
        async with self.runtime.uow() as uow:
            rows = await store.claim_due(
                uow.session, now=now, lease=now + self.lease, limit=self.batch_size, worker=self.worker
            )
            await uow.commit()
        if rows:
            results = await asyncio.gather(*(self._guarded(row) for row in rows), return_exceptions=True)
            for row, outcome in zip(rows, results, strict=True):
                if isinstance(outcome, Exception):  # e.g. the database failed while recording
                    log.error("outbox row left claimed; it is retried when its lease ends",
                              extra={"outbox_id": row.id, "error": f"{type(outcome).__name__}: {outcome}"})
                elif isinstance(outcome, BaseException):  # cancellation, interpreter exit: not ours to eat
                    raise outcome
        return len(rows)

    async def _guarded(self, row: store.ClaimedRow) -> None:
        async with self._slots:
            await self._process(row)

    # -- one row ------------------------------------------------------------------------
    async def _process(self, row: store.ClaimedRow) -> None:
        expires = row.route.get("expires_at")
        if expires and self.runtime.clock() >= parse_time(expires):
            await self._finish(row, store.EXPIRED, "not sent: too late to be useful")
            return
        sender = self.senders.get(row.channel)
        if sender is None:
            await self._record(row, SendResult.give_up(f"no {row.channel} sender configured"))
            return
        try:
            message = render(row.template, row.channel, row.data, await self._language(row.route))
        except Exception as exc:  # a template/data bug: retrying cannot help
            log.exception("outbox render failed", extra={"outbox_id": row.id, "template": row.template})
            await self._record(row, SendResult.give_up(f"render failed: {type(exc).__name__}: {exc}"))
            return
        held = await self._hold(row)
        if held is None:
            log.info("outbox row taken over by another worker; not sent here", extra={"outbox_id": row.id})
            return
        row = held
        try:
            result = await asyncio.wait_for(sender.send(row.recipient, message), timeout=self.send_timeout)
        except TimeoutError:
            result = SendResult.retry(f"send timed out after {self.send_timeout:.0f} s")
        except Exception as exc:  # a sender bug or an unexpected provider error: try again later
            log.exception("outbox sender raised", extra={"outbox_id": row.id, "channel": row.channel})
            result = SendResult.retry(f"{type(exc).__name__}: {exc}")
        await self._record(row, result)

    async def _hold(self, row: store.ClaimedRow) -> store.ClaimedRow | None:
        """The row with a lease that outlasts the send, or None if it is no longer ours.

        A row claimed a moment ago keeps its lease; one that waited for a slot behind slow
        sends gets it extended first (a compare-and-set: fails if someone took it over).
        """
        now = self.runtime.clock()
        slack = (self.lease.total_seconds() - self.send_timeout) / 2
        if (row.lease - now).total_seconds() >= self.send_timeout + slack:
            return row

        async def _extend(session: AsyncSession) -> store.ClaimedRow | None:
            return await store.hold(session, row, until=now + self.lease)

        return await self._write(_extend)

    async def _language(self, route: Mapping[str, Any]) -> str:
        """The stored language of the client or practitioner a message is for."""
        default = str(getattr(self.runtime.settings, "default_language", "en"))
        role, person = str(route.get("role")), route.get("id")
        if role not in ("client", "therapist") or not isinstance(person, int):
            return default
        column, key = (Client.language, Client.id) if role == "client" else (Therapist.language, Therapist.id)
        async with self.runtime.uow() as uow:
            language = await uow.session.scalar(select(column).where(key == person))
        return language if language in LANGUAGE_CODES else default

    async def _record(self, row: store.ClaimedRow, result: SendResult) -> None:
        now = self.runtime.clock()
        context = {
            "outbox_id": row.id, "channel": row.channel, "template": row.template, "attempt": row.attempts,
        }
        if result.ok:

            async def _sent(session: AsyncSession) -> None:
                await store.mark_sent(session, row, now=now, provider_message_id=result.provider_message_id)

            await self._write(_sent)
            log.info("notification sent", extra=context)
            return
        exhausted = row.attempts >= self.max_attempts
        if not result.permanent and not exhausted:
            wait = backoff(row.attempts)
            if result.retry_after is not None:
                wait = max(wait, timedelta(seconds=result.retry_after))

            async def _retry(session: AsyncSession) -> None:
                await store.mark_retry(session, row, due_at=now + wait, error=result.error)

            await self._write(_retry)
            log.warning("notification will be retried", extra={**context, "error": result.error,
                                                                "retry_in_s": int(wait.total_seconds())})
            return
        why = result.error or "failed"
        if exhausted and not result.permanent:
            why = f"gave up after {row.attempts} attempts: {why}"
        fallback = self._fallback_for(row)

        async def _final(session: AsyncSession) -> None:
            if result.unreachable and row.channel == "telegram":
                await store.mark_telegram_unreachable(session, row.route)
            if fallback is not None:
                rerouted = f"{why}; sent by SMS"
                if await store.mark_final(session, row, status=store.REROUTED, error=rerouted):
                    await store.enqueue(session, **fallback)
            else:
                await store.mark_final(session, row, status=store.FAILED, error=why)

        await self._write(_final)
        if fallback is not None:
            log.warning("notification rerouted to SMS", extra={**context, "error": why})
            self.runtime.wake(OUTBOX_WORKER)
        else:
            log.error("notification failed", extra={**context, "error": why})

    async def _finish(self, row: store.ClaimedRow, status: str, why: str) -> None:
        async def _mark(session: AsyncSession) -> None:
            await store.mark_final(session, row, status=status, error=why)

        await self._write(_mark)
        log.info("notification not sent", extra={"outbox_id": row.id, "status": status, "reason": why})

    async def _write(self, change: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``change`` in its own transaction, retrying a few times on database errors: a
        result that cannot be recorded means the message is sent again after the lease."""
        for attempt in range(WRITE_TRIES):
            try:
                async with self.runtime.uow() as uow:
                    outcome = await change(uow.session)
                    await uow.commit()
                return outcome
            except (DBAPIError, OSError):
                if attempt == WRITE_TRIES - 1:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")  # the last try returns or raises

    def _fallback_for(self, row: store.ClaimedRow) -> dict[str, Any] | None:
        """Telegram → SMS when the row knows the recipient's phone and the template has an SMS form."""
        phone = row.route.get("fallback_sms")
        if row.channel != "telegram" or not phone:
            return None
        spec = TEMPLATES.get(row.template)
        if spec is None or "sms" not in spec.channels:
            return None
        route = {k: v for k, v in row.route.items() if k != "fallback_sms"}
        fallback: dict[str, Any] = {
            "channel": "sms",
            "recipient": str(phone),
            "template": row.template,
            "data": {**row.data, "_route": route},
            "dedupe_key": store.fit_dedupe_key(f"{row.dedupe_key}:sms"),
        }
        try:
            store.validate(fallback["channel"], fallback["recipient"], fallback["template"], fallback["data"])
        except ValueError:
            return None
        return fallback


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    """Return when any event is set or after ``timeout`` seconds."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
