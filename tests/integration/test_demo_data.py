"""Demo data for local mode: session types and practitioners, each reachable in the simulated chat."""

from __future__ import annotations

from sqlalchemy import select

from core.db.models import SessionType, Therapist
from core.runtime import Runtime
from core.services.booking.directory import demo_therapist_names, seed_demo_data, seed_demo_data_if_empty
from simulators.telegram_chat import PRESETS
from smiling_steps.local_mode import DEMO_PRACTITIONER_TELEGRAM_IDS, seed_if_empty
from tests.factories import make_session_type, make_therapist

IDS = (2001, 2002)


async def _links(runtime: Runtime) -> dict[str, int | None]:
    async with runtime.uow() as uow:
        return {t.name: t.telegram_user_id for t in (await uow.session.scalars(select(Therapist))).all()}


async def test_every_demo_practitioner_is_linked_in_the_order_the_booking_chat_lists_them(runtime: Runtime):
    assert await seed_demo_data(runtime.uow(), telegram_user_ids=IDS) == (3, 2)
    assert demo_therapist_names() == ["Brian Otieno", "Dr. Amani Wanjiku"]  # the chat lists by name
    assert await _links(runtime) == {"Brian Otieno": 2001, "Dr. Amani Wanjiku": 2002}


def test_the_linked_ids_are_the_practitioner_personas_of_the_chat_page_in_its_order():
    preset_ids = [user_id for user_id, _name, _phone in PRESETS]
    personas = [i for i in preset_ids if i in DEMO_PRACTITIONER_TELEGRAM_IDS]
    assert personas == list(DEMO_PRACTITIONER_TELEGRAM_IDS)


async def test_seeding_twice_adds_nothing_and_keeps_the_links(runtime: Runtime) -> None:
    await seed_demo_data(runtime.uow(), telegram_user_ids=IDS)
    assert await seed_demo_data(runtime.uow(), telegram_user_ids=IDS) == (0, 0)
    assert sorted(v for v in (await _links(runtime)).values() if v) == [2001, 2002]
    async with runtime.uow() as uow:
        assert len((await uow.session.scalars(select(SessionType))).all()) == 3


async def test_a_telegram_id_already_in_use_is_left_with_its_owner(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        await make_therapist(uow.session, name="Owner", telegram_user_id=2001)
        await uow.commit()
    assert await seed_demo_data(runtime.uow(), telegram_user_ids=IDS) == (3, 2)
    assert await _links(runtime) == {"Owner": 2001, "Brian Otieno": None, "Dr. Amani Wanjiku": 2002}


async def test_without_telegram_ids_every_demo_practitioner_gets_a_link_code(runtime: Runtime) -> None:
    await seed_demo_data(runtime.uow())
    async with runtime.uow() as uow:
        rows = (await uow.session.scalars(select(Therapist))).all()
    assert all(t.telegram_user_id is None and t.telegram_link_code for t in rows)


async def test_an_empty_database_is_seeded_at_start_and_says_who_is_who(runtime: Runtime) -> None:
    seeded = await seed_if_empty(runtime)
    assert seeded is not None and (seeded.session_types, seeded.practitioners) == (3, 2)
    assert seeded.chat_users == (("Brian Otieno", 2001), ("Dr. Amani Wanjiku", 2002))
    assert await seed_if_empty(runtime) is None  # the second start adds nothing


async def test_a_database_with_a_session_type_of_its_own_is_not_seeded(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        await make_session_type(uow.session, name="Family")
        await uow.commit()
    assert await seed_demo_data_if_empty(runtime.uow(), telegram_user_ids=IDS) is None
    assert await _links(runtime) == {}
