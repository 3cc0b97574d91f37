"""M-Pesa STK callbacks: verify, store durably, acknowledge; then settle.

Intake (``CallbackIntake``): each request is verified in this order — the URL secret
resolves the attempt (HMAC hash lookup, constant-time compare), the body parses as a
Daraja STK result, its CheckoutRequestID is the attempt's — and then the raw body is
inserted into the inbox (a duplicate CheckoutRequestID is a no-op, Property 75).
Concurrent requests share one transaction (group commit): a request is answered only
after the commit that holds its inbox row, so nothing is acknowledged before it is
durable, yet a burst costs one commit, not one per callback.

The body is parsed at the door by ``parse_callback_fields`` (a typed msgspec decode of the
Daraja layout, the reference parser for anything else) and the fields settlement needs are
stored next to the raw body (``payments.inbox.inbox_row``).

Settlement: ``SettlementWorker`` (``payments.settlement_worker``, importable from here as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.exc import SQLAlchemyError

from core.db.models import INBOX_UNIQUE, CallbackInbox, PaymentAttempt
from core.db.statements import insert_ignore
from core.mpesa import InvalidCallback
from core.mpesa.callback import CallbackFields, parse_callback_fields
from core.runtime import Runtime
from core.services.payments.inbox import (
    MAX_SWEEP_ATTEMPTS,
    PROVIDER,
    inbox_key,
    inbox_row,
    result_from_callback,
)
from core.services.payments.inbox import write_turn as _write_turn
from core.services.payments.secrets import callback_secret_hash
from core.services.payments.settlement_worker import (
    SETTLE_BATCH,
    SETTLE_RETRIES,
    SWEEP_INTERVAL_S,
    SettlementWorker,
)

__all__ = [  # what importers of this module used before the inbox and the worker had their own
    "MAX_SWEEP_ATTEMPTS", "PROVIDER", "SETTLE_BATCH", "SETTLE_RETRIES", "SWEEP_INTERVAL_S", "CallbackIntake",
    "IntakeAnswer", "SettlementWorker", "inbox_key", "result_from_callback",
]

log = logging.getLogger(__name__)

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
MAX_BATCH = 256
STORE_RETRIES = 3
BACKOFF_BASE_S = 0.05
ANSWER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class IntakeAnswer:
    """HTTP status and JSON body for the provider."""

    status: int
    body: dict[str, Any]


NOT_FOUND = IntakeAnswer(404, {"ResultCode": 1, "ResultDesc": "Not found"})
UNAVAILABLE = IntakeAnswer(503, {"ResultCode": 1, "ResultDesc": "Temporarily unavailable, retry"})


def _bad_request(reason: str) -> IntakeAnswer:
    return IntakeAnswer(400, {"ResultCode": 1, "ResultDesc": f"Rejected: {reason}"})


@dataclass
class _Pending:
    secret_hash: str
    raw: str
    parsed: CallbackFields | None
    parse_error: str | None
    future: asyncio.Future[IntakeAnswer] = field(repr=False)


class CallbackIntake:
    """Verifies and stores STK callbacks, batching concurrent ones into one commit."""

    def __init__(
        self, runtime: Runtime, secret_key: str, *, on_stored: Callable[[list[str]], None] | None = None
    ) -> None:
        self._runtime = runtime
        self._secret_key = secret_key
        self._on_stored = on_stored  # told the CheckoutRequestIDs just stored (wakes settlement)
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def submit(self, secret: str, body: bytes) -> IntakeAnswer:
        """Verify and store one callback; returns what to answer."""
        if not secret or len(secret) > 128:
            return NOT_FOUND
        if self._closing:
            return UNAVAILABLE
        try:
            parsed, error = parse_callback_fields(body), None
        except InvalidCallback as exc:
            parsed, error = None, str(exc)
        pending = _Pending(
            secret_hash=callback_secret_hash(self._secret_key, secret),
            raw=body.decode("utf-8", errors="replace"),
            parsed=parsed,
            parse_error=error,
            future=asyncio.get_running_loop().create_future(),
        )
        self._ensure_writer()
        await self._queue.put(pending)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), ANSWER_TIMEOUT_S)
        except TimeoutError:
            log.error("callback not stored in time; answering 503 so Safaricom may retry")
            return UNAVAILABLE

    async def close(self, grace_s: float = 5.0) -> None:
        """Finish the batch in hand (cancelling a transaction mid-flight can wedge SQLite), then stop."""
        if self._task:
            self._closing = True
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    def _ensure_writer(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="callback-intake")

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:  # closing: store what we have, then stop
                    self._queue.put_nowait(None)
                    break
                batch.append(item)
            try:
                answers, stored = await self._store_with_retry(batch)
            except Exception:  # the writer must outlive any surprise, or every later request hangs
                log.exception("callback intake failed unexpectedly", extra={"batch": len(batch)})
                answers, stored = [UNAVAILABLE] * len(batch), []
            for pending, answer in zip(batch, answers, strict=True):
                if not pending.future.done():
                    pending.future.set_result(answer)
            if stored and self._on_stored:
                self._on_stored(stored)

    async def _store_with_retry(self, batch: list[_Pending]) -> tuple[list[IntakeAnswer], list[str]]:
        for attempt in range(STORE_RETRIES):
            try:
                return await self._store(batch)
            except SQLAlchemyError:
                log.exception("storing callbacks failed", extra={"batch": len(batch), "try": attempt + 1})
                await asyncio.sleep(BACKOFF_BASE_S * 2**attempt)
        return [UNAVAILABLE] * len(batch), []

    async def _store(self, batch: list[_Pending]) -> tuple[list[IntakeAnswer], list[str]]:
        answers: list[IntakeAnswer] = []
        rows: list[dict[str, Any]] = []
        adopt: list[tuple[int, str]] = []
        unknown_ids: list[tuple[int, str]] = []
        async with _write_turn(self._runtime), self._runtime.uow() as uow:
            hashes = list({p.secret_hash for p in batch})
            found = {
                row.callback_secret_hash: row
                for row in (
                    await uow.session.execute(
                        select(
                            PaymentAttempt.id,
                            PaymentAttempt.callback_secret_hash,
                            PaymentAttempt.checkout_request_id,
                        ).where(PaymentAttempt.callback_secret_hash.in_(hashes))
                    )
                ).all()
            }
            seen: set[str] = set()
            for pending in batch:
                answer, row = _verify(pending, found.get(pending.secret_hash))
                answers.append(answer)
                if row is None:
                    continue
                attempt_id, checkout = row
                assert pending.parsed is not None  # _verify accepts only parsed bodies
                key = inbox_key(checkout, pending.parsed.result_code)
                if key not in seen:
                    seen.add(key)
                    rows.append(inbox_row(key, pending.raw, pending.parsed))
                    adopt.append((attempt_id, checkout))
                    if found[pending.secret_hash].checkout_request_id is None:
                        unknown_ids.append((attempt_id, checkout))
            if rows:
                await uow.session.execute(
                    insert_ignore(uow.session, CallbackInbox, unique=INBOX_UNIQUE).values(rows)
                )
                for attempt_id, checkout in unknown_ids:  # usually none: one UPDATE only when needed
                    # A push whose answer was lost (time-out) learns its id from the callback.
                    await uow.session.execute(
                        update(PaymentAttempt)
                        .where(PaymentAttempt.id == attempt_id, PaymentAttempt.checkout_request_id.is_(None))
                        .values(checkout_request_id=checkout)
                        .execution_options(synchronize_session=False)
                    )
                await uow.commit()
        return answers, [checkout for _id, checkout in adopt]


def _verify(
    pending: _Pending, row: Row[int, str, str | None] | None
) -> tuple[IntakeAnswer, tuple[int, str] | None]:
    if row is None or not hmac.compare_digest(row.callback_secret_hash, pending.secret_hash):
        return NOT_FOUND, None  # logged by the route, with the source address and rate-limited
    if pending.parsed is None:
        log.warning("callback body rejected", extra={"attempt": row.id, "reason": pending.parse_error})
        return _bad_request(pending.parse_error or "not a Daraja STK result"), None
    checkout = pending.parsed.checkout_request_id
    if row.checkout_request_id is not None and not hmac.compare_digest(row.checkout_request_id, checkout):
        log.warning(
            "security: callback CheckoutRequestID does not match its attempt", extra={"attempt": row.id}
        )
        return _bad_request("CheckoutRequestID does not match"), None
    return IntakeAnswer(200, ACCEPTED), (row.id, checkout)
