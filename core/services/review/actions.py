"""An admin's decision on a review item, in one transaction, audited.

Actions (each needs a ``note``):

- ``confirm_booking`` (attempts only): RESOLVE_PAID. The attempt becomes PAID and its
  booking CONFIRMED in the same transaction, with reminders and the confirmation messages
  exactly as settlement writes them (``settlement.confirm_paid_booking``). Needs a receipt
  (recorded on the attempt, or given in the form) and an APPROVED booking without a
  payment in progress.
- ``refunded`` (with ``refund_reference``, the M-Pesa reference of the refund): an attempt
  goes RESOLVE_REFUNDED (to FAILED: it did not pay the booking); a refund due is closed.
- ``dismiss``: an attempt goes RESOLVE_FAILED (no money to act on); a refund due is closed.
- ``reviewed`` (paid items only): a PAID attempt flagged after it was paid (e.g. a different
  amount in the late callback) leaves the queue; its status and booking do not change (the
  client paid; the note says what was decided, e.g. difference collected or accepted).

Stale state is refused with a message and nothing changes: attempts move by compare-and-set
from NEEDS_REVIEW (``core.db.uow``); a refund due is closed only if no ``review.resolved``
entry names it, checked under the audit chain lock, which every audit writer takes; a paid
item is marked reviewed only while ``reporting.paid_review`` still counts it open (same lock).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditEntry, Booking, PaymentAttempt
from core.db.uow import TransitionConflict
from core.domain.states import LIVE_PAYMENT_STATUSES, BookingStatus, PaymentEvent, PaymentStatus
from core.runtime import Runtime, Wake
from core.services import audit
from core.services.payments import settlement
from core.services.reporting.paid_review import paid_review_open
from core.services.reporting.refunds import REFUND_DUE
from core.services.reporting.refunds import REVIEW_RESOLVED as RESOLVED

NOTE_MIN, NOTE_MAX = 3, 500
MAX_ID = 2**31 - 1  # attempt ids are 32-bit integers (PostgreSQL refuses larger values)
_REFERENCE = re.compile(r"^[A-Z0-9]{8,20}$")  # M-Pesa transaction ids: 10 upper-case letters/digits
_ITEM = re.compile(r"^(attempt|refund|paid)-([1-9]\d{0,17})$")


class ReviewAction(StrEnum):
    CONFIRM_BOOKING = "confirm_booking"
    REFUNDED = "refunded"
    DISMISS = "dismiss"
    REVIEWED = "reviewed"


class ReviewError(Exception):
    """Why a decision was not applied; ``kind`` is invalid, not_found, stale or refused."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind, self.message = kind, message
        super().__init__(message)


@dataclass(frozen=True)
class Decision:
    kind: str  # "attempt", "refund" or "paid"
    target: int  # attempt id or audit seq
    action: ReviewAction
    note: str
    refund_reference: str | None = None
    receipt: str | None = None


def parse_decision(item_id: str, form: Mapping[str, str]) -> Decision:
    """Validate the item id and the form fields ``action``, ``note``, ``refund_reference``, ``receipt``."""
    match = _ITEM.match(item_id or "")
    if match is None or (match[1] != "refund" and int(match[2]) > MAX_ID):
        raise ReviewError("not_found", f"There is no review item '{item_id[:40]}'.")
    try:
        action = ReviewAction(str(form.get("action", "")).strip())
    except ValueError:
        raise ReviewError(
            "invalid", "Choose an action: confirm_booking, refunded, dismiss or reviewed."
        ) from None
    note = " ".join(str(form.get("note", "")).split())
    if not note.isprintable():
        raise ReviewError("invalid", "The note contains characters that cannot be stored.")
    if not NOTE_MIN <= len(note) <= NOTE_MAX:
        raise ReviewError("invalid", f"Write a note of {NOTE_MIN} to {NOTE_MAX} characters saying why.")
    refund_reference = _reference(form.get("refund_reference"), "refund reference")
    if action is ReviewAction.REFUNDED and refund_reference is None:
        raise ReviewError("invalid", "Give the M-Pesa reference of the refund.")
    receipt = _reference(form.get("receipt"), "receipt") if action is ReviewAction.CONFIRM_BOOKING else None
    return Decision(match[1], int(match[2]), action, note, refund_reference, receipt)


def _reference(value: str | None, name: str) -> str | None:
    text = str(value or "").strip().upper()
    if not text:
        return None
    if not _REFERENCE.match(text):
        raise ReviewError("invalid", f"The {name} must be 8-20 letters and digits, like NLJ7RT61SV.")
    return text


async def resolve_review_item(
    runtime: Runtime, item_id: str, form: Mapping[str, str], *, admin_id: int
) -> str:
    """Apply an admin's decision; return the message to show. Raises ReviewError, nothing changed."""
    decision = parse_decision(item_id, form)
    actor = f"admin:{admin_id}"
    async with runtime.uow() as uow:
        session = uow.session
        await audit.lock_chain(session)  # chain lock before row locks, like every writer
        if decision.kind == "paid":
            message = await _mark_paid_reviewed(session, decision, actor=actor)
        elif decision.action is ReviewAction.REVIEWED:
            raise ReviewError(
                "refused", "'reviewed' is for paid payments: use confirm_booking, refunded or dismiss."
            )
        elif decision.kind == "attempt":
            message = await _resolve_attempt(session, decision, actor=actor, runtime=runtime)
        else:
            message = await _close_refund(session, decision, actor=actor)
        await uow.commit()
    runtime.wake(Wake.OUTBOX)
    return message


async def _record_resolution(
    session: AsyncSession, decision: Decision, *, actor: str, subject_type: str, extra: Mapping[str, object]
) -> None:
    details = {"action": decision.action.value, "note": audit.redact_phones(decision.note), **extra}
    if decision.refund_reference:
        details["refund_reference"] = decision.refund_reference
    await audit.record(
        session,
        actor=actor,
        action=RESOLVED,
        subject_type=subject_type,
        subject_id=decision.target,
        details=details,
    )


# -- attempts ---------------------------------------------------------------------------------


async def _resolve_attempt(session: AsyncSession, decision: Decision, *, actor: str, runtime: Runtime) -> str:
    attempt = await session.get(PaymentAttempt, decision.target)
    if attempt is None:
        raise ReviewError("not_found", f"There is no payment attempt {decision.target}.")
    if attempt.status != PaymentStatus.NEEDS_REVIEW:
        raise _stale_attempt(attempt.id, attempt.status)
    try:
        if decision.action is ReviewAction.CONFIRM_BOOKING:
            message = await _confirm(session, attempt, decision, actor=actor, runtime=runtime)
        else:
            message = await _end_attempt(session, attempt, decision, actor=actor, now=runtime.clock())
    except TransitionConflict:
        await session.rollback()
        current = await session.scalar(
            select(PaymentAttempt.status).where(PaymentAttempt.id == decision.target)
        )
        raise _stale_attempt(decision.target, current or "gone") from None
    await _record_resolution(
        session, decision, actor=actor, subject_type="payment", extra={"attempt_id": attempt.id}
    )
    return message


def _stale_attempt(attempt_id: int, status: str) -> ReviewError:
    return ReviewError(
        "stale",
        f"Payment attempt {attempt_id} is no longer waiting for review (it is {status}); "
        "nothing was changed.",
    )


async def _confirm(
    session: AsyncSession, attempt: PaymentAttempt, decision: Decision, *, actor: str, runtime: Runtime
) -> str:
    booking, receipt = await _confirmable(session, attempt, decision)
    now = runtime.clock()
    amount = attempt.paid_amount_kes if attempt.paid_amount_kes is not None else attempt.amount_kes
    await audit.apply_transition(
        session, "payment", attempt.id, PaymentEvent.RESOLVE_PAID,
        previous=PaymentStatus.NEEDS_REVIEW, actor=actor,
        reason=f"confirmed by an admin after review: {decision.note}",
        audit_details={"receipt": receipt, "amount_kes": amount},
        mpesa_receipt=receipt,
        paid_amount_kes=amount,
        settled_at=attempt.settled_at or now,
    )
    result = settlement.StkResult(
        checkout_request_id=attempt.checkout_request_id or "",
        result_code=0,
        result_desc="confirmed by an admin after review",
        source="admin",
        amount=amount,
        receipt=receipt,
        transaction_time=attempt.transaction_time,
    )
    await settlement.confirm_paid_booking(
        session, attempt, booking, result, settings=runtime.settings, now=now, actor=actor
    )
    return f"Payment attempt {attempt.id} is PAID and booking {booking.reference} is CONFIRMED."


async def _confirmable(
    session: AsyncSession, attempt: PaymentAttempt, decision: Decision
) -> tuple[Booking, str]:
    """The booking and receipt of a confirmation, or a ReviewError saying why it cannot be."""
    booking = await session.get_one(Booking, attempt.booking_id)
    if booking.status != BookingStatus.APPROVED:
        raise ReviewError(
            "refused",
            f"Booking {booking.reference} is {booking.status}, so this payment cannot confirm it: "
            "refund the money ('refunded') or dismiss the item.",
        )
    live = await session.scalar(
        select(PaymentAttempt.id).where(
            PaymentAttempt.booking_id == booking.id,
            PaymentAttempt.status.in_([s.value for s in LIVE_PAYMENT_STATUSES]),
        )
    )
    if live is not None:
        raise ReviewError(
            "refused", f"Payment attempt {live} for this booking is still in progress; wait for it."
        )
    receipt = attempt.mpesa_receipt or decision.receipt
    if receipt is None:
        raise ReviewError("invalid", "Give the M-Pesa receipt of this payment to confirm the booking.")
    if attempt.mpesa_receipt is None:
        taken = await session.scalar(select(PaymentAttempt.id).where(PaymentAttempt.mpesa_receipt == receipt))
        if taken is not None:
            raise ReviewError("refused", f"Receipt {receipt} is already recorded on payment attempt {taken}.")
    return booking, receipt


async def _end_attempt(
    session: AsyncSession, attempt: PaymentAttempt, decision: Decision, *, actor: str, now: datetime
) -> str:
    if decision.action is ReviewAction.REFUNDED:
        event, why = (
            PaymentEvent.RESOLVE_REFUNDED,
            f"refunded after review (M-Pesa {decision.refund_reference})",
        )
    else:
        event, why = PaymentEvent.RESOLVE_FAILED, "dismissed after review"
    new = (
        await audit.apply_transition(
            session, "payment", attempt.id, event,
            previous=PaymentStatus.NEEDS_REVIEW, actor=actor, reason=f"{why}: {decision.note}",
            result_desc=f"{why}: {audit.redact_phones(decision.note)}"[:300],
            settled_at=now,
        )
    ).new
    return f"Payment attempt {attempt.id} is closed as {new} ({why})."


# -- paid attempts flagged after payment --------------------------------------------------------


async def _mark_paid_reviewed(session: AsyncSession, decision: Decision, *, actor: str) -> str:
    if decision.action is not ReviewAction.REVIEWED:
        raise ReviewError(
            "refused",
            "This payment is PAID and its booking stays as it is: mark it 'reviewed' with a note "
            "saying what was decided (e.g. difference collected or accepted).",
        )
    attempt = await session.get(PaymentAttempt, decision.target)
    if attempt is None:
        raise ReviewError("not_found", f"There is no payment attempt {decision.target}.")
    still_open = await session.scalar(
        select(PaymentAttempt.id).where(PaymentAttempt.id == attempt.id, paid_review_open())
    )
    if still_open is None:
        raise ReviewError(
            "stale",
            f"Payment attempt {attempt.id} is not waiting for review as a paid payment "
            f"(it is {attempt.status}); nothing was changed.",
        )
    extra = {
        "attempt_id": attempt.id,
        "review_reason": attempt.review_reason,
        "amount_kes": attempt.paid_amount_kes,
        "expected_kes": attempt.amount_kes,
        "receipt": attempt.mpesa_receipt,
    }
    await _record_resolution(session, decision, actor=actor, subject_type="payment", extra=extra)
    return f"Paid payment attempt {attempt.id} is marked reviewed; it stays PAID."


# -- refunds due ------------------------------------------------------------------------------


async def _close_refund(session: AsyncSession, decision: Decision, *, actor: str) -> str:
    if decision.action is ReviewAction.CONFIRM_BOOKING:
        raise ReviewError("refused", "A refund due has no payment to confirm: use 'refunded' or 'dismiss'.")
    entry = await session.scalar(
        select(AuditEntry).where(AuditEntry.seq == decision.target, AuditEntry.action == REFUND_DUE)
    )
    if entry is None:
        raise ReviewError("not_found", f"There is no refund due {decision.target}.")
    closed = await session.scalar(
        select(AuditEntry).where(
            AuditEntry.action == RESOLVED,
            AuditEntry.subject_type == "refund_due",
            AuditEntry.subject_id == str(decision.target),
        )
    )
    if closed is not None:
        raise ReviewError(
            "stale",
            f"Refund due {decision.target} was already closed by {closed.actor} "
            f"({closed.details.get('action')}); nothing was changed.",
        )
    d = entry.details or {}
    extra = {k: d.get(k) for k in ("booking_id", "reference", "attempt_id", "amount_kes", "receipt")}
    await _record_resolution(session, decision, actor=actor, subject_type="refund_due", extra=extra)
    done = "marked refunded" if decision.action is ReviewAction.REFUNDED else "dismissed"
    return f"Refund due for booking {d.get('reference')} is {done}."
