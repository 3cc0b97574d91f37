"""Settle a run of plain success callbacks with a handful of statements (the common case).

``settle_in_session`` settles one STK result with ~22 statements; at SQLite's and
SQLAlchemy's per-statement cost that caps a burst at well under 100 callbacks/s. This
module settles the longest *prefix* of a run of inbox rows that is the common case —

    a success callback that :func:`core.domain.settlement_rules.judge_success` (the one
    decision both paths ask) rules PAID, whose booking has no reminders yet, and that
    shares no attempt, booking or receipt with another row of the run

— in the caller's transaction, with set-based statements: one SELECT of the attempts with
their bookings, clients, practitioners and session types, one receipt check, one reminder
check (in the same SELECT), compare-and-set UPDATEs per previous status
(:func:`core.db.uow.transition_payments_from` / ``transition_bookings_from``: the sources
come from the transition table, the row counts must match), the audit entries hashed in
Python from one chain-tail read (under the same chain lock) and inserted at once, one
INSERT each for reminders and outbox rows, one UPDATE of the inbox rows.

The rows come from the builders the one-by-one path uses: attempt columns, reasons,
message data and keys (``payments.settlement``), recipients and channels
(``notifications.notify.chat_message`` / ``email_message``), outbox rows (``outbox_store.outbox_row``),
reminder rows (``reminders.new_reminder_rows``), audit entries (``audit.transition_draft`` and
``audit.chain_rows``). The first row that is not the common case ends the prefix: the caller
settles it one by one with ``settle_in_session`` and carries on, so rows are settled in
inbox order either way. A compare-and-set that does not match raises
``TransitionConflict``; the caller rolls back and settles those rows one by one.
tests/integration/test_settlement_batch.py settles the same callbacks through both paths,
on SQLite and PostgreSQL, and compares every row written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings, is_test_environment
from core.db.models import (
    AuditEntry,
    Booking,
    Client,
    Outbox,
    PaymentAttempt,
    Reminder,
    SessionType,
    Therapist,
)
from core.db.statements import insert_ignore
from core.db.types import utcnow
from core.db.uow import transition_bookings_from, transition_payments_from
from core.domain.meeting import new_meeting_url
from core.domain.settlement_rules import (
    AttemptFacts,
    BookingFacts,
    Paid,
    StkResult,
    booking_paid_reason,
    judge_success,
    paid_reason,
)
from core.domain.states import BookingEvent, BookingStatus, PaymentEvent, PaymentStatus
from core.mpesa.result_codes import describe_result
from core.services import audit
from core.services.notifications import outbox_store
from core.services.notifications.notify import chat_message, email_message
from core.services.notifications.outbox_store import DEDUPE_UNIQUE
from core.services.notifications.reminders import REMINDER_UNIQUE, new_reminder_rows
from core.services.payments import inbox
from core.services.payments.settlement import (
    PAID_CLIENT_TEMPLATE,
    PAID_EMAIL_TEMPLATE,
    PAID_THERAPIST_TEMPLATE,
    paid_dedupe_key,
    paid_message_data,
    success_values,
)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BatchItem:
    """One stored callback: its inbox row and what it reports."""

    inbox_id: int
    result: StkResult


def may_batch(result: StkResult) -> bool:
    """What the callback alone says: a success with a whole amount and a receipt."""
    return (
        result.source == "callback"
        and not result.query_disagrees
        and result.amount is not None
        and bool(result.receipt)
        and describe_result(result.result_code).is_success
    )


# The tables the set-based statements write (mapped classes type __table__ as a FromClause).
_ATTEMPTS = cast(Table, PaymentAttempt.__table__)
_BOOKINGS = cast(Table, Booking.__table__)
_AUDIT = cast(Table, AuditEntry.__table__)
_A, _B, _C, _T, _S = (
    PaymentAttempt.__table__.c,
    Booking.__table__.c,
    Client.__table__.c,
    Therapist.__table__.c,
    SessionType.__table__.c,
)


async def settle_batch(
    session: AsyncSession, items: Sequence[BatchItem], *, settings: Settings, now: datetime, worker: str
) -> int:
    """Settle the longest common-case prefix of ``items`` as PAID inside the caller's transaction.

    Returns its length (0: the first item needs ``settle_in_session``). Raises
    ``TransitionConflict`` when a compare-and-set matched fewer rows than read, and its
    ``ClaimLost`` when an inbox row is no longer ``worker``'s claim: roll back.
    """
    if not items:
        return 0
    # Reading and planning take no row lock, so they run before the chain lock: several
    # workers (processes) plan their batches at once and queue only for the writing. What was
    # read is re-checked where it is written (compare-and-set with exact counts, the receipt's
    # unique index), so a change in between rolls the batch back as before.
    state = await _load(session, items)
    plans: list[_Plan] = []
    seen_attempts: set[int] = set()
    seen_bookings: set[int] = set()
    seen_receipts: set[str] = set()
    for item in items:
        plan = _plan(item, state, settings=settings, now=now)
        if plan is None or plan.attempt_id in seen_attempts or plan.booking_id in seen_bookings:
            break
        receipt = item.result.receipt or ""
        if receipt in seen_receipts:
            break
        seen_attempts.add(plan.attempt_id)
        seen_bookings.add(plan.booking_id)
        seen_receipts.add(receipt)
        plans.append(plan)
    if plans:
        await audit.lock_chain(session)  # before the first row lock, as settle_in_session takes it
        await _write(session, plans, now=now, worker=worker)
    return len(plans)


# -- reading --------------------------------------------------------------------------------


@dataclass
class _State:
    # CheckoutRequestID -> attempt joined with booking, client, practitioner, session type
    rows: dict[str, Row[*tuple[Any, ...]]]
    receipt_owner: dict[str, int]  # receipt -> attempt that already has it


async def _load(session: AsyncSession, items: Sequence[BatchItem]) -> _State:
    checkouts = list({item.result.checkout_request_id for item in items})
    has_reminders = exists().where(Reminder.__table__.c.booking_id == _B.id)
    query = (
        select(
            _A.id.label("attempt_id"),
            _A.checkout_request_id,
            _A.status.label("attempt_status"),
            _A.amount_kes,
            _A.environment,
            _B.id.label("booking_id"),
            _B.reference,
            _B.status.label("booking_status"),
            _B.starts_at,
            _B.ends_at,
            _B.email.label("booking_email"),
            _C.id.label("client_id"),
            _C.name.label("client_name"),
            _C.email.label("client_email"),
            _C.phone.label("client_phone"),
            _C.telegram_user_id.label("client_telegram"),
            _C.telegram_unreachable.label("client_unreachable"),
            _C.anonymised.label("client_anonymised"),
            _T.id.label("therapist_id"),
            _T.name.label("therapist_name"),
            _T.phone.label("therapist_phone"),
            _T.telegram_user_id.label("therapist_telegram"),
            _T.telegram_unreachable.label("therapist_unreachable"),
            _S.name.label("session_type_name"),
            _S.minutes,
            has_reminders.label("has_reminders"),
        )
        .select_from(PaymentAttempt.__table__)
        .join(Booking.__table__, _B.id == _A.booking_id)
        .join(Client.__table__, _C.id == _B.client_id)  # the messages go to the booking's client
        .join(Therapist.__table__, _T.id == _B.therapist_id)
        .join(SessionType.__table__, _S.id == _B.session_type_id)
        .where(_A.checkout_request_id.in_(checkouts))
    )
    rows = {row.checkout_request_id: row for row in (await session.execute(query)).all()}
    receipts = list({item.result.receipt for item in items if item.result.receipt})
    owners = (
        await session.execute(select(_A.mpesa_receipt, _A.id).where(_A.mpesa_receipt.in_(receipts)))
    ).all()
    return _State(rows=rows, receipt_owner={receipt: attempt_id for receipt, attempt_id in owners})


# -- deciding and planning (no I/O) ---------------------------------------------------------


@dataclass
class _Plan:
    item: BatchItem
    attempt_id: int
    booking_id: int
    previous: PaymentStatus
    meeting_url: str
    reminders: list[dict[str, Any]]
    messages: list[dict[str, Any]]  # outbox rows
    audit_entries: list[audit.Draft]


@dataclass(frozen=True)
class _BookingView:
    id: int
    reference: str
    starts_at: datetime
    ends_at: datetime
    meeting_url: str | None


def _plan(item: BatchItem, state: _State, *, settings: Settings, now: datetime) -> _Plan | None:
    """Everything one common-case row writes, or None when it is not the common case."""
    result = item.result
    if not may_batch(result):
        return None
    row = state.rows.get(result.checkout_request_id)
    if row is None:
        return None  # unknown attempt: the one-by-one path logs it
    verdict = judge_success(
        AttemptFacts(id=row.attempt_id, status=row.attempt_status, amount_kes=row.amount_kes),
        BookingFacts(status=row.booking_status),
        result,
        state.receipt_owner.get(result.receipt or ""),
    )
    if not isinstance(verdict, Paid):
        return None  # flag, duplicate or not ready: the one-by-one path carries it out
    if row.has_reminders:
        return None  # create_reminders would rearm existing rows: leave it to the one-by-one path
    try:
        return _plan_paid(item, row, verdict, settings=settings, now=now)
    except ValueError:  # e.g. a recipient enqueue refuses: the one-by-one path fails the same way
        return None


def _plan_paid(
    item: BatchItem, row: Row[*tuple[Any, ...]], verdict: Paid, *, settings: Settings, now: datetime
) -> _Plan:
    result = item.result
    meeting_url = new_meeting_url(settings.meeting_url_template)
    booking = _BookingView(row.booking_id, row.reference, row.starts_at, row.ends_at, meeting_url)
    data = paid_message_data(
        attempt_id=row.attempt_id,
        amount_kes=row.amount_kes,
        booking=booking,
        client_name=row.client_name,
        therapist_name=row.therapist_name,
        session_type_name=row.session_type_name,
        minutes=row.minutes,
        result=result,
        test_mode=is_test_environment(row.environment),  # the attempt's mode, not the boot mode
    )
    previous = verdict.previous
    return _Plan(
        item=item,
        attempt_id=row.attempt_id,
        booking_id=row.booking_id,
        previous=previous,
        meeting_url=meeting_url,
        reminders=new_reminder_rows(row.booking_id, row.starts_at, now),
        messages=_paid_messages(row, data),
        audit_entries=[
            audit.transition_draft(
                actor="system", subject_type="payment", subject_id=row.attempt_id, previous=previous,
                new=PaymentStatus.PAID, reason=paid_reason(result, previous),
                receipt=result.receipt, amount_kes=result.amount,
            ),
            audit.transition_draft(
                actor="system", subject_type="booking", subject_id=row.booking_id,
                previous=str(row.booking_status), new=BookingStatus.CONFIRMED,
                reason=booking_paid_reason(row.attempt_id),
            ),
        ],
    )


def _paid_messages(row: Row[*tuple[Any, ...]], data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The outbox rows of the confirmations ``settlement._notify_paid`` queues (same order)."""
    # enqueue stores a plain-JSON copy of each message's data; the three share everything but
    # "_route" (plain JSON already), so one copy serves them all.
    data = outbox_store.json_safe(data)
    key = paid_dedupe_key(row.attempt_id)
    planned = [
        chat_message(
            role="client", person_id=row.client_id, telegram_user_id=row.client_telegram,
            telegram_unreachable=bool(row.client_unreachable), phone=row.client_phone,
            template=PAID_CLIENT_TEMPLATE, data=data, dedupe_key=f"{key}:client",
            anonymised=bool(row.client_anonymised),
        ),
        chat_message(
            role="therapist", person_id=row.therapist_id, telegram_user_id=row.therapist_telegram,
            telegram_unreachable=bool(row.therapist_unreachable), phone=row.therapist_phone,
            template=PAID_THERAPIST_TEMPLATE, data=data, dedupe_key=f"{key}:therapist",
        ),
        email_message(
            client_id=row.client_id, anonymised=bool(row.client_anonymised),
            email=row.booking_email or row.client_email, template=PAID_EMAIL_TEMPLATE, data=data,
            dedupe_key=f"{key}:email",
        ),
    ]
    queued = utcnow()
    return [
        outbox_store.outbox_row(
            channel=m.channel, recipient=m.recipient, template=m.template, data=m.data,
            dedupe_key=m.dedupe_key, now=queued, plain_json=True,
        )
        for m in planned
        if m is not None
    ]


# -- writing --------------------------------------------------------------------------------


async def _write(session: AsyncSession, plans: list[_Plan], *, now: datetime, worker: str) -> None:
    stamp = utcnow()
    await _compare_and_set(session, plans, now=now, stamp=stamp)
    await _write_paid_values(session, plans, now=now)
    seq, prev_hash = await audit.chain_tail(session)
    drafts = [entry for p in plans for entry in p.audit_entries]
    await session.execute(
        insert(_AUDIT), audit.chain_rows(drafts, seq=seq, prev_hash=prev_hash)
    )
    reminders = [r for p in plans for r in p.reminders]
    if reminders:
        await session.execute(insert_ignore(session, Reminder.__table__, unique=REMINDER_UNIQUE), reminders)
    messages = [m for p in plans for m in p.messages]
    if messages:
        await session.execute(insert_ignore(session, Outbox.__table__, unique=DEDUPE_UNIQUE), messages)
    await inbox.mark_settled(session, worker, [p.item.inbox_id for p in plans], now=now)
    for p in plans:
        log.info(
            "payment settled",
            extra={"attempt": p.attempt_id, "booking": p.booking_id, "source": p.item.result.source},
        )


async def _compare_and_set(
    session: AsyncSession, plans: list[_Plan], *, now: datetime, stamp: datetime
) -> None:
    """Every attempt must still be in the status its audit entry names as "previous", every
    booking still APPROVED (one UPDATE per previous status)."""
    by_previous: dict[PaymentStatus, list[int]] = {}
    for p in plans:
        by_previous.setdefault(p.previous, []).append(p.attempt_id)
    for previous, ids in by_previous.items():
        await transition_payments_from(
            session, ids, PaymentEvent.SUCCEED, previous=previous, updated_at=stamp, settled_at=now
        )
    await transition_bookings_from(
        session, [p.booking_id for p in plans], BookingEvent.PAY, previous=BookingStatus.APPROVED,
        updated_at=stamp,
    )


_PAID_COLUMNS = (
    "mpesa_receipt", "paid_amount_kes", "paid_phone", "transaction_time", "result_code", "result_desc"
)


async def _write_paid_values(session: AsyncSession, plans: list[_Plan], *, now: datetime) -> None:
    """The per-row values, on rows this transaction now holds (executemany)."""
    attempts = _ATTEMPTS
    await session.execute(
        update(attempts)
        .where(attempts.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in _PAID_COLUMNS}),
        [
            {"b_id": p.attempt_id}
            | {f"b_{k}": v for k, v in success_values(p.item.result, now=now).items() if k in _PAID_COLUMNS}
            for p in plans
        ],
    )
    bookings = _BOOKINGS
    await session.execute(
        update(bookings).where(bookings.c.id == bindparam("b_id")).values(meeting_url=bindparam("b_url")),
        [{"b_id": p.booking_id, "b_url": p.meeting_url} for p in plans],
    )
