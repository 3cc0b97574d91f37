"""The payment engine as a state machine, explored by Hypothesis against a real database.

The services run in-process (PaymentService, CallbackIntake, SettlementWorker, Watchdog)
on one migrated database per test run (SQLite, and PostgreSQL when TEST_DATABASE_URL is
set). Daraja is a small in-memory fake that behaves like the real one: a push either
never reaches it (unavailable), reaches it with the answer lost (outcome unknown), or is
accepted; STK Query reports the push's result once there is one. Callbacks are fed to
``CallbackIntake.submit(secret, body)`` — the secret comes from the CallBackURL the fake
received — and settled by ``SettlementWorker.settle_pending()``, so each step is fast.

Rules: start a payment on a random booking; success and failure callbacks (1, 1032, 1037,
2001, 1031, "SFC_IC0003"); duplicates; failure-then-success and success-then-failure for
one push; the callback arriving after the watchdog's query settled the push; watchdog
ticks past the deadline with the query answering pending, a failure or success; and a
settlement run whose database commits fail (OperationalError), after which the inbox row
must still be there for a later sweep.

Invariants after every step: money Safaricom reports is never dropped (a push reported as
paid ends PAID or NEEDS_REVIEW once its callback or query was processed); at most one PAID
attempt per booking; PAID never changes; a failure state changes only on a later success;
a booking is CONFIRMED iff it has a PAID attempt; every attempt status change has an
audit entry with previous/new that replays to the current status; the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from core.db.models import AuditEntry, Booking, CallbackInbox, Outbox, PaymentAttempt
from core.domain.phone import normalise_phone
from core.domain.states import FAILED_PAYMENT_STATUSES, LIVE_PAYMENT_STATUSES, BookingStatus, PaymentStatus
from core.mpesa import (
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaUnavailable,
    StkPushAccepted,
    StkQueryResult,
)
from core.runtime import Runtime, build_runtime
from core.services.audit import ChainRecord, ChainVerifier, verify_chain
from core.services.payments import intake as callbacks_module
from core.services.payments import settlement_worker
from core.services.payments.initiate import PaymentRefused, PaymentService
from core.services.payments.intake import PROVIDER, CallbackIntake, SettlementWorker, inbox_key
from core.services.payments.watchdog import Watchdog
from tests.conftest import make_settings
from tests.factories import make_booking
from tests.support.payments import Clock

T = TypeVar("T")

SECRET_KEY = "stateful-test-secret-key"
DEADLINE_S = 120
FAILURE_CODES: tuple[int | str, ...] = (1, 1032, 1037, 2001, 1031, "SFC_IC0003")
FAILURE_STATUS = {1032: PaymentStatus.CANCELLED, 1037: PaymentStatus.TIMED_OUT}
RESULT_DESC = {
    0: "The service request is processed successfully.",
    1: "The balance is insufficient for the transaction.",
    1032: "Request cancelled by user.",
    1037: "DS timeout user cannot be reached",
    2001: "The initiator information is invalid.",
    1031: "Request cancelled by user",
    "SFC_IC0003": "The operator does not exist.",
}
PAID, REVIEW = PaymentStatus.PAID, PaymentStatus.NEEDS_REVIEW
LIVE = frozenset(LIVE_PAYMENT_STATUSES)
FAILURES = frozenset(FAILED_PAYMENT_STATUSES)


def expected_failure_status(code: int | str) -> PaymentStatus:
    return FAILURE_STATUS.get(code, PaymentStatus.FAILED)  # type: ignore[call-overload]


# -- an honest in-memory Daraja ------------------------------------------------------------------


@dataclass
class FakePush:
    """One push that reached the fake Daraja."""

    checkout: str
    merchant: str
    secret: str
    phone: str
    amount: int
    receipt: str
    attempt_id: int | None = None
    answer: int | str | None = None  # what STK Query says; None while "being processed"
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # bodies we POSTed, in order
    queried: list[int | str] = field(default_factory=list)  # final codes STK Query reported


class FakeDaraja:
    """The DarajaGateway protocol, in memory; ``modes`` decides what happens to the next pushes."""

    def __init__(self) -> None:
        self.pushes: dict[str, FakePush] = {}
        self.modes: deque[str] = deque()
        self.retry_mode = "accept"  # for pushes the watchdog sends (QUEUED retries)
        self.unavailable_pushes = 0
        self._numbers = itertools.count(1)

    async def stk_push(
        self,
        *,
        phone: str,
        amount: int,
        callback_url: str,
        account_reference: str = "SmilingSteps",
        transaction_desc: str,
    ) -> StkPushAccepted:
        mode = self.modes.popleft() if self.modes else self.retry_mode
        if mode == "unavailable":  # never reached Daraja: nothing on the phone
            self.unavailable_pushes += 1
            raise DarajaUnavailable("Daraja not reached: ConnectError", http_status=503)
        n = next(self._numbers)
        push = FakePush(
            checkout=f"ws_CO_{n:020d}",
            merchant=f"{n}-{n * 7}-1",
            secret=callback_url.rsplit("/", 1)[1],
            phone=phone,
            amount=amount,
            receipt=f"TST{n:07d}",
        )
        self.pushes[push.checkout] = push
        if mode == "unknown":  # the prompt is on the phone, our answer got lost
            raise DarajaOutcomeUnknown("no answer from Daraja after sending: ReadTimeout")
        return StkPushAccepted(
            merchant_request_id=push.merchant,
            checkout_request_id=push.checkout,
            response_code="0",
            response_description="Success. Request accepted for processing",
            customer_message="Success. Request accepted for processing",
        )

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        push = self.pushes.get(checkout_request_id)
        if push is None:
            raise DarajaRejected("Bad Request - Invalid CheckoutRequestID", error_code="400.002.02")
        if push.answer is None:
            return StkQueryResult(True, None, None, checkout_request_id=checkout_request_id)
        push.queried.append(push.answer)
        return StkQueryResult(
            False,
            push.answer,
            RESULT_DESC[push.answer],
            merchant_request_id=push.merchant,
            checkout_request_id=checkout_request_id,
        )


def callback_body(push: FakePush, code: int | str) -> bytes:
    """The exact JSON Safaricom POSTs for ``push`` ending with ``code``."""
    stk: dict[str, Any] = {
        "MerchantRequestID": push.merchant,
        "CheckoutRequestID": push.checkout,
        "ResultCode": code,
        "ResultDesc": RESULT_DESC[code],
    }
    if code == 0:
        stk["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": push.amount},
                {"Name": "MpesaReceiptNumber", "Value": push.receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20261126101500},
                {"Name": "PhoneNumber", "Value": int(push.phone)},
            ]
        }
    return json.dumps({"Body": {"stkCallback": stk}}).encode()


# -- database fault injection -------------------------------------------------------------------


class FailingCommits:
    """Wraps the Runtime's session factory: while ``failures_left`` > 0 a commit rolls back and
    raises OperationalError, as when the database connection drops at COMMIT (after
    ``passes_first`` commits that go through)."""

    def __init__(self, inner: Callable[..., Any]) -> None:
        self.inner = inner
        self.failures_left = 0
        self.passes_first = 0
        self.commits = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        session = self.inner(*args, **kwargs)
        real_commit = session.commit

        async def commit() -> None:
            self.commits += 1
            if self.passes_first > 0:
                self.passes_first -= 1
            elif self.failures_left > 0:
                self.failures_left -= 1
                await session.rollback()
                raise OperationalError("COMMIT", None, ConnectionResetError("connection lost at commit"))
            await real_commit()

        session.commit = commit
        return session


# -- the world one test run shares ----------------------------------------------------------------


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    runtime: Runtime
    clock: Clock
    fake: FakeDaraja
    commits: FailingCommits
    payments: PaymentService
    intake: CallbackIntake
    settlement: SettlementWorker
    watchdog: Watchdog
    verified_seq: int = 0
    verified_hash: str = "0" * 64

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)


def build_world(database_url: str) -> World:
    loop = asyncio.new_event_loop()
    clock = Clock()
    runtime = build_runtime(
        make_settings(
            database_url,
            SECRET_KEY=SECRET_KEY,
            PUBLIC_BASE_URL="http://127.0.0.1:9",
            MPESA_PAYMENT_DEADLINE_SECONDS=str(DEADLINE_S),
        ),
        clock=clock,
    )
    commits = FailingCommits(runtime.sessions)
    runtime.sessions = commits  # type: ignore[assignment]
    fake = FakeDaraja()
    payments = PaymentService(runtime, fake, SECRET_KEY)
    return World(
        loop=loop,
        runtime=runtime,
        clock=clock,
        fake=fake,
        commits=commits,
        payments=payments,
        intake=CallbackIntake(runtime, SECRET_KEY),
        settlement=SettlementWorker(runtime),
        watchdog=Watchdog(runtime, fake, payments),
    )


def close_world(world: World) -> None:
    world.run(world.intake.close())
    world.run(world.runtime.close())
    world.loop.close()


# -- the machine --------------------------------------------------------------------------------


@dataclass
class AttemptModel:
    booking_id: int
    status: str  # last observed
    successes_seen: int = 0  # success reports counted when ``status`` was observed


# Every typed format the chat accepts: 07…, 01…, 2547…, +2547…, 7… (8 more digits each).
phones = st.builds(
    lambda prefix, rest: f"{prefix}{rest:08d}",
    st.sampled_from(["07", "01", "2547", "+2547", "7"]),
    st.integers(0, 99_999_999),
)
push_modes = st.sampled_from(["accept", "accept", "accept", "accept", "unavailable", "unknown"])
failure_codes = st.sampled_from(FAILURE_CODES)
codes = st.one_of(st.just(0), failure_codes)  # half successes
query_answers = st.one_of(st.none(), st.just(0), failure_codes)  # pending, paid, failed


class PaymentMachine(RuleBasedStateMachine):
    world: World  # set by the test before the run

    bookings = Bundle("bookings")

    def __init__(self) -> None:
        super().__init__()
        self.booking_ids: list[int] = []
        self.attempts: dict[int, AttemptModel] = {}
        self.pushes: dict[str, FakePush] = {}  # this example's pushes that reached Daraja

    # -- helpers ------------------------------------------------------------------------------

    def run(self, work: Awaitable[T]) -> T:
        return self.world.run(work)

    def adopt_new_pushes(self) -> None:
        """Link pushes the fake received to attempts of this example (by CheckoutRequestID)."""
        unlinked = [p for p in self.world.fake.pushes.values() if p.attempt_id is None]
        if not unlinked:
            return

        async def lookup() -> dict[str, int]:
            async with self.world.runtime.uow() as uow:
                rows = await uow.session.execute(
                    select(PaymentAttempt.checkout_request_id, PaymentAttempt.id).where(
                        PaymentAttempt.checkout_request_id.in_([p.checkout for p in unlinked])
                    )
                )
                return {checkout: attempt_id for checkout, attempt_id in rows.all()}

        for checkout, attempt_id in self.run(lookup()).items():
            push = self.world.fake.pushes[checkout]
            push.attempt_id = attempt_id
            if attempt_id in self.attempts:
                self.pushes[checkout] = push

    def successes_reported(self, attempt_id: int, processed: dict[str, bool]) -> int:
        """Success reports for an attempt that the engine has processed (callback settled or query)."""
        count = 0
        for push in self.pushes.values():
            if push.attempt_id != attempt_id:
                continue
            count += sum(1 for code in push.queried if code == 0)
            if processed.get(inbox_key(push.checkout, 0)):
                count += 1
        return count

    async def _snapshot(self) -> dict[str, Any]:
        async with self.world.runtime.uow() as uow:
            s = uow.session
            attempts = {
                a.id: a
                for a in (
                    await s.scalars(
                        select(PaymentAttempt).where(PaymentAttempt.booking_id.in_(self.booking_ids))
                    )
                ).all()
            }
            bookings = {
                b.id: b for b in (await s.scalars(select(Booking).where(Booking.id.in_(self.booking_ids))))
            }
            audit = (
                await s.scalars(
                    select(AuditEntry)
                    .where(
                        AuditEntry.subject_type == "payment",
                        AuditEntry.subject_id.in_([str(i) for i in attempts]),
                    )
                    .order_by(AuditEntry.seq)
                )
            ).all()
            keys = [inbox_key(p.checkout, c) for p in self.pushes.values() for c in (0, *FAILURE_CODES)]
            inbox = {
                row.provider_id: row.processed_at is not None
                for row in (
                    await s.execute(
                        select(CallbackInbox.provider_id, CallbackInbox.processed_at).where(
                            CallbackInbox.provider == PROVIDER, CallbackInbox.provider_id.in_(keys)
                        )
                    )
                ).all()
            }
            outbox = int(await s.scalar(select(func.count(Outbox.id))) or 0)
            audit_total = int(await s.scalar(select(func.count(AuditEntry.id))) or 0)
            return {
                "attempts": attempts,
                "bookings": bookings,
                "audit": audit,
                "inbox": inbox,
                "outbox": outbox,
                "audit_total": audit_total,
            }

    def snapshot(self) -> dict[str, Any]:
        return self.run(self._snapshot())

    def deliver(self, push: FakePush, code: int | str, *, settle: bool = True) -> None:
        """POST one callback (through the intake) and settle what is stored."""
        body = callback_body(push, code)
        answer = self.run(self.world.intake.submit(push.secret, body))
        assert answer.status == 200, answer
        assert answer.body == {"ResultCode": 0, "ResultDesc": "Accepted"}
        push.callbacks.append({"code": code, "body": body})
        push.answer = code  # from now on STK Query reports this result too
        if settle:
            self.run(self.world.settlement.settle_pending())

    def expect_after_result(self, before: dict[str, Any], push: FakePush, code: int | str) -> PaymentStatus:
        """What one settled result must do to a push's attempt (the settlement rules)."""
        attempt = before["attempts"][push.attempt_id]
        booking = before["bookings"][attempt.booking_id]
        status = PaymentStatus(attempt.status)
        if code == 0:
            if status is PAID:
                return PAID
            if booking.status == BookingStatus.CONFIRMED:
                return REVIEW  # another attempt paid this booking: double payment
            return PAID
        if status in (PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.UNCLEAR):
            return expected_failure_status(code)
        return status  # a failure never overrides a result

    # -- rules -----------------------------------------------------------------------------------

    @initialize(target=bookings, phone=phones)
    def first_payment(self, phone: str) -> int:
        """Every example starts with a prompt on a phone, so callbacks have something to hit."""
        booking = self.new_booking_now(2500)
        self.initiate_payment(booking, phone, "accept")
        return booking

    def new_booking_now(self, price: int) -> int:
        async def create() -> int:
            async with self.world.runtime.uow() as uow:
                booking = await make_booking(uow.session, price_kes=price)
                await uow.commit()
                return booking.id

        booking_id = self.run(create())
        self.booking_ids.append(booking_id)
        return booking_id

    @rule(target=bookings, price=st.integers(1, 250_000))
    def new_booking(self, price: int) -> int:
        return self.new_booking_now(price)

    @rule(booking=bookings, phone=phones, mode=push_modes)
    def initiate_payment(self, booking: int, phone: str, mode: str) -> None:
        before = self.snapshot()
        live = [a for a in before["attempts"].values() if a.booking_id == booking and a.status in LIVE]
        pushes_before = len(self.world.fake.pushes)
        self.world.fake.modes.append(mode)
        try:
            view = self.run(
                self.world.payments.initiate_payment(booking, self._client_of(before, booking), phone)
            )
        except PaymentRefused as refused:
            assert refused.code == "already_paid", refused.code
            assert before["bookings"][booking].status == BookingStatus.CONFIRMED
            return
        finally:
            self.world.fake.modes.clear()
        assert before["bookings"][booking].status == BookingStatus.APPROVED
        if live:  # never two live attempts, never a second push while one is open
            assert view.reused and view.attempt_id == live[0].id
            assert len(self.world.fake.pushes) == pushes_before
            return
        assert not view.reused
        self.attempts[view.attempt_id] = AttemptModel(booking, PaymentStatus.QUEUED)
        expected = {
            "accept": PaymentStatus.AWAITING_CUSTOMER,
            "unavailable": PaymentStatus.QUEUED,
            "unknown": PaymentStatus.UNCLEAR,
        }[mode]
        assert view.status == expected, (view.status, mode)
        if mode != "unavailable":
            push = list(self.world.fake.pushes.values())[-1]
            assert push.phone == normalise_phone(phone)
            assert push.amount == before["bookings"][booking].price_kes
            push.attempt_id = view.attempt_id
            self.pushes[push.checkout] = push
            assert view.checkout_request_id == (push.checkout if mode == "accept" else None)

    def _client_of(self, snap: dict[str, Any], booking_id: int) -> int:
        return snap["bookings"][booking_id].client_id

    def _has_pushes(self) -> bool:
        return bool(self.pushes)

    @precondition(_has_pushes)
    @rule(data=st.data(), code=codes)
    def callback(self, data: st.DataObject, code: int | str) -> None:
        push = data.draw(st.sampled_from(sorted(self.pushes.values(), key=lambda p: p.checkout)))
        self.run(self.world.settlement.settle_pending())  # leftovers of a failed run first
        before = self.snapshot()
        expected = self.expect_after_result(before, push, code)
        event(f"callback {code}: {before['attempts'][push.attempt_id].status} -> {expected}")
        self.deliver(push, code)
        after = self.snapshot()
        attempt = after["attempts"][push.attempt_id]
        assert attempt.status == expected, (attempt.status, expected, code)
        if code == 0 and expected is PAID and before["attempts"][push.attempt_id].status != PAID:
            assert attempt.mpesa_receipt == push.receipt
            assert attempt.paid_amount_kes == push.amount
            assert after["bookings"][attempt.booking_id].status == BookingStatus.CONFIRMED
        if code != 0 and before["attempts"][push.attempt_id].status in LIVE:
            assert attempt.result_code == str(code)

    def _has_delivered(self) -> bool:
        return any(p.callbacks for p in self.pushes.values())

    # Property 75: a repeated callback is acknowledged and changes nothing.
    @precondition(_has_delivered)
    @rule(data=st.data())
    def duplicate_callback(self, data: st.DataObject) -> None:
        delivered = sorted((p for p in self.pushes.values() if p.callbacks), key=lambda p: p.checkout)
        push = data.draw(st.sampled_from(delivered))
        sent = data.draw(st.sampled_from(push.callbacks))
        self.run(self.world.settlement.settle_pending())
        before = self.snapshot()
        answer = self.run(self.world.intake.submit(push.secret, sent["body"]))
        assert answer.status == 200 and answer.body == {"ResultCode": 0, "ResultDesc": "Accepted"}
        counts = self.run(self.world.settlement.settle_pending())
        after = self.snapshot()
        assert not counts, counts  # nothing new was stored, so nothing was settled
        assert after["audit_total"] == before["audit_total"]
        assert after["outbox"] == before["outbox"]
        old, new = before["attempts"][push.attempt_id], after["attempts"][push.attempt_id]
        assert (old.status, old.mpesa_receipt, old.updated_at) == (
            new.status,
            new.mpesa_receipt,
            new.updated_at,
        )

    @precondition(_has_pushes)
    @rule(data=st.data(), failure=failure_codes, success_first=st.booleans(), settle_between=st.booleans())
    def out_of_order_callbacks(
        self, data: st.DataObject, failure: int | str, success_first: bool, settle_between: bool
    ) -> None:
        push = data.draw(st.sampled_from(sorted(self.pushes.values(), key=lambda p: p.checkout)))
        self.run(self.world.settlement.settle_pending())
        before = self.snapshot()
        first, second = (0, failure) if success_first else (failure, 0)
        self.deliver(push, first, settle=settle_between)
        self.deliver(push, second)
        after = self.snapshot()
        attempt = after["attempts"][push.attempt_id]
        # Whatever the order, the success wins: money that arrived is never dropped.
        if before["attempts"][push.attempt_id].status == PAID:
            assert attempt.status == PAID
        else:
            paid_elsewhere = any(
                a.status == PAID and a.id != push.attempt_id and a.booking_id == attempt.booking_id
                for a in after["attempts"].values()
            )
            assert attempt.status == (REVIEW if paid_elsewhere else PAID), attempt.status

    def _has_query_settled(self) -> bool:
        return any(p.queried and not p.callbacks for p in self.pushes.values())

    @precondition(_has_query_settled)
    @rule(data=st.data())
    def late_callback_after_query(self, data: st.DataObject) -> None:
        settled = sorted(
            (p for p in self.pushes.values() if p.queried and not p.callbacks), key=lambda p: p.checkout
        )
        push = data.draw(st.sampled_from(settled))
        self.run(self.world.settlement.settle_pending())
        before = self.snapshot()
        status_before = before["attempts"][push.attempt_id].status
        event(f"late callback {push.queried[-1]} after the query settled {status_before}")
        self.deliver(push, push.queried[-1])
        after = self.snapshot()
        attempt = after["attempts"][push.attempt_id]
        assert attempt.status == status_before  # the query already settled it
        if push.queried[-1] == 0:
            # The callback brings what the query could not: the receipt and the amount. A payment
            # under review needs them most (the admin refunds by receipt).
            assert attempt.mpesa_receipt == push.receipt, (status_before, attempt.mpesa_receipt)
            assert attempt.paid_amount_kes == push.amount

    @rule(
        data=st.data(),
        advance=st.sampled_from([31, DEADLINE_S + 1, DEADLINE_S + 200, DEADLINE_S + 650]),
        retry_mode=st.sampled_from(["accept", "accept", "unavailable"]),
    )
    def watchdog_tick_past_the_deadline(self, data: st.DataObject, advance: int, retry_mode: str) -> None:
        self.run(self.world.settlement.settle_pending())
        before = self.snapshot()
        for push in sorted(self.pushes.values(), key=lambda p: p.checkout):
            attempt = before["attempts"][push.attempt_id]
            if attempt.status in LIVE and not push.callbacks:  # no result told yet: choose one
                push.answer = data.draw(query_answers, label=f"query answer for {push.checkout}")
        queried_before = {c: len(p.queried) for c, p in self.pushes.items()}
        self.world.fake.retry_mode = retry_mode
        try:
            self.world.clock.advance(advance)
            self.run(self.world.watchdog.tick())
            self.run(self.world.watchdog.tick())  # a stale QUEUED push made UNCLEAR is queried now
        finally:
            self.world.fake.retry_mode = "accept"
        self.adopt_new_pushes()
        after = self.snapshot()
        for checkout, push in self.pushes.items():
            if len(push.queried) == queried_before.get(checkout, 0):
                continue
            # The query reported a final result: the attempt is settled by it.
            code = push.queried[-1]
            status = after["attempts"][push.attempt_id].status
            event(f"query answered {code}: attempt now {status}")
            if code == 0:
                assert status in (PAID, REVIEW), status
            else:
                was = before["attempts"][push.attempt_id].status
                assert status == (expected_failure_status(code) if was in LIVE else was), (status, code)
        for attempt_id in self.attempts:
            old, new = before["attempts"].get(attempt_id), after["attempts"][attempt_id]
            if old is not None and old.status == PaymentStatus.AWAITING_CUSTOMER and advance > DEADLINE_S:
                assert new.status != PaymentStatus.AWAITING_CUSTOMER  # no longer "waiting" after 120 s

    # Properties 72 and 73: a failing database rolls the settlement back; retried with back-off;
    # the inbox row survives until a later sweep settles it.
    @precondition(_has_pushes)
    @rule(data=st.data(), code=codes, failures=st.integers(1, 4))
    def settlement_with_a_failing_database(self, data: st.DataObject, code: int | str, failures: int) -> None:
        push = data.draw(st.sampled_from(sorted(self.pushes.values(), key=lambda p: p.checkout)))
        self.run(self.world.settlement.settle_pending())
        before = self.snapshot()
        self.deliver(push, code, settle=False)
        key = inbox_key(push.checkout, code)
        stored = self.snapshot()
        assert key in stored["inbox"]
        if stored["inbox"][key]:
            return  # a repeat of a settled result: nothing to settle
        commits = self.world.commits
        # The first commit is the worker's claim of the row (payments.inbox.claim): it goes through.
        commits.failures_left, commits.commits, commits.passes_first = failures, 0, 1
        try:
            self.run(self.world.settlement.settle_pending())
        finally:
            commits.failures_left = commits.passes_first = 0
        after = self.snapshot()
        event(f"database failed {failures} commit(s) while settling")
        if failures < callbacks_module.SETTLE_RETRIES:  # a retry succeeded
            assert commits.commits == 1 + failures + 1  # the claim, the failed tries, the one that held
            assert after["inbox"][key] is True
            assert after["attempts"][push.attempt_id].status == self.expect_after_result(before, push, code)
            return
        # Every try failed: nothing of the settlement is in the database (compared with the state
        # right after the intake stored the callback) ...
        assert commits.commits >= 1 + callbacks_module.SETTLE_RETRIES
        assert after["inbox"][key] is False
        old, new = stored["attempts"][push.attempt_id], after["attempts"][push.attempt_id]
        assert (old.status, old.mpesa_receipt, old.updated_at) == (
            new.status,
            new.mpesa_receipt,
            new.updated_at,
        )
        assert after["outbox"] == stored["outbox"]
        assert after["audit_total"] == stored["audit_total"]
        assert after["bookings"][old.booking_id].status == stored["bookings"][old.booking_id].status
        # ... and a later sweep settles the stored callback.
        expected = self.expect_after_result(before, push, code)
        self.run(self.world.settlement.settle_pending())
        swept = self.snapshot()
        assert swept["inbox"][key] is True
        assert swept["attempts"][push.attempt_id].status == expected

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def payment_invariants_hold(self) -> None:
        self.adopt_new_pushes()
        snap = self.snapshot()
        attempts: dict[int, Any] = snap["attempts"]
        unknown = set(attempts) - set(self.attempts)
        assert not unknown, f"attempts {unknown} appeared without initiate_payment"
        paid_by_booking: dict[int, list[int]] = {}
        for attempt_id, model in self.attempts.items():
            attempt = attempts[attempt_id]
            status = PaymentStatus(attempt.status)
            successes = self.successes_reported(attempt_id, snap["inbox"])
            # Money Safaricom reports is never dropped.
            if successes:
                assert status in (PAID, REVIEW), (attempt_id, status)
            # PAID never changes; a failure changes only on a later success.
            if model.status == PAID:
                assert status is PAID, (attempt_id, status)
            if model.status in FAILURES and status != model.status:
                assert status in (PAID, REVIEW) and successes > model.successes_seen, (model, status)
            model.status, model.successes_seen = status, successes
            if status is PAID:
                paid_by_booking.setdefault(attempt.booking_id, []).append(attempt_id)
        for booking_id, booking in snap["bookings"].items():
            paid = paid_by_booking.get(booking_id, [])
            assert len(paid) <= 1, (booking_id, paid)
            # Property 28: only a PAID attempt confirms; failures leave the booking APPROVED.
            expected = BookingStatus.CONFIRMED if paid else BookingStatus.APPROVED
            assert booking.status == expected, (booking_id, booking.status, paid)
        self._audit_replays_to_current_status(snap)
        self._audit_chain_extends_cleanly()

    def _audit_replays_to_current_status(self, snap: dict[str, Any]) -> None:
        replay: dict[str, str] = {}
        for entry in snap["audit"]:
            if entry.action == "payment.initiated":
                replay[entry.subject_id] = PaymentStatus.QUEUED
            elif entry.action == "payment.status_changed":
                current = replay.get(entry.subject_id)
                assert entry.details["previous"] == current, (entry.subject_id, entry.details, current)
                replay[entry.subject_id] = entry.details["new"]
        for attempt_id, attempt in snap["attempts"].items():
            assert replay.get(str(attempt_id)) == attempt.status, (attempt_id, replay.get(str(attempt_id)))

    def _audit_chain_extends_cleanly(self) -> None:
        """The chain verifies: entries added since the last step link to the verified tail."""
        world = self.world

        async def new_entries() -> list[AuditEntry]:
            async with world.runtime.uow() as uow:
                return list(
                    (
                        await uow.session.scalars(
                            select(AuditEntry)
                            .where(AuditEntry.seq > world.verified_seq)
                            .order_by(AuditEntry.seq)
                        )
                    ).all()
                )

        verifier = ChainVerifier(expected_seq=world.verified_seq + 1, prev_hash=world.verified_hash)
        for e in self.run(new_entries()):
            record = ChainRecord(
                e.seq, e.at, e.actor, e.action, e.subject_type, e.subject_id, e.details, e.prev_hash, e.hash
            )
            assert verifier.feed(record), verifier.result()
            world.verified_seq, world.verified_hash = e.seq, e.hash

    def teardown(self) -> None:
        # Whatever is still in the inbox is settled by the sweep; then the money check is final.
        self.run(self.world.settlement.settle_pending())
        self.payment_invariants_hold()
        result = self.run(verify_chain(self.world.runtime.uow()))
        assert result.ok, result
        snap = self.snapshot()
        assert all(snap["inbox"].values()), snap["inbox"]


# Feature: mpesa-payment-integration, Property 75: Duplicate Callback Detection
# Feature: mpesa-payment-integration, Property 72: Callback Failure Retries With Backoff
# Feature: mpesa-payment-integration, Property 73: Database Failure Rolls Back Transaction
# Feature: mpesa-payment-integration, Property 28: Failed Payment Maintains Approved Status
def test_payment_engine_keeps_its_invariants_under_any_sequence_of_events(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settlement retries back off 50/100/200 ms; keep the shape, shrink the wait.
    monkeypatch.setattr(callbacks_module, "BACKOFF_BASE_S", 0.001)
    monkeypatch.setattr(settlement_worker, "BACKOFF_BASE_S", 0.001)
    world = build_world(database_url)
    PaymentMachine.world = world
    try:
        run_state_machine_as_test(
            PaymentMachine,
            settings=settings(
                max_examples=100,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        close_world(world)


def test_the_fake_daraja_reports_nothing_before_a_result_exists() -> None:
    """The fake is honest: STK Query says "being processed" until the push has a result."""

    async def scenario() -> None:
        fake = FakeDaraja()
        accepted = await fake.stk_push(
            phone="254708374149",
            amount=10,
            callback_url="http://h/hooks/lnm/s3cr3t",
            transaction_desc="Booking 1",
        )
        pending = await fake.stk_query(accepted.checkout_request_id)
        assert pending.pending and pending.result_code is None
        fake.pushes[accepted.checkout_request_id].answer = 1032
        final = await fake.stk_query(accepted.checkout_request_id)
        assert not final.pending and final.result_code == 1032
        assert fake.pushes[accepted.checkout_request_id].secret == "s3cr3t"
        fake.modes.append("unavailable")
        with pytest.raises(DarajaUnavailable):
            await fake.stk_push(
                phone="254708374149",
                amount=10,
                callback_url="http://h/hooks/lnm/x",
                transaction_desc="Booking 1",
            )
        assert len(fake.pushes) == 1  # an unavailable push never reached Daraja

    asyncio.run(scenario())


def test_double_payment_found_by_query_keeps_the_receipt_its_late_callback_brings(database_url: str) -> None:
    """A success the watchdog's query reports for an already-paid booking goes to review; the
    callback that arrives afterwards must still record its receipt and amount on that attempt
    (the admin refunds by receipt)."""
    world = build_world(database_url)
    try:

        async def scenario() -> None:
            async with world.runtime.uow() as uow:
                booking = await make_booking(uow.session, price_kes=700)
                await uow.commit()
            pay = world.payments.initiate_payment
            first = await pay(booking.id, booking.client_id, "0708374149")
            first_push = world.fake.pushes[first.checkout_request_id]
            await world.intake.submit(first_push.secret, callback_body(first_push, 1032))
            await world.settlement.settle_pending()  # cancelled: the client tries again
            second = await pay(booking.id, booking.client_id, "0708374149")
            second_push = world.fake.pushes[second.checkout_request_id]
            await world.intake.submit(first_push.secret, callback_body(first_push, 0))
            await world.settlement.settle_pending()  # ... but the first prompt was paid after all
            second_push.answer = 0  # and so is the second: its callback is late
            world.clock.advance(DEADLINE_S + 1)
            await world.watchdog.tick()
            await world.watchdog.tick()
            flagged = await world.payments.status(second.attempt_id)
            assert flagged.status == PaymentStatus.NEEDS_REVIEW and flagged.receipt is None
            await world.intake.submit(second_push.secret, callback_body(second_push, 0))
            await world.settlement.settle_pending()
            async with world.runtime.uow() as uow:
                attempt = await uow.session.get_one(PaymentAttempt, second.attempt_id)
            assert attempt.status == PaymentStatus.NEEDS_REVIEW
            assert attempt.mpesa_receipt == second_push.receipt
            assert attempt.paid_amount_kes == 700
            assert (await verify_chain(world.runtime.uow())).ok

        world.run(scenario())
    finally:
        close_world(world)
