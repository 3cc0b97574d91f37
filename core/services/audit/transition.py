"""One audited transition: take the chain lock, compare-and-set the status, write the entry.

Every status change of a booking or a payment attempt goes through :func:`apply_transition`
(the batch settlement, which changes many rows with one statement, uses the set-based
compare-and-set of ``core.db.uow`` and the row builders of ``record``). Losing the
compare-and-set raises ``core.db.uow.TransitionConflict`` and writes nothing; the caller
decides what a lost race means (re-read, skip, or roll back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from core.db.uow import transition_booking, transition_payment
from core.domain.states import BookingEvent, BookingStatus, PaymentEvent, PaymentStatus
from core.services.audit.record import lock_chain, record_transition

Machine = Literal["booking", "payment"]


@dataclass(frozen=True)
class Applied:
    """A status change that happened: from ``previous`` to ``new``."""

    previous: str
    new: BookingStatus | PaymentStatus


async def apply_transition(
    session: AsyncSession,
    machine: Machine,
    row_id: int,
    event: BookingEvent | PaymentEvent,
    *,
    previous: str,
    actor: str,
    reason: str,
    only_from: Iterable[str] | None = None,
    audit_details: Mapping[str, Any] | None = None,
    **values: Any,
) -> Applied:
    """Move row ``row_id`` of ``machine`` by ``event`` (setting ``values`` too) and audit it.

    ``previous`` is the status the caller read (the audit entry names it); ``only_from``
    narrows the statuses the compare-and-set accepts below the transition table's sources.
    ``audit_details`` are extra details of the entry (e.g. the receipt and amount of a payment).
    Raises ``TransitionConflict`` when the row is in no accepted status: nothing is written.
    """
    await lock_chain(session)  # the chain lock before the row lock: no deadlock on PostgreSQL
    new: BookingStatus | PaymentStatus
    if machine == "payment":
        sources = None if only_from is None else [PaymentStatus(s) for s in only_from]
        new = await transition_payment(session, row_id, PaymentEvent(event), only_from=sources, **values)
    else:
        booking_sources = None if only_from is None else [BookingStatus(s) for s in only_from]
        new = await transition_booking(
            session, row_id, BookingEvent(event), only_from=booking_sources, **values
        )
    await record_transition(
        session,
        actor=actor,
        subject_type=machine,
        subject_id=row_id,
        previous=previous,
        new=new,
        reason=reason,
        **dict(audit_details or {}),
    )
    return Applied(previous=str(previous), new=new)
