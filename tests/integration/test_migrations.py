"""Alembic migrations: from empty to head on SQLite and PostgreSQL, no drift from the models,
SQLite connection settings, and the partial unique indexes that guard slots and payments."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.engine import create_engine
from core.db.migrate import alembic_config, current_revision, head_revision, is_up_to_date, upgrade
from core.db.models import Base, Booking, PaymentAttempt
from core.domain.states import LIVE_BOOKING_STATUSES, LIVE_PAYMENT_STATUSES, BookingStatus, PaymentStatus
from core.runtime import Runtime
from tests.factories import (
    create_pg_database,
    drop_pg_database,
    make_attempt,
    make_booking,
    make_client,
    make_session_type,
    make_therapist,
    next_slot,
)

PG_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)] if PG_URL else ["sqlite"]

NOT_LIVE_BOOKING = sorted(set(BookingStatus) - LIVE_BOOKING_STATUSES)
NOT_LIVE_PAYMENT = sorted(set(PaymentStatus) - LIVE_PAYMENT_STATUSES)


@pytest.fixture(params=BACKENDS)
async def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a database that has never been migrated (a new file / a new PG database)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    else:
        url = await create_pg_database(PG_URL or "")
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        if request.param != "sqlite":
            await drop_pg_database(url)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def schema_differences(engine: AsyncEngine) -> list:
    def _compare(sync_conn) -> list:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        return await conn.run_sync(_compare)


# -- upgrade ------------------------------------------------------------------------------------


async def test_an_empty_database_is_not_up_to_date_until_upgraded(empty_engine):
    assert await current_revision(empty_engine) is None
    assert await is_up_to_date(empty_engine) is False
    await upgrade(empty_engine)
    assert await current_revision(empty_engine) == head_revision()
    assert await is_up_to_date(empty_engine) is True


async def test_upgrade_creates_every_table_of_the_models(empty_engine):
    await upgrade(empty_engine)
    assert set(Base.metadata.tables) <= await table_names(empty_engine)


async def test_migrations_match_the_models_exactly(empty_engine):
    await upgrade(empty_engine)
    assert await schema_differences(empty_engine) == []


async def test_drift_check_would_notice_a_missing_migration(empty_engine):
    # the comparison is not vacuous: an empty database differs from the models
    differences = await schema_differences(empty_engine)
    added = {diff[1].name for diff in differences if diff[0] == "add_table"}
    assert set(Base.metadata.tables) <= added


async def test_upgrading_twice_is_harmless(empty_engine):
    await upgrade(empty_engine)
    await upgrade(empty_engine)
    assert await is_up_to_date(empty_engine)


async def test_downgrade_to_base_and_upgrade_again(empty_engine):
    await upgrade(empty_engine)

    def _downgrade(sync_conn) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_conn
        command.downgrade(config, "base")

    async with empty_engine.begin() as conn:
        await conn.run_sync(_downgrade)
    assert await current_revision(empty_engine) is None
    assert not (set(Base.metadata.tables) & await table_names(empty_engine))
    await upgrade(empty_engine)
    assert await schema_differences(empty_engine) == []


# -- SQLite connection settings ----------------------------------------------------------------


async def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pragmas.db'}")
    try:
        # two connections open at once: every new connection gets the settings, not only the first
        # (one transaction at a time: transactions begin IMMEDIATE, i.e. with the write lock)
        async with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
                assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() > 0
                await conn.commit()
    finally:
        await engine.dispose()


async def test_foreign_keys_are_enforced(runtime: Runtime):
    async with runtime.uow() as uow:
        therapist = await make_therapist(uow.session)
        client = await make_client(uow.session)
        session_type = await make_session_type(uow.session)
        await uow.commit()
    with pytest.raises(IntegrityError):
        async with runtime.uow() as uow:
            booking = await make_booking(
                uow.session, therapist=therapist, client=client, session_type=session_type
            )
            await make_attempt(uow.session, booking, client_id=client.id + 999)


# -- partial unique indexes ------------------------------------------------------------------------


async def _booking_pair(runtime: Runtime, first_status: BookingStatus, second_status: BookingStatus) -> None:
    """Two bookings for the same therapist and start time, committed one after the other."""
    starts_at = next_slot(days=3)
    async with runtime.uow() as uow:
        therapist = await make_therapist(uow.session)
        await make_booking(uow.session, therapist=therapist, starts_at=starts_at, status=first_status)
        await uow.commit()
    async with runtime.uow() as uow:
        await make_booking(uow.session, therapist=therapist, starts_at=starts_at, status=second_status)
        await uow.commit()


@pytest.mark.parametrize("first", sorted(LIVE_BOOKING_STATUSES))
@pytest.mark.parametrize("second", sorted(LIVE_BOOKING_STATUSES))
async def test_two_live_bookings_cannot_take_the_same_slot(runtime: Runtime, first, second):
    with pytest.raises(IntegrityError):
        await _booking_pair(runtime, first, second)


@pytest.mark.parametrize("finished", NOT_LIVE_BOOKING)
async def test_a_finished_booking_does_not_block_its_slot(runtime: Runtime, finished):
    await _booking_pair(runtime, finished, BookingStatus.PENDING_APPROVAL)
    async with runtime.uow() as uow:
        statuses = sorted((await uow.session.scalars(select(Booking.status))).all())
    assert statuses == sorted([finished.value, "PENDING_APPROVAL"])


async def test_a_cancelled_slot_can_be_cancelled_and_rebooked_again(runtime: Runtime):
    starts_at = next_slot(days=4)
    async with runtime.uow() as uow:
        therapist = await make_therapist(uow.session)
        for _ in range(3):
            await make_booking(uow.session, therapist=therapist, starts_at=starts_at, status="CANCELLED")
        await make_booking(uow.session, therapist=therapist, starts_at=starts_at, status="APPROVED")
        await uow.commit()


async def test_different_therapists_may_start_at_the_same_time(runtime: Runtime):
    starts_at = next_slot(days=5)
    async with runtime.uow() as uow:
        await make_booking(uow.session, starts_at=starts_at, status="CONFIRMED")
        await make_booking(uow.session, starts_at=starts_at, status="CONFIRMED")
        await uow.commit()


async def _attempt_pair(runtime: Runtime, first: PaymentStatus, second: PaymentStatus) -> None:
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session)
        await make_attempt(uow.session, booking, status=first)
        await uow.commit()
    async with runtime.uow() as uow:
        await make_attempt(uow.session, booking, status=second)
        await uow.commit()


@pytest.mark.parametrize("first", sorted(LIVE_PAYMENT_STATUSES))
@pytest.mark.parametrize("second", sorted(LIVE_PAYMENT_STATUSES))
async def test_a_booking_cannot_have_two_live_payment_attempts(runtime: Runtime, first, second):
    with pytest.raises(IntegrityError):
        await _attempt_pair(runtime, first, second)


@pytest.mark.parametrize("finished", NOT_LIVE_PAYMENT)
async def test_a_finished_attempt_does_not_block_a_retry(runtime: Runtime, finished):
    await _attempt_pair(runtime, finished, PaymentStatus.QUEUED)
    async with runtime.uow() as uow:
        statuses = sorted((await uow.session.scalars(select(PaymentAttempt.status))).all())
    assert statuses == sorted([finished.value, "QUEUED"])


async def test_the_partial_indexes_exist_as_partial_indexes(runtime: Runtime):
    async with runtime.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = await conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        else:
            rows = await conn.execute(text("SELECT indexname, indexdef FROM pg_indexes"))
        definitions = {name: sql for name, sql in rows}
    for name in ("uq_bookings_live_slot", "uq_payment_attempts_one_live_per_booking"):
        assert "UNIQUE" in definitions[name].upper() and "WHERE" in definitions[name].upper()


def test_concurrent_upgrades_of_one_sqlite_file_leave_it_at_head(tmp_path):
    # two processes starting at once (e.g. `serve` twice) must not corrupt the schema
    url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"

    async def _both() -> bool:
        engines = [create_engine(url), create_engine(url)]
        try:
            results = await asyncio.gather(*(upgrade(e) for e in engines), return_exceptions=True)
            assert not [r for r in results if isinstance(r, BaseException)], results
            return await is_up_to_date(engines[0])
        finally:
            for engine in engines:
                await engine.dispose()

    assert asyncio.run(_both())
