"""Settle a run of plain success callbacks with a handful of statements (the common case).

``settle_in_session`` settles one STK result with ~22 statements; at SQLite's and
SQLAlchemy's per-statement cost that caps a burst at well under 100 callbacks/s. This
module settles the longest *prefix* of a run of inbox rows that is the common case —

    a success callback whose amount matches the attempt, with a receipt no attempt has,
    for an AWAITING_CUSTOMER or UNCLEAR attempt whose booking is APPROVED and has no
    reminders yet (and no other row of the run touches the same attempt, booking or receipt)

— in the caller's transaction, with set-based statements: one SELECT of the attempts with
their bookings, clients, practitioners and session types, one receipt check, one reminder
check, compare-and-set UPDATEs whose row counts must match, the audit entries hashed in
Python from one chain-tail read (under the same chain lock) and inserted at once, one
INSERT each for reminders and outbox rows, one UPDATE of the inbox rows.

The rows written are the ones ``settle_in_session`` writes for the same results; the
values come from the same functions (``core.services.payments.settlement``: attempt columns,
reasons, message data and keys; ``core.services.notifications.reminders.plan_reminders``; the audit
chain's ``sanitize_details``/``make_record``). The first row that is not the common case
ends the prefix: the caller settles it one by one with ``settle_in_session`` and carries
on, so rows are settled in inbox order either way. A compare-and-set that does not match
raises ``TransitionConflict``; the caller rolls back and settles those rows one by one.

Duplicated on purpose (no pure function to call in those modules yet): the chat routing
rule of ``core.services.notifications.notify`` and the details layout of
``audit.record_transition``. tests/integration/test_settlement_batch.py settles the same
callbacks through both paths, on SQLite and PostgreSQL, and compares every row written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings, is_test_environment
from core.db.models import (
    AuditEntry,
    Booking,
    CallbackInbox,
    Client,
    Outbox,
    PaymentAttempt,
    Reminder,
    SessionType,
    Therapist,
)
from core.db.types import utcnow
from core.db.uow import TransitionConflict
from core.domain.email import email_or_none
from core.domain.meeting import new_meeting_url
from core.domain.states import BookingStatus, PaymentStatus
from core.mpesa.result_codes import describe_result
from core.services import audit
from core.services.notifications import outbox_store
from core.services.notifications.notify import chat_route
from core.services.notifications.reminders import PENDING as REMINDER_PENDING
from core.services.notifications.reminders import plan_reminders
from core.services.payments.settlement import (
    PAID_CLIENT_TEMPLATE,
    PAID_EMAIL_TEMPLATE,
    PAID_THERAPIST_TEMPLATE,
    StkResult,
    booking_paid_reason,
    paid_dedupe_key,
    paid_message_data,
    paid_reason,
    success_values,
)

log = logging.getLogger(__name__)

BATCH_SOURCES = (PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.UNCLEAR)


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


_A, _B, _C, _T, _S = (
    PaymentAttempt.__table__.c,
    Booking.__table__.c,
    Client.__table__.c,
    Therapist.__table__.c,
    SessionType.__table__.c,
)


async def settle_batch(
    session: AsyncSession, items: Sequence[BatchItem], *, settings: Settings, now: datetime
) -> int:
    """Settle the longest common-case prefix of ``items`` as PAID inside the caller's transaction.

    Returns its length (0: the first item needs ``settle_in_session``). Raises
    ``TransitionConflict`` when a compare-and-set matched fewer rows than read: roll back.
    """
    if not items:
        return 0
    await audit.lock_chain(session)  # the chain lock first, as settle_in_session takes it
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
        await _write(session, plans, now=now)
    return len(plans)


# -- reading --------------------------------------------------------------------------------


@dataclass
class _State:
    rows: dict[str, Any]  # CheckoutRequestID -> attempt joined with booking, client, practitioner, type
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
    previous: str
    meeting_url: str
    reminders: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    audit: list[tuple[str, int, dict[str, Any]]]  # (subject type, subject id, sanitised details)


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
    if row is None or row.attempt_status not in BATCH_SOURCES:
        return None  # unknown, not yet pushed, or already ended: the one-by-one path decides
    if result.amount != row.amount_kes or row.booking_status != BookingStatus.APPROVED:
        return None
    owner = state.receipt_owner.get(result.receipt or "")
    if owner is not None and owner != row.attempt_id:
        return None  # possible double payment: review
    if row.has_reminders:
        return None  # create_reminders would rearm existing rows: leave it to the one-by-one path
    try:
        return _plan_paid(item, row, settings=settings, now=now)
    except ValueError:  # e.g. a recipient enqueue refuses: the one-by-one path fails the same way
        return None


def _plan_paid(item: BatchItem, row: Any, *, settings: Settings, now: datetime) -> _Plan:
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
    # enqueue stores a plain-JSON copy of each message's data; the three share everything but
    # "_route" (plain JSON already), so one copy serves them all.
    data = outbox_store.json_safe(data)
    key = paid_dedupe_key(row.attempt_id)
    messages: list[dict[str, Any]] = []
    if not row.client_anonymised:
        _chat(messages, "client", row.client_id, row.client_telegram, row.client_unreachable,
              row.client_phone, PAID_CLIENT_TEMPLATE, data, f"{key}:client")
    _chat(messages, "therapist", row.therapist_id, row.therapist_telegram, row.therapist_unreachable,
          row.therapist_phone, PAID_THERAPIST_TEMPLATE, data, f"{key}:therapist")
    given = (row.booking_email or row.client_email or "").strip()
    if given and not row.client_anonymised:
        address = email_or_none(given)  # the same rule as notifications.email_client
        if address is not None:
            route = {"role": "client", "id": row.client_id}
            messages.append(_message("email", address, PAID_EMAIL_TEMPLATE, data, route, f"{key}:email"))
        else:
            log.warning(
                "not e-mailing an invalid address",
                extra={"client": row.client_id, "template": PAID_EMAIL_TEMPLATE},
            )
    previous = str(row.attempt_status)
    audit_entries = [
        _transition_details(
            "payment", row.attempt_id, previous, PaymentStatus.PAID, paid_reason(result, previous),
            receipt=result.receipt, amount_kes=result.amount,
        ),
        _transition_details(
            "booking", row.booking_id, str(row.booking_status), BookingStatus.CONFIRMED,
            booking_paid_reason(row.attempt_id),
        ),
    ]
    reminders = [
        {"booking_id": row.booking_id, "kind": kind, "due_at": due, "status": REMINDER_PENDING}
        for kind, due in plan_reminders(row.starts_at, now)
    ]
    return _Plan(
        item=item,
        attempt_id=row.attempt_id,
        booking_id=row.booking_id,
        previous=previous,
        meeting_url=meeting_url,
        reminders=reminders,
        messages=messages,
        audit=audit_entries,
    )


def _chat(
    out: list[dict[str, Any]],
    role: str,
    person_id: int,
    telegram_user_id: int | None,
    unreachable: bool | None,
    phone: str | None,
    template: str,
    data: Mapping[str, Any],
    dedupe_key: str,
) -> None:
    """Append the chat message :func:`notifications.notify_client` / ``notify_therapist`` would queue."""
    target = chat_route(
        role=role, person_id=person_id, telegram_user_id=telegram_user_id,
        telegram_unreachable=bool(unreachable), phone=phone,
    )
    if target is not None:
        channel, recipient, route = target
        out.append(_message(channel, recipient, template, data, route, dedupe_key))


def _message(
    channel: str, recipient: str, template: str, data: Mapping[str, Any], route: dict[str, Any], key: str
) -> dict[str, Any]:
    """The outbox row ``outbox_store.enqueue`` would insert (validated the same way); ``data`` is
    plain JSON already (``outbox_store.json_safe``)."""
    full = {**data, "_route": route}
    outbox_store.validate(channel, recipient, template, full)
    return {
        "channel": channel,
        "recipient": recipient,
        "template": template,
        "data": full,
        "dedupe_key": outbox_store.fit_dedupe_key(key),
        "status": outbox_store.PENDING,
        "attempts": 0,
    }


def _transition_details(
    subject_type: str, subject_id: int, previous: str, new: str, reason: str, **extra: Any
) -> tuple[str, int, dict[str, Any]]:
    """audit.record_transition's details, sanitised as audit.record does."""
    details = audit.transition_details(previous, new, reason, **extra)
    return subject_type, subject_id, audit.sanitize_details(details)


# -- writing --------------------------------------------------------------------------------


async def _write(session: AsyncSession, plans: list[_Plan], *, now: datetime) -> None:
    stamp = utcnow()
    booking_ids = [p.booking_id for p in plans]
    # Compare-and-set with single statements (executemany row counts are not reliable on every
    # driver): each attempt must still be in the status its audit entry names as "previous".
    for previous in BATCH_SOURCES:
        ids = [p.attempt_id for p in plans if p.previous == previous]
        if not ids:
            continue
        claimed = await session.execute(
            update(PaymentAttempt)
            .where(PaymentAttempt.id.in_(ids), PaymentAttempt.status == previous.value)
            .values(status=PaymentStatus.PAID.value, updated_at=stamp, settled_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != len(ids):  # type: ignore[attr-defined]
            raise TransitionConflict("payment attempt", ids[0], "succeed")
    confirmed = await session.execute(
        update(Booking)
        .where(Booking.id.in_(booking_ids), Booking.status == BookingStatus.APPROVED.value)
        .values(status=BookingStatus.CONFIRMED.value, updated_at=stamp)
        .execution_options(synchronize_session=False)
    )
    if confirmed.rowcount != len(plans):  # type: ignore[attr-defined]
        raise TransitionConflict("booking", booking_ids[0], "pay")
    # The per-row values, on rows this transaction now holds.
    paid_columns = ("mpesa_receipt", "paid_amount_kes", "paid_phone", "transaction_time", "result_code",
                    "result_desc")
    attempts = PaymentAttempt.__table__
    await session.execute(
        attempts.update()
        .where(attempts.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in paid_columns}),
        [
            {"b_id": p.attempt_id}
            | {f"b_{k}": v for k, v in success_values(p.item.result, now=now).items() if k in paid_columns}
            for p in plans
        ],
    )
    bookings = Booking.__table__
    await session.execute(
        bookings.update().where(bookings.c.id == bindparam("b_id")).values(meeting_url=bindparam("b_url")),
        [{"b_id": p.booking_id, "b_url": p.meeting_url} for p in plans],
    )
    await _append_audit(session, plans)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    reminders = [r for p in plans for r in p.reminders]
    if reminders:
        once = insert(Reminder.__table__).on_conflict_do_nothing(index_elements=["booking_id", "kind"])
        await session.execute(once, reminders)
    queued = utcnow()
    messages = [m | {"due_at": queued, "created_at": queued} for p in plans for m in p.messages]
    if messages:
        await session.execute(
            insert(Outbox.__table__).on_conflict_do_nothing(index_elements=["dedupe_key"]), messages
        )
    await session.execute(
        update(CallbackInbox)
        .where(CallbackInbox.id.in_([p.item.inbox_id for p in plans]))
        .values(processed_at=now, attempts=CallbackInbox.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    for p in plans:
        log.info(
            "payment settled",
            extra={"attempt": p.attempt_id, "booking": p.booking_id, "source": p.item.result.source},
        )


async def _append_audit(session: AsyncSession, plans: list[_Plan]) -> None:
    """The batch's entries on the chain: one tail read, hashed here, one INSERT."""
    last = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    tail = (await session.execute(last)).first()
    seq, prev_hash = (tail[0] + 1, tail[1]) if tail else (1, audit.GENESIS_HASH)
    rows: list[dict[str, Any]] = []
    for plan in plans:
        for subject_type, subject_id, details in plan.audit:
            rec = audit.make_record(
                prev_hash,
                seq=seq,
                at=utcnow(),  # stamped under the chain lock, like audit.record
                actor="system",
                action=f"{subject_type}.status_changed",
                subject_type=subject_type,
                subject_id=str(subject_id),
                details=details,
            )
            rows.append(
                {
                    "seq": rec.seq,
                    "at": rec.at,
                    "actor": rec.actor,
                    "action": rec.action,
                    "subject_type": rec.subject_type,
                    "subject_id": rec.subject_id,
                    "details": rec.details,
                    "prev_hash": rec.prev_hash,
                    "hash": rec.hash,
                }
            )
            seq, prev_hash = seq + 1, rec.hash
    await session.execute(AuditEntry.__table__.insert(), rows)
