"""Unit of work and compare-and-set transitions used by every service.

A state change is one statement: ``UPDATE … SET status=:to WHERE id=:id AND status IN
(:sources)``; the row count says whether we won. That is correct on SQLite (one writer
at a time) and on PostgreSQL (the row lock serialises concurrent updaters and the
loser re-evaluates the WHERE clause and matches nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db.models import Booking, PaymentAttempt
from core.db.types import utcnow
from core.domain.states import (
    BOOKING_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    BookingEvent,
    BookingStatus,
    PaymentEvent,
    PaymentStatus,
    booking_sources,
    payment_sources,
)


class TransitionConflict(RuntimeError):
    """The row was not in a state that allows the event (someone else got there first)."""

    def __init__(self, what: str, row_id: int, event: str) -> None:
        self.what, self.row_id, self.event = what, row_id, event
        super().__init__(f"{what} {row_id}: '{event}' not applicable to its current status")


class UnitOfWork:
    """One database transaction: ``async with uow: …; await uow.commit()``.

    Leaving the block without ``commit()`` rolls back, so an exception never leaves
    half a change behind; objects loaded inside stay readable afterwards.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.session: AsyncSession

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back anything uncommitted; unlike rollback() it leaves loaded
        # objects readable (detached, not expired), so services can return them.
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()


def _target(table: dict[Any, Any] | Any, event: Any) -> Any:
    targets = {to for (_src, ev), to in table.items() if ev == event}
    if len(targets) != 1:  # the tables are built so that every event has one target
        raise ValueError(f"event {event} has targets {targets}")
    return next(iter(targets))


async def transition_payment(
    session: AsyncSession,
    attempt_id: int,
    event: PaymentEvent,
    *,
    only_from: Iterable[PaymentStatus] | None = None,
    **values: Any,
) -> PaymentStatus:
    """Apply ``event`` to a payment attempt with a conditional UPDATE; return the new status."""
    sources = payment_sources(event) & frozenset(only_from if only_from is not None else PaymentStatus)
    target: PaymentStatus = _target(PAYMENT_TRANSITIONS, event)
    await _compare_and_set(
        session, PaymentAttempt, "payment attempt", attempt_id, event, sources, target, values
    )
    return target


async def transition_booking(
    session: AsyncSession,
    booking_id: int,
    event: BookingEvent,
    *,
    only_from: Iterable[BookingStatus] | None = None,
    **values: Any,
) -> BookingStatus:
    """Apply ``event`` to a booking with a conditional UPDATE; return the new status."""
    sources = booking_sources(event) & frozenset(only_from if only_from is not None else BookingStatus)
    target: BookingStatus = _target(BOOKING_TRANSITIONS, event)
    await _compare_and_set(session, Booking, "booking", booking_id, event, sources, target, values)
    return target


async def _compare_and_set(
    session: AsyncSession,
    model: type[Booking] | type[PaymentAttempt],
    what: str,
    row_id: int,
    event: StrEnum,
    sources: frozenset[StrEnum],
    target: StrEnum,
    values: dict[str, Any],
) -> None:
    result = await session.execute(
        update(model)
        .where(model.id == row_id, model.status.in_([s.value for s in sources]))
        .values(status=target.value, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TransitionConflict(what, row_id, event.value)


async def transition_payments_from(
    session: AsyncSession,
    attempt_ids: Sequence[int],
    event: PaymentEvent,
    *,
    previous: PaymentStatus,
    **values: Any,
) -> PaymentStatus:
    """Apply ``event`` to attempts that are all in ``previous``, with one UPDATE.

    ``previous`` must be a source of ``event`` in the transition table; every row must still
    be in it (the audit entries name it), else ``TransitionConflict``.
    """
    if previous not in payment_sources(event):
        raise TransitionConflict("payment attempt", attempt_ids[0], event.value)
    target: PaymentStatus = _target(PAYMENT_TRANSITIONS, event)
    await _compare_and_set_many(
        session, PaymentAttempt, "payment attempt", attempt_ids, event, previous, target, values
    )
    return target


async def transition_bookings_from(
    session: AsyncSession,
    booking_ids: Sequence[int],
    event: BookingEvent,
    *,
    previous: BookingStatus,
    **values: Any,
) -> BookingStatus:
    """Apply ``event`` to bookings that are all in ``previous``, with one UPDATE (as above)."""
    if previous not in booking_sources(event):
        raise TransitionConflict("booking", booking_ids[0], event.value)
    target: BookingStatus = _target(BOOKING_TRANSITIONS, event)
    await _compare_and_set_many(session, Booking, "booking", booking_ids, event, previous, target, values)
    return target


async def _compare_and_set_many(
    session: AsyncSession,
    model: type[Booking] | type[PaymentAttempt],
    what: str,
    row_ids: Sequence[int],
    event: StrEnum,
    previous: StrEnum,
    target: StrEnum,
    values: dict[str, Any],
) -> None:
    # A single statement, not executemany: its row count is reliable on every driver.
    result = await session.execute(
        update(model)
        .where(model.id.in_(list(row_ids)), model.status == previous.value)
        .values(status=target.value, **({"updated_at": utcnow()} | values))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(row_ids):  # type: ignore[attr-defined]
        raise TransitionConflict(what, row_ids[0], event.value)
