"""One SMS client per phone number: the partial unique index, the race it settles in
find_or_create_client, and migration 0002 on databases that already hold clients."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.engine import create_engine, session_factory
from core.db.migrate import current_revision, head_revision, upgrade
from core.db.models import Booking, Client, SessionType, Therapist
from core.domain.slots import DEFAULT_WEEKLY_HOURS
from core.domain.states import BookingStatus
from core.runtime import Runtime, build_runtime
from core.services.booking.lifecycle import find_or_create_client
from tests.conftest import make_settings
from tests.factories import create_pg_database, drop_pg_database, make_client, next_slot
from tests.integration.test_cli import SANDBOX, assert_one_line_failure, run
from tests.integration.test_migrations import schema_differences

PG_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)] if PG_URL else ["sqlite"]
NEW_NUMBER = "254711082355"


@pytest.fixture(params=BACKENDS)
async def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a database that has never been migrated."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        url = await create_pg_database(PG_URL or "")
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        if request.param != "sqlite":
            await drop_pg_database(url)


async def _sms_clients(runtime: Runtime, phone: str) -> list[Client]:
    async with runtime.uow() as uow:
        query = select(Client).where(Client.phone == phone, Client.telegram_user_id.is_(None))
        return list((await uow.session.scalars(query)).all())


# -- the race --------------------------------------------------------------------------------------


async def test_many_first_messages_from_a_new_number_at_once_make_one_client(runtime: Runtime, database_url):
    # two instances of the service (two runtimes, two connection pools) on one database
    other = build_runtime(make_settings(database_url))
    try:
        calls = [
            find_or_create_client(rt, "sms", "0711 082 355", display_name=f"Caller {i}")
            for i in range(8)
            for rt in (runtime, other)
        ]
        refs = await asyncio.gather(*calls)
    finally:
        await other.close()
    assert len({ref.id for ref in refs}) == 1
    assert [c.id for c in await _sms_clients(runtime, NEW_NUMBER)] == [refs[0].id]


async def test_the_database_refuses_a_second_sms_client_for_a_number(runtime: Runtime):
    async with runtime.uow() as uow:
        await make_client(uow.session, phone=NEW_NUMBER, telegram_user_id=None)
        await uow.commit()
    with pytest.raises(IntegrityError):
        async with runtime.uow() as uow:
            await make_client(uow.session, phone=NEW_NUMBER, telegram_user_id=None)
            await uow.commit()


async def test_telegram_clients_and_forgotten_clients_may_share_a_number(runtime: Runtime):
    async with runtime.uow() as uow:
        await make_client(uow.session, phone=NEW_NUMBER, telegram_user_id=None)
        await make_client(uow.session, phone=NEW_NUMBER, telegram_user_id=7001)
        await make_client(uow.session, phone=NEW_NUMBER, telegram_user_id=7002)
        await make_client(uow.session, phone=None, telegram_user_id=None, anonymised=True)
        await make_client(uow.session, phone=None, telegram_user_id=None, anonymised=True)
        await uow.commit()
        total = await uow.session.scalar(select(func.count()).select_from(Client))
    assert total == 5
    # the SMS lookup still finds the one SMS client, not a Telegram account with that number
    ref = await find_or_create_client(runtime, "sms", NEW_NUMBER)
    assert ref.telegram_user_id is None and ref.phone == NEW_NUMBER


async def test_the_sms_phone_index_is_a_partial_unique_index(runtime: Runtime):
    async with runtime.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = await conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        else:
            rows = await conn.execute(text("SELECT indexname, indexdef FROM pg_indexes"))
        definition = {name: sql for name, sql in rows}["uq_clients_sms_phone"].upper()
    assert "UNIQUE" in definition and "WHERE" in definition and "TELEGRAM_USER_ID IS NULL" in definition


# -- migration 0002 on a database with data ---------------------------------------------------------------


async def _add_clients_at_0001(engine: AsyncEngine, *specs: tuple[str | None, int | None]) -> list[int]:
    """Clients (phone, telegram id), and a booking of the first, written while the database is at
    revision 0001: plain INSERTs naming only columns 0001 has (the ORM would also write the
    columns later revisions add, e.g. 0009's ``language``)."""
    async with session_factory(engine)() as session:
        ids = [
            await session.scalar(
                insert(Client)
                .values(phone=p, telegram_user_id=t, name=f"Client {i}", telegram_unreachable=False,
                        anonymised=False)
                .returning(Client.id)
            )
            for i, (p, t) in enumerate(specs)
        ]
        therapist_id = await session.scalar(
            insert(Therapist)
            .values(name="Dr. Amani", email="amani@example.org", phone="254712000111",
                    telegram_unreachable=False, weekly_hours=DEFAULT_WEEKLY_HOURS, active=True)
            .returning(Therapist.id)
        )
        type_id = await session.scalar(
            insert(SessionType).values(name="Individual", minutes=50, price_kes=2500, active=True)
            .returning(SessionType.id)
        )
        starts_at = next_slot()
        await session.execute(
            insert(Booking).values(
                reference="SS0001AAAA", client_id=ids[0], therapist_id=therapist_id, session_type_id=type_id,
                starts_at=starts_at, ends_at=starts_at + timedelta(minutes=50), price_kes=2500,
                status=str(BookingStatus.APPROVED), channel="telegram", email=None, approval_code="AB12CD34",
            )
        )
        await session.commit()
        return [int(i) for i in ids if i is not None]


async def test_the_upgrade_keeps_the_clients_and_their_bookings_and_adds_the_index(empty_engine):
    await upgrade(empty_engine, "0001")
    ids = await _add_clients_at_0001(
        empty_engine,
        (NEW_NUMBER, None),
        (NEW_NUMBER, 8001),  # a Telegram client with the same number is no duplicate
        ("254711082356", None),
        (None, None),
        (None, None),
    )
    await upgrade(empty_engine)
    assert await current_revision(empty_engine) == head_revision()
    assert await schema_differences(empty_engine) == []
    async with session_factory(empty_engine)() as session:
        assert sorted((await session.scalars(select(Client.id))).all()) == sorted(ids)
        assert (await session.scalars(select(Booking.client_id))).all() == [ids[0]]
        session.add(Client(phone=NEW_NUMBER))
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_the_upgrade_refuses_duplicate_sms_clients_names_their_ids_and_changes_nothing(empty_engine):
    await upgrade(empty_engine, "0001")
    ids = await _add_clients_at_0001(
        empty_engine,
        (NEW_NUMBER, None),
        ("254711082356", None),
        (NEW_NUMBER, None),
        ("254711082356", None),
        ("254711082357", None),
    )
    with pytest.raises(SQLAlchemyError) as refused:
        await upgrade(empty_engine)
    message = str(refused.value)
    assert "SMS clients share a phone number" in message and "\n" not in message
    named = message.split("Client ids by number: ")[1]
    assert sorted(named.split("; ")) == sorted([f"{ids[0]}, {ids[2]}", f"{ids[1]}, {ids[3]}"])
    assert "254711" not in message and "0711" not in message  # ids only, never numbers
    assert await current_revision(empty_engine) == "0001"
    async with session_factory(empty_engine)() as session:
        assert len((await session.scalars(select(Client.id))).all()) == 5
        # the admin forgets the unused duplicates; then the upgrade goes through
        await session.execute(update(Client).where(Client.id.in_((ids[2], ids[3]))).values(phone=None))
        await session.commit()
    await upgrade(empty_engine)
    assert await current_revision(empty_engine) == head_revision()


def test_db_upgrade_on_the_command_line_refuses_duplicates_in_one_line(tmp_path: Path):
    database = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{database}"

    async def _old_database_with_duplicates() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine, "0001")
            await _add_clients_at_0001(engine, (NEW_NUMBER, None), (NEW_NUMBER, None))
        finally:
            await engine.dispose()

    asyncio.run(_old_database_with_duplicates())
    line = assert_one_line_failure(run(tmp_path, "db", "upgrade", DATABASE_URL=url, **SANDBOX), 1)
    assert "SMS clients share a phone number" in line and line.endswith("Client ids by number: 1, 2")
