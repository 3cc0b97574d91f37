"""The settlement worker: settles the callbacks the intake stored, in several processes at once if need be.

Inbox rows are settled right after the intake's commit (a wake-up) and by a periodic sweep.
A worker claims rows a chunk at a time (``payments.inbox.claim``: a lease, FOR UPDATE SKIP
LOCKED on PostgreSQL), so any number of workers share one inbox and no row is settled twice.
Each row's result comes from the fields the intake stored, or from its raw body for rows
stored without them. A processing error rolls back and is retried with exponential back-off
(Properties 72, 73); the inbox row stays until it is settled. Runs of plain success callbacks
are settled up to ``SETTLE_BATCH`` per transaction by ``core.services.payments.settlement_batch``
(same rows, far fewer statements); everything else, and any batch that loses a race, goes one
by one through ``settle_in_session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from core.db import claims
from core.db.models import CallbackInbox
from core.db.uow import TransitionConflict
from core.mpesa import DarajaError, StkQueryResult, parse_stk_callback
from core.mpesa.callback import CallbackFields
from core.runtime import Runtime, Wake
from core.services.payments import inbox
from core.services.payments.inbox import ClaimLost, InboxItem, result_from_callback
from core.services.payments.inbox import write_turn as _write_turn
from core.services.payments.settlement import Settled, StkResult, settle_in_session
from core.services.payments.settlement_batch import BatchItem, may_batch, settle_batch

log = logging.getLogger(__name__)

SETTLE_RETRIES = 3
BACKOFF_BASE_S = 0.05
SWEEP_INTERVAL_S = 2.0
SETTLE_BATCH = 256
CLAIM_CHUNK = 256  # rows a worker claims at a time: several workers share a backlog chunk by chunk
# Confirming a success by STK Query (MPESA_CONFIRM_WITH_QUERY): after an answer that is not final
# yet ("being processed", Daraja unreachable) the same push is asked again only after these
# waits, not at every 2 s sweep — Daraja throttles queries, and the watchdog queries too.
CONFIRM_RETRY_S = (5.0, 10.0, 20.0, 40.0, 60.0)
MAX_CONFIRM_WAITS = 10_000


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
        self.worker_id = claims.new_worker_id("settle")

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
        claimed_ids: list[int] = []
        settled = 0
        try:
            while len(claimed_ids) < limit and not (stop is not None and stop.is_set()):
                chunk = min(CLAIM_CHUNK, limit - len(claimed_ids))
                async with _write_turn(self._runtime), self._runtime.uow() as uow:
                    now = self._runtime.clock()
                    items = await inbox.claim(uow.session, self.worker_id, limit=chunk, now=now)
                    await uow.commit()
                claimed_ids += [item.inbox_id for item in items]
                settled += await self._settle_items(items, counts, stop)
                if len(items) < chunk:
                    break  # nothing more to claim now
        finally:
            if settled < len(claimed_ids):
                await self._release(claimed_ids)
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

    async def _release(self, ids: list[int]) -> None:
        with contextlib.suppress(SQLAlchemyError):  # else the lease lapses on its own
            async with _write_turn(self._runtime), self._runtime.uow() as uow:
                await inbox.release(uow.session, self.worker_id, ids)
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
