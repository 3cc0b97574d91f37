"""Property: whatever moves clients and admins make, approved or declined, one at a time or
racing for the same slot, a practitioner never has two live bookings in one slot.

Each example gets a fresh practitioner with four live bookings and runs a generated list of
moves against the real database (each backend in turn) with the rescheduling service; the
runtimes' clock is fixed, so the free slots never depend on when the test runs.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.db.models import Booking, BookingReschedule
from core.domain.slots import NAIROBI
from core.domain.states import LIVE_BOOKING_STATUSES, BookingStatus, RescheduleStatus
from core.runtime import Runtime, build_runtime
from core.services.booking.reschedule import decide_reschedule, reschedule_booking
from core.services.booking.types import BookingError
from tests.conftest import make_settings
from tests.factories import make_booking, make_client, make_session_type, make_therapist
from tests.integration.test_dialog_reschedule import START
from tests.support.payments import Clock

DAYS = (datetime(2031, 3, 12, tzinfo=NAIROBI), datetime(2031, 3, 13, tzinfo=NAIROBI))  # Wed, Thu
CANDIDATES = [day + timedelta(hours=9, minutes=30 * i) for day in DAYS for i in range(15)]
INITIAL = [CANDIDATES[0], CANDIDATES[2], CANDIDATES[4], CANDIDATES[10]]  # Wed 09:00, 10:00, 11:00, 14:00
MINUTES = 50
KINDS = ("client", "admin", "ask", "decide", "race")
ops = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(0, len(INITIAL) - 1),
        st.integers(0, len(CANDIDATES) - 1),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


async def _practice(runtime: Runtime) -> tuple[int, list[tuple[int, int]]]:
    """A fresh practitioner with four live bookings: (therapist id, [(booking id, client id)])."""
    async with runtime.uow() as uow:
        s = uow.session
        therapist = await make_therapist(s)
        kind = await make_session_type(s, minutes=MINUTES)
        rows = []
        for i, start in enumerate(INITIAL):
            status = BookingStatus.CONFIRMED if i % 2 else BookingStatus.APPROVED
            client = await make_client(s)
            booking = await make_booking(
                s, status=status, therapist=therapist, client=client, session_type=kind, starts_at=start
            )
            rows.append((booking.id, client.id))
        await uow.commit()
        return therapist.id, rows


async def _run(
    direct: Runtime,
    asking: Runtime,
    op: tuple[str, int, int, bool],
    therapist_id: int,
    rows: list[tuple[int, int]],
) -> None:
    kind, index, slot, flag = op
    booking_id, client_id = rows[index]
    target = CANDIDATES[slot]
    try:
        if kind == "client":
            await reschedule_booking(direct, booking_id=booking_id, new_starts_at=target, client_id=client_id)
        elif kind == "admin":
            await reschedule_booking(direct, booking_id=booking_id, new_starts_at=target, admin_id=1)
        elif kind == "ask":
            await reschedule_booking(asking, booking_id=booking_id, new_starts_at=target, client_id=client_id)
        elif kind == "decide":
            async with direct.uow() as uow:
                pending = await uow.session.scalar(
                    select(BookingReschedule.id).where(
                        BookingReschedule.booking_id == booking_id,
                        BookingReschedule.status == RescheduleStatus.PENDING,
                    )
                )
            if pending is not None:
                await decide_reschedule(direct, therapist_id=therapist_id, request_id=pending, approve=flag)
        else:  # two clients race for the same slot, one asking for approval or not
            other_id, other_client = rows[(index + 1) % len(rows)]
            await asyncio.gather(
                _quietly(
                    reschedule_booking(
                        direct, booking_id=booking_id, new_starts_at=target, client_id=client_id
                    )
                ),
                _quietly(
                    reschedule_booking(
                        asking if flag else direct,
                        booking_id=other_id,
                        new_starts_at=target,
                        client_id=other_client,
                    )
                ),
            )
    except BookingError as exc:
        event(f"{kind}: {exc.code}")  # refused (taken, not a free slot...): nothing may have changed
    else:
        event(f"{kind}: done")


async def _quietly(move: object) -> None:
    try:
        await move  # type: ignore[misc]
    except BookingError:
        pass


async def _check(runtime: Runtime, therapist_id: int) -> None:
    async with runtime.uow() as uow:
        live = (
            await uow.session.scalars(
                select(Booking).where(
                    Booking.therapist_id == therapist_id,
                    Booking.status.in_([s.value for s in LIVE_BOOKING_STATUSES]),
                )
            )
        ).all()
        holds = (
            await uow.session.scalars(
                select(BookingReschedule).where(
                    BookingReschedule.therapist_id == therapist_id,
                    BookingReschedule.status == RescheduleStatus.PENDING,
                )
            )
        ).all()
    assert len(live) == len(INITIAL)  # moving never cancels nor duplicates a booking
    taken = sorted((b.starts_at, b.ends_at, f"booking {b.id}") for b in live)
    taken += sorted((h.new_starts_at, h.new_ends_at, f"hold {h.id}") for h in holds)
    taken.sort()
    starts = [start for start, _, _ in taken]
    assert len(starts) == len(set(starts)), taken  # never two in one slot
    for (_, end, first), (start, _, second) in zip(taken, taken[1:], strict=False):
        assert end <= start, f"{first} overlaps {second}: {taken}"
    for b in live:
        assert b.ends_at - b.starts_at == timedelta(minutes=MINUTES)


# Issue 15 property (not one of the seed's 82): no double booking under any moves.
def test_rescheduling_never_leaves_two_live_bookings_in_one_practitioner_slot(database_url: str) -> None:
    with asyncio.Runner() as runner:
        direct = build_runtime(make_settings(database_url), clock=Clock(start=START))
        asking = build_runtime(
            make_settings(database_url, RESCHEDULE_NEEDS_APPROVAL="true"), clock=Clock(start=START)
        )

        @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(moves=ops)
        def check(moves: list[tuple[str, int, int, bool]]) -> None:
            async def run() -> None:
                therapist_id, rows = await _practice(direct)
                for op in moves:
                    await _run(direct, asking, op, therapist_id, rows)
                    await _check(direct, therapist_id)

            runner.run(run())

        try:
            check()
        finally:
            runner.run(direct.close())
            runner.run(asking.close())
