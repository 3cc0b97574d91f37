"""M-Pesa STK callbacks: verify, store durably, acknowledge; then settle.

Intake (``CallbackIntake``): each request is verified in this order — the URL secret
resolves the attempt (HMAC hash lookup, constant-time compare), the body parses as a
Daraja STK result, its CheckoutRequestID is the attempt's — and then the raw body is
inserted into the inbox (a duplicate CheckoutRequestID is a no-op, Property 75).
Concurrent requests share one transaction (group commit): a request is answered only
after the commit that holds its inbox row, so nothing is acknowledged before it is
durable, yet a burst costs one commit, not one per callback.

Settlement (``SettlementWorker``): inbox rows are settled right after the commit and by
a periodic sweep; a processing error rolls back and is retried with exponential
back-off (Properties 72, 73); the inbox row stays until it is settled. Runs of plain
success callbacks are settled up to ``SETTLE_BATCH`` per transaction by
``core.services.payments.settlement_batch`` (same rows, far fewer statements); everything else,
and any batch that loses a race, goes one by one through ``settle_in_session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from core.db.models import INBOX_UNIQUE, CallbackInbox, PaymentAttempt
from core.db.statements import insert_ignore
from core.db.uow import TransitionConflict
from core.mpesa import DarajaError, InvalidCallback, StkQueryResult, parse_stk_callback
from core.mpesa.callback import CallbackFields, parse_callback_fields
from core.runtime import Runtime, Wake
from core.services.payments import inbox
from core.services.payments.inbox import (
    MAX_SWEEP_ATTEMPTS,
    PROVIDER,
    ClaimLost,
    InboxItem,
    inbox_key,
    inbox_row,
    result_from_callback,
)
from core.services.payments.inbox import write_turn as _write_turn
from core.services.payments.secrets import callback_secret_hash
from core.services.payments.settlement import Settled, StkResult, settle_in_session
from core.services.payments.settlement_batch import BatchItem, may_batch, settle_batch

__all__ = [  # PROVIDER and inbox_key moved to payments.inbox; importers of this module keep them
    "MAX_SWEEP_ATTEMPTS", "PROVIDER", "CallbackIntake", "IntakeAnswer", "SettlementWorker", "inbox_key",
    "result_from_callback",
]

log = logging.getLogger(__name__)

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
MAX_BATCH = 256
STORE_RETRIES = 3
SETTLE_RETRIES = 3
BACKOFF_BASE_S = 0.05
SWEEP_INTERVAL_S = 2.0
ANSWER_TIMEOUT_S = 10.0
SETTLE_BATCH = 256
CLAIM_CHUNK = 256  # rows a worker claims at a time: several workers share a backlog chunk by chunk
# Confirming a success by STK Query (MPESA_CONFIRM_WITH_QUERY): after an answer that is not final
# yet ("being processed", Daraja unreachable) the same push is asked again only after these
# waits, not at every 2 s sweep — Daraja throttles queries, and the watchdog queries too.
CONFIRM_RETRY_S = (5.0, 10.0, 20.0, 40.0, 60.0)
MAX_CONFIRM_WAITS = 10_000


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




class SettlementWorker:
    """Settles stored callbacks: right after they are stored, and by a periodic sweep."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        confirm: Callable[[str], Awaitable[StkQueryResult]] | None = None,
        batch_size: int = SETTLE_BATCH,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._sweep_interval_s = sweep_interval_s
        # Common-case successes are settled up to this many per transaction (settlement_batch);
        # 0 settles every row one by one with settle_in_session.
        self.batch_size = batch_size
        self.batched = 0  # rows settled by the batch path (for tests and the benchmark)
        # MPESA_CONFIRM_WITH_QUERY: ask Daraja before trusting a success callback.
        self.confirm = confirm
        self._monotonic = monotonic
        self._confirm_waits: dict[str, tuple[int, float]] = {}  # CheckoutRequestID → (tries, not before)
        # Who holds an inbox claim: unique per worker, so two processes (or two workers of one
        # test) never take each other's rows for their own.
        self.worker_id = f"settle-{secrets.token_hex(8)}"

    def notify(self, checkout_ids: Sequence[str]) -> None:
        """Called by the intake after a commit: settle these soon."""
        self._runtime.wake(Wake.SETTLEMENT)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set: settle everything unprocessed, then wait for a wake-up."""
        wakeup = self._runtime.wakeup(Wake.SETTLEMENT)
        while not stop.is_set():
            wakeup.clear()
            try:
                await self.settle_pending(stop=stop)
            except SQLAlchemyError:
                log.exception("settlement sweep failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), self._sweep_interval_s)

    async def settle_pending(
        self, limit: int = 500, *, stop: asyncio.Event | None = None
    ) -> dict[Settled, int]:
        """Settle unprocessed inbox rows (oldest first, up to ``limit``); returns counts by outcome.

        Rows are claimed ``CLAIM_CHUNK`` at a time (``inbox.claim``), so other workers settle
        other chunks meanwhile; what this call claimed and did not settle (not ready yet,
        failed, or left when stopping) is released at the end for the next sweep, by any worker.
        With ``stop``, returns between two rows once it is set: on shutdown the row in hand is
        finished and the rest stays in the inbox, instead of a backlog running into the
        shutdown grace period and being cancelled mid-transaction.
        """
        counts: dict[Settled, int] = {}
        claimed = settled = 0
        try:
            while claimed < limit and not (stop is not None and stop.is_set()):
                chunk = min(CLAIM_CHUNK, limit - claimed)
                async with _write_turn(self._runtime), self._runtime.uow() as uow:
                    now = self._runtime.clock()
                    items = await inbox.claim(uow.session, self.worker_id, limit=chunk, now=now)
                    await uow.commit()
                claimed += len(items)
                settled += await self._settle_items(items, counts, stop)
                if len(items) < chunk:
                    break  # nothing more to claim now
        finally:
            if settled < claimed:
                await self._release()
        if counts.get(Settled.PAID) or counts.get(Settled.FAILED) or counts.get(Settled.FLAGGED):
            self._runtime.wake(Wake.OUTBOX)
            self._runtime.wake(Wake.PAYMENTS)
        return counts

    async def _settle_items(
        self, items: Sequence[InboxItem], counts: dict[Settled, int], stop: asyncio.Event | None
    ) -> int:
        """Settle claimed rows in order: runs of plain successes in batches, the rest one by one.

        Adds to ``counts``; returns how many rows were marked settled (the rest stay claimed).
        """
        done = 0

        def count(outcome: Settled, n: int = 1) -> None:
            nonlocal done
            counts[outcome] = counts.get(outcome, 0) + n
            if outcome is not Settled.NOT_READY:
                done += n

        i = 0
        while i < len(items):
            if stop is not None and stop.is_set():
                break
            run = self._batchable_run(items, i)
            if run:
                settled, tries_used = await self._settle_batch(run)
                if settled is None:  # lost a race or failed: settle the whole run one by one
                    for one in run:
                        if stop is not None and stop.is_set():
                            break
                        count(await self._settle_row(one.inbox_id, one.result, tries_used=tries_used))
                        i += 1
                    continue
                if settled:
                    count(Settled.PAID, settled)
                    self.batched += settled
                    i += settled
                if settled == len(run):
                    continue
                # items[i] is not the common case (or touches a row the batch settled): one by one
            item = items[i]
            if item.result is None:
                assert item.raw_body is not None
                count(await self.settle_inbox_row(item.inbox_id, item.raw_body))  # fails as it always has
            else:
                count(await self._settle_row(item.inbox_id, item.result))
            i += 1
        return done

    async def _release(self) -> None:
        with contextlib.suppress(SQLAlchemyError):  # else the lease lapses on its own
            async with _write_turn(self._runtime), self._runtime.uow() as uow:
                await inbox.release(uow.session, self.worker_id)
                await uow.commit()

    def _batchable_run(self, items: Sequence[InboxItem], start: int) -> list[BatchItem]:
        """The rows from ``start`` on that may be settled as a batch (none with MPESA_CONFIRM_WITH_QUERY)."""
        if self.confirm is not None or self.batch_size < 1:
            return []
        run: list[BatchItem] = []
        for item in items[start : start + self.batch_size]:
            if item.result is None or not may_batch(item.result):
                break
            run.append(BatchItem(item.inbox_id, item.result))
        return run

    async def _settle_batch(self, run: list[BatchItem]) -> tuple[int | None, int]:
        """Settle the common-case prefix of ``run`` in one transaction.

        Returns how many rows were settled (None: settle the whole run one by one) and how many
        of each row's SETTLE_RETRIES tries the batch used up.
        """
        settings, now = self._runtime.settings, self._runtime.clock()
        try:
            async with _write_turn(self._runtime), self._runtime.uow() as uow:
                settled = await settle_batch(
                    uow.session, run, settings=settings, now=now, worker=self.worker_id
                )
                if settled:
                    await uow.commit()
                return settled, 0
        except (TransitionConflict, IntegrityError):
            return None, 0  # lost a race: the one-by-one path re-reads and decides
        except SQLAlchemyError as exc:
            # The database failed: that was every row's first try, backed off as _settle_row does.
            log.warning(
                "batch settlement failed, retrying one by one",
                extra={"rows": len(run), "error": type(exc).__name__},
            )
            await asyncio.sleep(BACKOFF_BASE_S)
            return None, 1
        except Exception:  # never lose a row to a bug here: the one-by-one path is the reference
            log.exception("batch settlement failed; settling one by one", extra={"rows": len(run)})
            return None, 0

    async def settle_inbox_row(self, inbox_id: int, raw_body: str) -> Settled:
        """Settle one stored callback with retries; the inbox row is marked in the same transaction."""
        return await self._settle_row(
            inbox_id, result_from_callback(CallbackFields.of(parse_stk_callback(raw_body)))
        )

    async def _settle_row(self, inbox_id: int, result: StkResult, *, tries_used: int = 0) -> Settled:
        if self.confirm is not None and result.result_code == 0:
            checked = await self._confirmed(result)
            if checked is None:
                return Settled.NOT_READY  # Daraja still processing or unreachable: the sweep retries
            result = checked
        last_error = ""
        for attempt in range(tries_used, SETTLE_RETRIES):
            try:
                return await self._settle_once(inbox_id, result)
            except ClaimLost:  # another worker has the row now (our lease lapsed): it settles it
                log.warning("inbox row taken over by another worker", extra={"inbox": inbox_id})
                return Settled.NOT_READY
            except (TransitionConflict, IntegrityError) as exc:  # lost a race: re-read and decide again
                last_error = type(exc).__name__
                continue
            except SQLAlchemyError as exc:
                last_error = type(exc).__name__
                log.warning("settlement failed, retrying", extra={"inbox": inbox_id, "try": attempt + 1})
                await asyncio.sleep(BACKOFF_BASE_S * 2**attempt)
        await self._record_failure(inbox_id, last_error)
        return Settled.NOT_READY

    async def _confirmed(self, result: StkResult) -> StkResult | None:
        """The result to settle once STK Query has answered for good; None: not yet (ask later)."""
        assert self.confirm is not None
        checkout = result.checkout_request_id
        tries, not_before = self._confirm_waits.get(checkout, (0, 0.0))
        if self._monotonic() < not_before:
            return None
        answer: StkQueryResult | None
        try:
            answer = await self.confirm(checkout)
        except DarajaError:
            log.warning("confirming a success by STK Query failed; will retry")
            answer = None
        if answer is None or answer.pending or answer.result_code is None:
            wait = CONFIRM_RETRY_S[min(tries, len(CONFIRM_RETRY_S) - 1)]
            self._confirm_waits[checkout] = (tries + 1, self._monotonic() + wait)
            while len(self._confirm_waits) > MAX_CONFIRM_WAITS:
                del self._confirm_waits[next(iter(self._confirm_waits))]
            return None
        self._confirm_waits.pop(checkout, None)
        return result if answer.result_code == 0 else replace(result, query_disagrees=True)

    async def _settle_once(self, inbox_id: int, result: StkResult) -> Settled:
        settings, now = self._runtime.settings, self._runtime.clock()
        async with _write_turn(self._runtime), self._runtime.uow() as uow:
            outcome = await settle_in_session(uow.session, result, settings=settings, now=now)
            if outcome is Settled.NOT_READY:
                return outcome
            await inbox.mark_settled(uow.session, self.worker_id, [inbox_id], now=now)
            await uow.commit()
            return outcome

    async def _record_failure(self, inbox_id: int, error: str) -> None:
        with contextlib.suppress(SQLAlchemyError):
            async with _write_turn(self._runtime), self._runtime.uow() as uow:
                await uow.session.execute(
                    update(CallbackInbox)
                    .where(CallbackInbox.id == inbox_id)
                    .values(attempts=CallbackInbox.attempts + 1, last_error=error[:300])
                )
                await uow.commit()
        log.error(
            "callback could not be settled; left in the inbox for the sweeper", extra={"inbox": inbox_id}
        )
