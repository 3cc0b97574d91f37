"""The payment watchdog: finish every attempt that has no result yet (Properties 14, 19, 74, 76).

Runs every few seconds and once at start-up. For each live attempt:
- QUEUED with a retry time due → push again (the earlier push provably never reached Daraja);
- QUEUED with no retry time for a while → the process died mid-push: outcome unknown → UNCLEAR;
- AWAITING_CUSTOMER past its 120 s deadline → UNCLEAR (no longer "waiting"), then queried in
  the same tick as below;
- UNCLEAR → STK Query: "being processed" → ask again later with back-off; a final code
  settles exactly like a callback; still unknown 10 minutes after the deadline → NEEDS_REVIEW.

Several watchdogs (worker processes) may run at once: a tick *claims* its due attempts with a
lease (core.db.claims), re-holds each one's lease before working on it, and releases them at
the end, so no two watchdogs query or re-push one attempt at the same time. A watchdog that
dies leaves its claims to run out (:data:`LEASE`); then another one takes them over. Every
state change stays a compare-and-set, so a callback settling meanwhile still wins.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError

from core.db import claims
from core.db.models import PaymentAttempt
from core.db.uow import TransitionConflict
from core.domain.states import PaymentEvent, PaymentStatus
from core.mpesa import DarajaError
from core.runtime import Runtime, Wake
from core.services import audit
from core.services.payments.initiate import DarajaGateway, PaymentService
from core.services.payments.settlement import Settled, StkResult, settle_in_session
from core.services.settings.gateway import MpesaRouter

log = logging.getLogger(__name__)

REVIEW_AFTER = timedelta(minutes=10)
STALE_QUEUED_AFTER = timedelta(seconds=30)
NO_ID_GRACE = timedelta(seconds=60)  # a push with no CheckoutRequestID can only learn it by callback
QUERY_BACKOFF_S = (3, 5, 10, 20, 30, 60)
BATCH_SIZE = 200
# One attempt's work is at most a push or an STK Query (the Daraja client's retries included,
# ~100 s at worst) and a settlement; a lease is re-held when less than that is left.
STEP_BUDGET = timedelta(seconds=100)
LEASE = timedelta(seconds=150)  # also how long a dead watchdog's attempts wait for another


def query_delay(query_count: int) -> timedelta:
    """Back-off between STK Queries of one attempt."""
    return timedelta(seconds=QUERY_BACKOFF_S[min(query_count, len(QUERY_BACKOFF_S) - 1)])


class Watchdog:
    """One ``tick()`` moves every overdue attempt towards a result (at most one STK Query each)."""

    def __init__(
        self, runtime: Runtime, gateway: DarajaGateway, payments: PaymentService, *, worker: str | None = None
    ) -> None:
        self._runtime = runtime
        self._gateway = gateway
        self._payments = payments
        self.worker = worker or claims.new_worker_id("watchdog")

    async def _gateway_for(self, attempt: PaymentAttempt) -> DarajaGateway:
        # Ask with the credentials of the mode the attempt was made in (admins may switch modes).
        if isinstance(self._gateway, MpesaRouter):
            return (await self._gateway.route_for(attempt.environment)).gateway
        return self._gateway

    async def tick(self) -> dict[str, int]:
        """Handle every due attempt once; returns counts by action (for logs and tests)."""
        now = self._runtime.clock()
        counts: dict[str, int] = {}
        claimed = await self._claim(now)
        try:
            for attempt, lease in claimed:
                if not await self._hold(attempt.id, lease):
                    continue  # our lease ran out and another watchdog took the attempt over
                for action in await self._handle(attempt, now):
                    counts[action] = counts.get(action, 0) + 1
        finally:
            await self._release([attempt.id for attempt, _lease in claimed])
        if counts:
            log.info("watchdog tick", extra={f"n_{k}": v for k, v in counts.items()})
            self._runtime.wake(Wake.OUTBOX)
            self._runtime.wake(Wake.PAYMENTS)
        return counts

    async def _claim(self, now: datetime) -> list[tuple[PaymentAttempt, datetime]]:
        """Claim the due attempts for this watchdog (committed at once) and load them."""
        until = now + LEASE
        async with self._runtime.uow() as uow:
            rows = await claims.claim_batch(  # id order: the oldest attempt first
                uow.session, PaymentAttempt, due=_due(now), order_by=(PaymentAttempt.id,), limit=BATCH_SIZE,
                now=now, until=until, worker=self.worker,
            )
            ids = [row[0] for row in rows]
            if not ids:
                return []
            loaded = select(PaymentAttempt).where(PaymentAttempt.id.in_(ids))
            found = (await uow.session.scalars(loaded)).all()
            await uow.commit()
        by_id = {attempt.id: attempt for attempt in found}
        return [(by_id[i], until) for i in ids if i in by_id]

    async def _hold(self, attempt_id: int, lease: datetime) -> bool:
        """True if the attempt is still ours with at least :data:`STEP_BUDGET` of lease left."""
        now = self._runtime.clock()
        if lease - now >= STEP_BUDGET:
            return True
        async with self._runtime.uow() as uow:
            held = await claims.hold(
                uow.session, PaymentAttempt, attempt_id, worker=self.worker, held_until=lease,
                until=now + LEASE,
            )
            await uow.commit()
        return held

    async def _release(self, attempt_ids: list[int]) -> None:
        if not attempt_ids:
            return
        try:
            async with self._runtime.uow() as uow:
                await claims.release(uow.session, PaymentAttempt, attempt_ids, worker=self.worker)
                await uow.commit()
        except Exception:  # the leases run out by themselves; the next tick is only later
            log.exception("watchdog could not release its claims", extra={"count": len(attempt_ids)})

    async def _handle(self, attempt: PaymentAttempt, now: datetime) -> list[str]:
        """The actions taken for one due attempt (a deadline passing is followed by its query)."""
        status = PaymentStatus(attempt.status)
        if status is PaymentStatus.QUEUED:
            if attempt.next_check_at is not None:
                await self._payments.retry_queued(attempt.id)
                return ["repushed"]
            outcome = await self._transition(
                attempt,
                PaymentEvent.PUSH_OUTCOME_UNKNOWN,
                now,
                "no push answer recorded (restart mid-push?)",
                next_check_at=now,
            )
            return [outcome]
        if status is PaymentStatus.AWAITING_CUSTOMER:
            passed = await self._transition(
                attempt,
                PaymentEvent.DEADLINE_PASSED,
                now,
                "no result by the 120 s deadline",
                next_check_at=now,
            )
            if passed == "raced":
                return [passed]
            # Ask M-Pesa in this tick rather than the next: the client is waiting for an answer.
            # Still one query per attempt per tick, and none if a callback settled it meanwhile.
            unclear = await self._reload(attempt.id)
            if unclear is None or unclear.status != PaymentStatus.UNCLEAR:
                return [passed]
            return [passed, await self._query(unclear, now)]
        return [await self._query(attempt, now)]

    async def _reload(self, attempt_id: int) -> PaymentAttempt | None:
        async with self._runtime.uow() as uow:
            return await uow.session.get(PaymentAttempt, attempt_id)

    async def _query(self, attempt: PaymentAttempt, now: datetime) -> str:
        overdue = now - attempt.deadline_at
        if attempt.checkout_request_id is None:
            if overdue >= NO_ID_GRACE:
                return await self._transition(
                    attempt,
                    PaymentEvent.FLAG,
                    now,
                    "push outcome unknown and no callback arrived",
                    review=True,
                )
            return await self._reschedule(attempt, now + timedelta(seconds=10))
        try:
            answer = await (await self._gateway_for(attempt)).stk_query(attempt.checkout_request_id)
        except DarajaError as exc:
            log.warning("stk query failed", extra={"attempt": attempt.id, "error": type(exc).__name__})
            answer = None
        if answer is None or answer.pending or answer.result_code is None:
            if overdue >= REVIEW_AFTER:
                return await self._transition(
                    attempt,
                    PaymentEvent.FLAG,
                    now,
                    "no final result 10 minutes after the deadline",
                    review=True,
                )
            return await self._reschedule(attempt, now + query_delay(attempt.query_count))
        result = StkResult(
            checkout_request_id=attempt.checkout_request_id,
            result_code=answer.result_code,
            result_desc=answer.result_desc,
            source="query",
        )
        for _ in range(3):
            try:
                async with self._runtime.uow() as uow:
                    outcome = await settle_in_session(
                        uow.session, result, settings=self._runtime.settings, now=now
                    )
                    await uow.commit()
                return f"settled_{outcome.value}"
            except (TransitionConflict, IntegrityError):
                continue  # a callback settled it at the same moment: re-read
        return f"settled_{Settled.DUPLICATE.value}"

    async def _transition(
        self,
        attempt: PaymentAttempt,
        event: PaymentEvent,
        now: datetime,
        reason: str,
        *,
        review: bool = False,
        next_check_at: datetime | None = None,
    ) -> str:
        values: dict[str, Any] = {"next_check_at": next_check_at}
        if review:
            values["review_reason"] = reason
        async with self._runtime.uow() as uow:
            try:
                # Only from the status this decision was based on: if a callback settled the
                # attempt meanwhile (e.g. while our STK Query was in flight), stand back.
                await audit.apply_transition(
                    uow.session, "payment", attempt.id, event, previous=attempt.status, actor="system",
                    reason=reason, only_from=(attempt.status,), **values,
                )
            except TransitionConflict:
                return "raced"
            await uow.commit()
        if review:
            log.warning("payment needs review", extra={"attempt": attempt.id, "reason": reason})
        return event.value

    async def _reschedule(self, attempt: PaymentAttempt, when: datetime) -> str:
        async with self._runtime.uow() as uow:
            row = await uow.session.get_one(PaymentAttempt, attempt.id)
            if row.status != PaymentStatus.UNCLEAR:
                return "raced"
            row.next_check_at = when
            row.query_count += 1
            await uow.commit()
        return "pending"


def _due(now: datetime) -> ColumnElement[bool]:
    """Attempts the watchdog has to look at now (see the module docstring)."""
    return or_(
        (PaymentAttempt.status == PaymentStatus.QUEUED)
        & (
            (PaymentAttempt.next_check_at <= now)
            | (
                PaymentAttempt.next_check_at.is_(None)
                & (PaymentAttempt.created_at <= now - STALE_QUEUED_AFTER)
            )
        ),
        (PaymentAttempt.status == PaymentStatus.AWAITING_CUSTOMER) & (PaymentAttempt.deadline_at <= now),
        (PaymentAttempt.status == PaymentStatus.UNCLEAR)
        & ((PaymentAttempt.next_check_at <= now) | PaymentAttempt.next_check_at.is_(None)),
    )
