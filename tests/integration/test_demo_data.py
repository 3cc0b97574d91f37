"""Demo data for local mode: session types and practitioners, the first reachable in the simulated chat."""

from __future__ import annotations

from sqlalchemy import select

from core.db.models import SessionType, Therapist
from core.runtime import Runtime
from core.services.booking.directory import seed_demo_data
from tests.factories import make_therapist


async def _therapists(runtime: Runtime) -> list[Therapist]:
    async with runtime.uow() as uow:
        return list((await uow.session.scalars(select(Therapist).order_by(Therapist.id))).all())


async def test_demo_links_the_first_practitioner_to_the_simulated_telegram_user(runtime: Runtime) -> None:
    assert await seed_demo_data(runtime.uow(), first_telegram_user_id=2001) == (3, 2)
    first, second = await _therapists(runtime)
    assert (first.telegram_user_id, first.telegram_link_code) == (2001, None)
    assert second.telegram_user_id is None and second.telegram_link_code  # links later with /start <code>


async def test_seeding_twice_adds_nothing_and_keeps_the_link(runtime: Runtime) -> None:
    await seed_demo_data(runtime.uow(), first_telegram_user_id=2001)
    assert await seed_demo_data(runtime.uow(), first_telegram_user_id=2001) == (0, 0)
    assert [t.telegram_user_id for t in await _therapists(runtime)] == [2001, None]
    async with runtime.uow() as uow:
        assert len((await uow.session.scalars(select(SessionType))).all()) == 3


async def test_a_telegram_id_already_in_use_is_left_with_its_owner(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        owner = await make_therapist(uow.session, telegram_user_id=2001)
        await uow.commit()
    assert await seed_demo_data(runtime.uow(), first_telegram_user_id=2001) == (3, 2)
    linked = [t.id for t in await _therapists(runtime) if t.telegram_user_id == 2001]
    assert linked == [owner.id]


async def test_without_a_telegram_id_every_demo_practitioner_gets_a_link_code(runtime: Runtime) -> None:
    await seed_demo_data(runtime.uow())
    assert all(t.telegram_user_id is None and t.telegram_link_code for t in await _therapists(runtime))
