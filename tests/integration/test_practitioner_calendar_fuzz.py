"""Property-based and race checks of the practitioner calendar through the real engine and database:
whatever a practitioner types after AWAY / HOURS, or presses in the time-off menus, gets a proper
answer (never the internal-error apology); and a booking request racing a block of the same time
never ends up inside the block unseen."""

from __future__ import annotations

import asyncio
from datetime import datetime, time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.db.models import Booking, TimeOff
from core.dialog import messages
from core.dialog.sms import render_sms
from core.dialog.types import OPTION_VALUE_MAX_BYTES, Inbound, Reply
from core.domain.slots import NAIROBI, Interval
from core.runtime import Runtime, build_runtime
from core.services.booking.lifecycle import create_booking, find_or_create_client
from core.services.booking.time_off import block_time
from core.services.booking.types import BookingError
from core.templates.gsm import contains_forbidden
from tests.conftest import make_settings
from tests.integration.test_dialog_support import SMS_THERAPIST_PHONE, THERAPIST_TELEGRAM_ID, build_world
from tests.support.payments import Clock

START = datetime(2031, 3, 10, 8, 0, tzinfo=NAIROBI)  # a Monday morning in Nairobi

words = st.sampled_from(["AWAY", "away", "/away", "HOURS", "/hours", "hours"])
dates = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        ["12 mar", "12-14 MAR", "12 mar 14:00-17:00", "31 feb", "9 mar", "tomorrow", "fri 2-5pm"]
    ),
    st.from_regex(r"\A\d{1,2}[ -]?\d{0,2} ?(jan|mar|apr|dec|des)?( \d{1,2}:\d{2}-\d{1,2}:\d{2})?\Z"),
)
options = st.one_of(
    st.builds(
        lambda kind, arg: f"v1:{kind}:zzzz:{arg}",
        st.sampled_from(["aw", "ar", "ak"]),
        st.sampled_from(["20310312", "20310312-20310314", "20310301", "yes", "no", "1", "x-y", "99999999"]),
    ),
    st.text(max_size=70),
)
inputs = st.one_of(
    st.builds(lambda w, d: {"text": f"{w} {d}"}, words, dates),
    dates.map(lambda d: {"text": d}),
    options.map(lambda o: {"option": o}),
    st.sampled_from(["1", "2", "3"]).map(lambda n: {"text": n}),
)


def test_whatever_a_practitioner_sends_to_the_calendar_gets_a_proper_answer(database_url: str) -> None:
    with asyncio.Runner() as runner:
        runtime = build_runtime(make_settings(database_url), clock=Clock(start=START))
        world = runner.run(build_world(runtime))
        errors = {messages.say("error", "telegram"), messages.say("error", "sms")}

        @settings(
            max_examples=100,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(channel=st.sampled_from(["telegram", "sms"]), steps=st.lists(inputs, min_size=1, max_size=4))
        def scenario(channel: str, steps: list[dict[str, Any]]) -> None:
            key = str(THERAPIST_TELEGRAM_ID) if channel == "telegram" else SMS_THERAPIST_PHONE

            async def run() -> None:
                for fields in [{"text": "AWAY"}, *steps]:
                    replies = await world.engine.handle(Inbound(channel=channel, user_key=key, **fields))  # type: ignore[arg-type]
                    _check(replies, channel, errors)

            runner.run(run())

        try:
            scenario()
        finally:
            runner.run(runtime.close())


def _check(replies: list[Reply], channel: str, errors: set[str]) -> None:
    assert replies
    for reply in replies:
        assert reply.text.strip() and reply.text not in errors
        for option in reply.options:
            assert option.value.startswith("v1:") and len(option.value.encode()) <= OPTION_VALUE_MAX_BYTES
    if channel == "sms":
        assert not contains_forbidden(render_sms(replies))


async def _race_once(
    runtime: Runtime, therapist_id: int, session_type_id: int, client_id: int, day: int
) -> None:
    starts = datetime(2031, 3, day, 10, 0, tzinfo=NAIROBI)
    block = Interval(
        datetime.combine(starts.date(), time(0), NAIROBI),
        datetime.combine(starts.date(), time(23, 59), NAIROBI),
    )

    async def request() -> None:
        try:
            await create_booking(
                runtime,
                client_id=client_id,
                therapist_id=therapist_id,
                session_type_id=session_type_id,
                starts_at=starts,
            )
        except BookingError:
            pass

    results = await asyncio.gather(request(), block_time(runtime, therapist_id, block))
    blocked = results[1]
    async with runtime.uow() as uow:
        booked = (
            await uow.session.scalars(
                select(Booking).where(Booking.therapist_id == therapist_id, Booking.starts_at == starts)
            )
        ).all()
        saved = (await uow.session.scalars(select(TimeOff).where(TimeOff.starts_at == block.start))).all()
    if booked:  # the request won: the block was not saved, and it named the booking
        assert saved == [] and blocked.saved is None
        assert [b.reference for b in blocked.clashes] == [booked[0].reference]
    else:  # the block won: the request was refused
        assert len(saved) == 1


async def test_a_request_racing_a_block_of_the_same_time_never_lands_in_it_unseen(
    pg_runtime: Runtime,
) -> None:
    pg_runtime.clock = Clock(start=START)
    world = await build_world(pg_runtime)
    client = await find_or_create_client(pg_runtime, "telegram", "9001", "Wanjiru")
    for day in (11, 12, 13, 14, 17, 18, 19, 20):  # weekdays ahead, one race each
        await _race_once(pg_runtime, world.therapist_id, world.session_type_id, client.id, day)
