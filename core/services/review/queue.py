"""The review queue: what needs a human decision about money, with its evidence.

Two kinds of item:

- ``attempt-<id>``: a payment attempt in NEEDS_REVIEW (double payment, late success for a
  booking no longer payable, amount or receipt mismatch, reconciliation discrepancy,
  unknown after the watchdog). Evidence: the review reason, expected and received amounts,
  receipt, the booking's other paid attempts and the callbacks M-Pesa sent for it
  (phone numbers masked).
- ``refund-<seq>``: a ``booking.refund_due`` audit entry (a paid booking was cancelled)
  that no ``review.resolved`` entry has closed yet.
- ``paid-<id>``: a PAID attempt flagged after it was paid (e.g. the callback after an STK
  Query settlement reported a different amount), until an admin marks it reviewed; which
  ones is the rule of ``core.services.reporting.paid_review``. Evidence: the reason, paid
  and expected amounts, receipt, booking reference (no phone number).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import AuditEntry, Booking, CallbackInbox, PaymentAttempt
from core.db.uow import UnitOfWork
from core.domain.money import format_kes
from core.domain.slots import NAIROBI
from core.domain.states import PaymentStatus
from core.logging import mask_phones
from core.mpesa.redact import redact_checkout_id
from core.services.reporting.paid_review import paid_review_open, payment_review_counts
from core.services.reporting.refunds import open_refunds_query
from core.services.reporting.transactions import ROW_COLUMNS, TransactionRow, joined_attempts, row_of

CALLBACK_PROVIDER = "mpesa_stk"  # core.services.callbacks.PROVIDER
CALLBACK_SHOWN_CHARS = 2000
QUEUE_LIMIT = 200  # the oldest first; a longer queue shows its count and this many items
_CHECKOUT_ID = re.compile(r"ws_CO_\d+")


@dataclass(frozen=True)
class PaidSibling:
    """Another PAID attempt of the same booking (the first payment of a double payment)."""

    attempt_id: int
    receipt: str | None
    amount_kes: int


@dataclass(frozen=True)
class AttemptItem:
    """A NEEDS_REVIEW attempt with its evidence."""

    row: TransactionRow
    booking_status: str
    transaction_time: datetime | None
    paid_siblings: tuple[PaidSibling, ...]
    callbacks: tuple[str, ...]  # raw bodies, phone numbers masked, cut at CALLBACK_SHOWN_CHARS

    @property
    def item_id(self) -> str:
        return f"attempt-{self.row.id}"


@dataclass(frozen=True)
class RefundItem:
    """An open ``booking.refund_due`` entry."""

    seq: int
    at: datetime
    actor: str
    booking_id: int | None
    reference: str | None
    attempt_id: int | None
    amount_kes: int | None
    receipt: str | None

    @property
    def item_id(self) -> str:
        return f"refund-{self.seq}"

    @property
    def at_local(self) -> datetime:
        return self.at.astimezone(NAIROBI)


@dataclass(frozen=True)
class PaidItem:
    """A PAID attempt flagged after it was paid (its status and booking stay as they are)."""

    row: TransactionRow
    booking_status: str
    transaction_time: datetime | None

    @property
    def item_id(self) -> str:
        return f"paid-{self.row.id}"

    @property
    def summary(self) -> str:
        paid, expected = self.row.paid_amount_kes, self.row.amount_kes
        if paid is not None and paid != expected:
            return f"paid, amount differs: paid {format_kes(paid)}, expected {format_kes(expected)}"
        return f"paid, flagged: {self.row.review_reason}"


@dataclass(frozen=True)
class ReviewQueue:
    attempts: tuple[AttemptItem, ...]
    refunds: tuple[RefundItem, ...]
    attempts_total: int
    refunds_total: int
    paid: tuple[PaidItem, ...] = ()
    paid_total: int = 0


async def review_counts(session: AsyncSession) -> tuple[int, int]:
    """(payments to review: NEEDS_REVIEW and flagged PAID attempts, open refunds due)."""
    needs_review, paid = await payment_review_counts(session)
    return needs_review + paid, await _open_refunds(session)


async def _open_refunds(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(open_refunds_query().subquery())) or 0


async def review_queue(session: AsyncSession) -> ReviewQueue:
    """Every open item, oldest first (at most QUEUE_LIMIT of each kind), with its evidence."""
    attempts_total, paid_total = await payment_review_counts(session)
    refunds_total = await _open_refunds(session)
    return ReviewQueue(
        attempts=await _attempt_items(session),
        refunds=await _refund_items(session),
        attempts_total=attempts_total,
        refunds_total=refunds_total,
        paid=await _paid_items(session),
        paid_total=paid_total,
    )


async def _paid_items(session: AsyncSession) -> tuple[PaidItem, ...]:
    query = (
        joined_attempts(select(*ROW_COLUMNS, Booking.status, PaymentAttempt.transaction_time))
        .where(paid_review_open())
        .order_by(PaymentAttempt.updated_at, PaymentAttempt.id)
        .limit(QUEUE_LIMIT)
    )
    n = len(ROW_COLUMNS)
    return tuple(
        PaidItem(
            row=row_of(r[:n]),
            booking_status=r[n],
            transaction_time=r[n + 1].astimezone(NAIROBI) if r[n + 1] else None,
        )
        for r in (await session.execute(query)).all()
    )


async def _attempt_items(session: AsyncSession) -> tuple[AttemptItem, ...]:
    query = (
        joined_attempts(
            select(
                *ROW_COLUMNS,
                Booking.status,
                PaymentAttempt.transaction_time,
                PaymentAttempt.checkout_request_id,
            )
        )
        .where(PaymentAttempt.status == PaymentStatus.NEEDS_REVIEW.value)
        .order_by(PaymentAttempt.updated_at, PaymentAttempt.id)
        .limit(QUEUE_LIMIT)
    )
    found = (await session.execute(query)).all()
    n = len(ROW_COLUMNS)
    rows = [(row_of(r[:n]), r[n], r[n + 1], r[n + 2]) for r in found]
    siblings = await _paid_siblings(session, [row.booking_id for row, *_ in rows])
    callbacks = await _callbacks(session, [cid for *_, cid in rows if cid])
    return tuple(
        AttemptItem(
            row=row,
            booking_status=b_status,
            transaction_time=tx.astimezone(NAIROBI) if tx else None,
            paid_siblings=tuple(s for s in siblings.get(row.booking_id, ()) if s.attempt_id != row.id),
            callbacks=callbacks.get(cid, ()) if cid else (),
        )
        for row, b_status, tx, cid in rows
    )


async def _paid_siblings(session: AsyncSession, booking_ids: list[int]) -> dict[int, list[PaidSibling]]:
    if not booking_ids:
        return {}
    query = (
        select(
            PaymentAttempt.booking_id,
            PaymentAttempt.id,
            PaymentAttempt.mpesa_receipt,
            func.coalesce(PaymentAttempt.paid_amount_kes, PaymentAttempt.amount_kes),
        )
        .where(
            PaymentAttempt.booking_id.in_(set(booking_ids)),
            PaymentAttempt.status == PaymentStatus.PAID.value,
        )
        .order_by(PaymentAttempt.id)
    )
    out: dict[int, list[PaidSibling]] = {}
    for booking_id, attempt_id, receipt, amount in (await session.execute(query)).all():
        out.setdefault(booking_id, []).append(PaidSibling(attempt_id, receipt, amount))
    return out


async def _callbacks(session: AsyncSession, checkout_ids: list[str]) -> dict[str, tuple[str, ...]]:
    if not checkout_ids:
        return {}
    query = (
        select(CallbackInbox.provider_id, CallbackInbox.raw_body)
        .where(CallbackInbox.provider == CALLBACK_PROVIDER, CallbackInbox.provider_id.in_(set(checkout_ids)))
        .order_by(CallbackInbox.id)
    )
    out: dict[str, list[str]] = {}
    for provider_id, body in (await session.execute(query)).all():
        out.setdefault(provider_id, []).append(_masked(body[:CALLBACK_SHOWN_CHARS]))
    return {k: tuple(v) for k, v in out.items()}


def _masked(body: str) -> str:
    # A CheckoutRequestID ends with the payer's number (core.mpesa.redact): mask it too.
    return mask_phones(_CHECKOUT_ID.sub(lambda m: redact_checkout_id(m.group(0)), body))


async def _refund_items(session: AsyncSession) -> tuple[RefundItem, ...]:
    query = open_refunds_query().order_by(AuditEntry.seq).limit(QUEUE_LIMIT)
    items = []
    for entry in (await session.scalars(query)).all():
        d: dict[str, Any] = dict(entry.details or {})
        items.append(
            RefundItem(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                booking_id=d.get("booking_id"),
                reference=d.get("reference"),
                attempt_id=d.get("attempt_id"),
                amount_kes=d.get("amount_kes"),
                receipt=d.get("receipt"),
            )
        )
    return tuple(items)


async def queue_of(uow_factory: Callable[[], UnitOfWork]) -> ReviewQueue:
    """:func:`review_queue` in its own read transaction (the admin view's one call)."""
    async with uow_factory() as uow:
        return await review_queue(uow.session)
