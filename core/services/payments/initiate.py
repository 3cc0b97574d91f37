"""Starting an M-Pesa payment for a booking (STK Push) and reading its progress.

The attempt row — idempotency key, amount, phone, hashed callback secret, deadline — is
committed *before* Daraja is called, so a crash can never leave a push we don't know
about. A push whose outcome is unknown is never sent again: the watchdog asks Daraja.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import is_test_environment
from core.db.models import Booking, Client, PaymentAttempt
from core.db.uow import TransitionConflict
from core.domain.phone import mask_phone, normalise_phone
from core.domain.states import LIVE_PAYMENT_STATUSES, BookingStatus, PaymentEvent, PaymentStatus
from core.mpesa import (
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaUnavailable,
    StkPushAccepted,
    StkRequestInvalid,
    describe_result,
)
from core.mpesa.stk_request import safe_transaction_desc
from core.runtime import Runtime, Wake
from core.services import audit
from core.services.notifications import notify as notifications
from core.services.notifications.payment_notices import notify_payment_failed
from core.services.payments.secrets import callback_secret_hash, new_callback_secret
from core.services.settings.gateway import MpesaRoute, MpesaRouter, StkGateway

log = logging.getLogger(__name__)

MAX_UNAVAILABLE_RETRIES = 3
RETRY_UNAVAILABLE_AFTER = timedelta(seconds=30)  # Properties 55, 71 (Settings.unavailable_retry_after)
PUSH_TIMEOUT_S = 2.5  # the Pay step answers within 3 s (Properties 8, 51)
CALLBACK_PATH = "/hooks/lnm/"
UNAVAILABLE_MESSAGE = "M-Pesa is not answering right now. Nothing was charged; please retry later."
REFUSED_MESSAGE = "M-Pesa did not accept the request. Nothing was charged; please retry."
# Recording an accepted push is retried briefly: the prompt is on the phone, its id must be kept.
MARK_SENT_BACKOFF_S = (0.05, 0.2, 0.5)


# What the payment engine needs from the Daraja client: one Protocol, kept beside the
# configuration-routing gateway that implements it.
DarajaGateway = StkGateway


class PaymentRefused(Exception):
    """The payment cannot start; ``message`` is safe to show the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class PaymentView:
    """What the chat side shows about one attempt."""

    attempt_id: int
    booking_id: int
    status: PaymentStatus
    amount_kes: int
    phone_masked: str
    checkout_request_id: str | None
    receipt: str | None
    result_code: str | None
    client_message: str | None
    created_at: datetime
    deadline_at: datetime
    test_mode: bool
    reused: bool = False  # True when an attempt already in progress was returned


@dataclass
class PaymentService:
    """Initiates STK Pushes and exposes their status."""

    runtime: Runtime
    gateway: DarajaGateway
    secret_key: str
    push_timeout_s: float = PUSH_TIMEOUT_S
    on_change: Callable[[int], None] | None = None  # tells the chat side an attempt changed

    async def initiate_payment(self, booking_id: int, client_id: int, phone: str) -> PaymentView:
        """Start paying ``booking_id`` from ``phone``; returns the (new or live) attempt."""
        msisdn = normalise_phone(phone)  # raises InvalidPhoneNumber with the accepted formats
        try:
            environment = (await self._active_route()).environment  # admins may switch it at run time
            created = await self._create_attempt(booking_id, client_id, msisdn, environment)
        except SQLAlchemyError:
            log.exception("payment initiation rolled back", extra={"booking": booking_id})
            raise PaymentRefused(
                "unavailable", "We could not start the payment just now. Nothing was charged; please retry."
            ) from None
        attempt, secret, reference = created
        if secret is None:  # an attempt is already in progress: do not push twice
            return self._view(attempt, reused=True)
        try:
            view = await self._push(attempt, secret, reference)
            return view if view is not None else await self.status(attempt.id)
        except SQLAlchemyError:  # after the push: never re-pushed, the watchdog resolves it
            log.exception("payment outcome not recorded after the push", extra={"attempt": attempt.id})
            return replace(self._view(attempt), status=PaymentStatus.UNCLEAR)  # "we are checking"

    async def status(self, attempt_id: int) -> PaymentView:
        """The current state of one attempt."""
        async with self.runtime.uow() as uow:
            attempt = await uow.session.get_one(PaymentAttempt, attempt_id)
            return self._view(attempt)

    async def latest_for_booking(self, booking_id: int) -> PaymentView | None:
        """The newest attempt of a booking, if any."""
        async with self.runtime.uow() as uow:
            attempt = await uow.session.scalar(
                select(PaymentAttempt)
                .where(PaymentAttempt.booking_id == booking_id)
                .order_by(PaymentAttempt.id.desc())
                .limit(1)
            )
            return self._view(attempt) if attempt else None

    async def retry_queued(self, attempt_id: int) -> None:
        """Push a QUEUED attempt whose earlier push provably did not reach Daraja."""
        async with self.runtime.uow() as uow:
            attempt = await uow.session.get_one(PaymentAttempt, attempt_id)
            if attempt.status != PaymentStatus.QUEUED or attempt.next_check_at is None:
                return
            # Claim the retry (clearing next_check_at so no other worker pushes it too) and
            # rotate the callback secret: only its hash was kept, and the old URL was never used.
            secret = new_callback_secret()
            claimed = await uow.session.execute(
                update(PaymentAttempt)
                .where(
                    PaymentAttempt.id == attempt_id,
                    PaymentAttempt.status == PaymentStatus.QUEUED,
                    PaymentAttempt.next_check_at == attempt.next_check_at,
                )
                .values(
                    next_check_at=None,
                    query_count=PaymentAttempt.query_count + 1,
                    callback_secret_hash=callback_secret_hash(self.secret_key, secret),
                    deadline_at=self.runtime.clock() + self._deadline,
                )
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return
            reference = await _booking_reference(uow.session, attempt.booking_id)
            await uow.commit()
        await self._push(attempt, secret, reference)

    # -- internals -------------------------------------------------------------------

    async def active_environment(self) -> str:
        """The M-Pesa mode a payment started now would use (saved admin settings win)."""
        if isinstance(self.gateway, MpesaRouter):
            return await self.gateway.active_environment()
        return self.runtime.settings.mpesa_environment

    async def _active_route(self) -> MpesaRoute:
        """The M-Pesa mode and credentials a NEW payment uses (saved admin settings win)."""
        if isinstance(self.gateway, MpesaRouter):
            return await self.gateway.active_route()
        settings = self.runtime.settings
        return MpesaRoute(settings.mpesa_environment, self.gateway, settings.base_url)

    async def _route_for(self, environment: str) -> MpesaRoute:
        """An attempt is always pushed with the credentials of the mode it was created in."""
        if isinstance(self.gateway, MpesaRouter):
            return await self.gateway.route_for(environment)
        settings = self.runtime.settings
        return MpesaRoute(environment, self.gateway, settings.base_url)

    @property
    def _deadline(self) -> timedelta:
        """Property 14: no result after this long means the attempt is no longer "waiting"."""
        return timedelta(seconds=self.runtime.settings.mpesa_payment_deadline_seconds)

    async def _create_attempt(
        self, booking_id: int, client_id: int, msisdn: str, environment: str
    ) -> tuple[PaymentAttempt, str | None, str]:
        """The new QUEUED attempt, its callback secret and the booking reference; or the live
        attempt with no secret (it must not be pushed again)."""
        now = self.runtime.clock()
        for _ in range(2):
            async with self.runtime.uow() as uow:
                session = uow.session
                await audit.lock_chain(session)
                booking = await _payable_booking(session, booking_id, client_id, now=now)
                live = await session.scalar(
                    select(PaymentAttempt).where(
                        PaymentAttempt.booking_id == booking_id,
                        PaymentAttempt.status.in_([s.value for s in LIVE_PAYMENT_STATUSES]),
                    )
                )
                if live is not None:
                    return live, None, booking.reference
                secret = new_callback_secret()
                attempt = PaymentAttempt(
                    booking_id=booking_id,
                    client_id=client_id,
                    idempotency_key=f"booking:{booking_id}:{await _next_attempt_number(session, booking_id)}",
                    status=PaymentStatus.QUEUED.value,
                    amount_kes=booking.price_kes,
                    phone=msisdn,
                    environment=environment,
                    callback_secret_hash=callback_secret_hash(self.secret_key, secret),
                    deadline_at=now + self._deadline,
                )
                session.add(attempt)
                try:
                    await session.flush()
                    await audit.record_payment_initiated(
                        session,
                        actor=f"client:{client_id}",
                        booking_id=booking_id,
                        client_id=client_id,
                        attempt_id=attempt.id,
                        amount_kes=attempt.amount_kes,
                        phone=msisdn,
                    )
                    await uow.commit()
                except IntegrityError:  # a concurrent request created the live attempt first
                    await uow.rollback()
                    continue
                return attempt, secret, booking.reference or f"Booking {booking_id}"
        raise PaymentRefused("busy", "A payment for this booking is already starting. Please wait a moment.")

    async def _push(self, attempt: PaymentAttempt, secret: str, reference: str) -> PaymentView | None:
        """Push ``attempt`` and record the answer; the view when the push was accepted."""
        route = await self._route_for(attempt.environment)
        view: PaymentView | None = None
        callback_url = f"{route.callback_base_url}{CALLBACK_PATH}{secret}"
        try:
            accepted = await asyncio.wait_for(
                route.gateway.stk_push(
                    phone=attempt.phone,
                    amount=attempt.amount_kes,
                    callback_url=callback_url,
                    transaction_desc=safe_transaction_desc(reference),
                ),
                self.push_timeout_s,
            )
        except DarajaUnavailable as exc:
            await self._queue_for_retry(attempt, str(exc))
        except (DarajaOutcomeUnknown, TimeoutError) as exc:
            await self._mark_unclear(attempt, type(exc).__name__)
        except (DarajaRejected, StkRequestInvalid) as exc:
            await self._mark_refused(attempt, exc)
        else:
            view = await self._mark_sent(attempt, accepted)
        if self.on_change:
            self.on_change(attempt.id)
        return view

    async def _mark_sent(self, attempt: PaymentAttempt, accepted: StkPushAccepted) -> PaymentView | None:
        """QUEUED → AWAITING_CUSTOMER with the CheckoutRequestID; the view, or None if raced.

        The prompt is on the phone now, so a database error must not lose it: the write is
        retried briefly. If it still fails, the attempt stays QUEUED without a retry time, which
        is never pushed again: the callback finds it by the secret in its URL (and gives it its
        CheckoutRequestID), and the watchdog marks it UNCLEAR after STALE_QUEUED_AFTER.
        """
        sent = replace(
            self._view(attempt), status=PaymentStatus.AWAITING_CUSTOMER,
            checkout_request_id=accepted.checkout_request_id,
        )
        for pause in (0.0, *MARK_SENT_BACKOFF_S):
            await asyncio.sleep(pause)
            try:
                if not await self._write_sent(attempt, accepted):
                    return None  # a callback or the watchdog moved it first: read it back
            except SQLAlchemyError:
                log.warning("recording an accepted push failed", extra={"attempt": attempt.id}, exc_info=True)
                continue
            self.runtime.wake(Wake.SETTLEMENT)  # a callback may have raced the push answer
            return sent
        log.error(
            "accepted push not recorded; the callback or the watchdog will settle it",
            extra={"attempt": attempt.id},
        )
        return replace(sent, status=PaymentStatus.UNCLEAR)  # the chat says "we are checking"

    async def _write_sent(self, attempt: PaymentAttempt, accepted: StkPushAccepted) -> bool:
        async with self.runtime.uow() as uow:
            try:
                await audit.apply_transition(
                    uow.session, "payment", attempt.id, PaymentEvent.SENT,
                    previous=PaymentStatus.QUEUED, actor="system", reason="STK Push accepted by Daraja",
                    checkout_request_id=accepted.checkout_request_id,
                    merchant_request_id=accepted.merchant_request_id,
                    next_check_at=None,
                )
            except TransitionConflict:
                return False
            await uow.commit()
        return True

    async def _queue_for_retry(self, attempt: PaymentAttempt, error: str) -> None:
        now = self.runtime.clock()
        async with self.runtime.uow() as uow:
            await audit.lock_chain(uow.session)  # chain lock before the row lock (no deadlock)
            current = await uow.session.get_one(PaymentAttempt, attempt.id)
            if current.status != PaymentStatus.QUEUED:
                return
            booking = await uow.session.get_one(Booking, attempt.booking_id)
            client = await uow.session.get_one(Client, attempt.client_id)
            if current.query_count >= MAX_UNAVAILABLE_RETRIES:
                await self._refuse(
                    uow.session,
                    attempt,
                    audit_reason="M-Pesa unavailable",
                    client_reason=UNAVAILABLE_MESSAGE,
                    result_desc=f"M-Pesa unavailable after {current.query_count + 1} tries: {error}"[:300],
                    settled_at=now,
                )
            else:
                current.next_check_at = now + self.runtime.settings.unavailable_retry_after
                current.result_desc = f"M-Pesa unavailable: {error}"[:300]
                await audit.record(
                    uow.session,
                    actor="system",
                    action="payment.queued",
                    subject_type="payment",
                    subject_id=attempt.id,
                    details={"retry_at": current.next_check_at.isoformat(), "try": current.query_count + 1},
                )
                await notifications.notify_client(
                    uow.session,
                    client,
                    template="payment_delayed_client",
                    data={
                        "reference": booking.reference,
                        "amount_kes": attempt.amount_kes,
                        "retry_seconds": int(self.runtime.settings.unavailable_retry_after.total_seconds()),
                        "test_mode": _test_mode(attempt),
                    },
                    dedupe_key=f"payment:{attempt.id}:delayed:{current.query_count}",
                )
            await uow.commit()
        self.runtime.wake(Wake.OUTBOX)
        log.warning("daraja unavailable, payment queued", extra={"attempt": attempt.id})

    async def _mark_unclear(self, attempt: PaymentAttempt, why: str) -> None:
        async with self.runtime.uow() as uow:
            try:
                await audit.apply_transition(
                    uow.session, "payment", attempt.id, PaymentEvent.PUSH_OUTCOME_UNKNOWN,
                    previous=PaymentStatus.QUEUED, actor="system",
                    reason=f"push outcome unknown ({why}); never re-pushed, the watchdog will query",
                    next_check_at=attempt.deadline_at,
                )
            except TransitionConflict:
                return
            await uow.commit()
        log.warning("stk push outcome unknown", extra={"attempt": attempt.id, "why": why})

    async def _mark_refused(self, attempt: PaymentAttempt, exc: Exception) -> None:
        detail = getattr(exc, "error_message", None) or str(exc)
        async with self.runtime.uow() as uow:
            await audit.lock_chain(uow.session)  # chain lock before the row lock (no deadlock)
            try:
                await self._refuse(
                    uow.session,
                    attempt,
                    audit_reason=f"Daraja refused: {detail}",
                    client_reason=REFUSED_MESSAGE,
                    result_code=(getattr(exc, "error_code", None) or "refused")[:20],
                    result_desc=detail[:300],
                    settled_at=self.runtime.clock(),
                )
            except TransitionConflict:
                return
            await uow.commit()
        self.runtime.wake(Wake.OUTBOX)
        log.error("stk push refused", extra={"attempt": attempt.id, "error": detail})

    async def _refuse(
        self,
        session: AsyncSession,
        attempt: PaymentAttempt,
        *,
        audit_reason: str,
        client_reason: str,
        **values: Any,
    ) -> None:
        """QUEUED → FAILED without a prompt having reached the phone; the client may retry."""
        await audit.apply_transition(
            session, "payment", attempt.id, PaymentEvent.REFUSED,
            previous=PaymentStatus.QUEUED, actor="system", reason=audit_reason, **values,
        )
        booking = await session.get_one(Booking, attempt.booking_id)
        await notify_payment_failed(
            session,
            attempt,
            booking,
            reason=client_reason,
            test_mode=_test_mode(attempt),
            now=self.runtime.clock(),
        )

    def _view(self, attempt: PaymentAttempt, *, reused: bool = False) -> PaymentView:
        message = None
        if attempt.result_code and attempt.status != PaymentStatus.PAID:
            message = describe_result(attempt.result_code).message
        return PaymentView(
            attempt_id=attempt.id,
            booking_id=attempt.booking_id,
            status=PaymentStatus(attempt.status),
            amount_kes=attempt.amount_kes,
            phone_masked=mask_phone(attempt.phone),
            checkout_request_id=attempt.checkout_request_id,
            receipt=attempt.mpesa_receipt,
            result_code=attempt.result_code,
            client_message=message,
            created_at=attempt.created_at,
            deadline_at=attempt.deadline_at,
            test_mode=_test_mode(attempt),
            reused=reused,
        )


async def _payable_booking(
    session: AsyncSession, booking_id: int, client_id: int, *, now: datetime
) -> Booking:
    """The client's booking if it may be paid now, else ``PaymentRefused`` saying why."""
    booking = await session.get(Booking, booking_id)
    if booking is None or booking.client_id != client_id:
        raise PaymentRefused("not_found", "We could not find that booking.")
    if booking.status in (BookingStatus.CONFIRMED, BookingStatus.COMPLETED):
        raise PaymentRefused("already_paid", "This booking is already paid.")
    if booking.status != BookingStatus.APPROVED:  # Property 5
        raise PaymentRefused(
            "not_approved",
            "This booking can be paid once the practitioner has approved it."
            if booking.status == BookingStatus.PENDING_APPROVAL
            else "This booking can no longer be paid.",
        )
    if booking.starts_at <= now:  # the session has begun: housekeeping will expire it
        raise PaymentRefused("too_late", "This session has already started, so it can no longer be paid.")
    return booking


async def _booking_reference(session: AsyncSession, booking_id: int) -> str:
    """The booking reference the client sees on the M-Pesa prompt (TransactionDesc)."""
    reference = await session.scalar(select(Booking.reference).where(Booking.id == booking_id))
    return reference or f"Booking {booking_id}"


async def _next_attempt_number(session: AsyncSession, booking_id: int) -> int:
    """1 for a booking's first attempt, then 2, 3, … (part of the idempotency key)."""
    count = await session.scalar(
        select(func.count(PaymentAttempt.id)).where(PaymentAttempt.booking_id == booking_id)
    )
    return 1 + int(count or 0)
def _test_mode(attempt: PaymentAttempt) -> bool:
    """TEST MODE (Property 78) follows the mode the attempt was made in, not the process's boot mode."""
    return is_test_environment(attempt.environment)
