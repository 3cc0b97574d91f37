"""Async factories for database rows, shared by integration tests.

Every function takes an ``AsyncSession``, adds the row, flushes (so ``id`` is set) and
returns the ORM object; nothing is committed. Unique columns get fresh random values,
and any column can be overridden by keyword::

    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, status=BookingStatus.APPROVED)
        attempt = await make_attempt(uow.session, booking, status=PaymentStatus.AWAITING_CUSTOMER)
        await uow.commit()

``make_booking`` creates the therapist, client and session type it needs unless they
are passed in; ``make_attempt`` takes the booking's client and price.

``create_pg_database``/``drop_pg_database`` make an empty, un-migrated PostgreSQL
database for tests that need one (migrations, CLI, ``serve`` start-up checks).
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import normalise_database_url
from core.db.engine import create_engine
from core.db.models import Booking, Client, PaymentAttempt, SessionType, Therapist
from core.db.types import utcnow
from core.domain.slots import DEFAULT_WEEKLY_HOURS
from core.domain.states import BookingStatus, PaymentStatus

_numbers = itertools.count(1)


def _unique() -> int:
    """A number not used before in this process (for phones, names, ...)."""
    return next(_numbers)


def next_slot(days: int = 2, hour_utc: int = 7) -> datetime:
    """An aware UTC start time ``days`` ahead at ``hour_utc``:00 (07:00 UTC = 10:00 Nairobi)."""
    day = utcnow() + timedelta(days=days)
    return day.replace(hour=hour_utc, minute=0, second=0, microsecond=0)


async def _add(session: AsyncSession, row: Any) -> Any:
    session.add(row)
    await session.flush()
    return row


async def make_therapist(session: AsyncSession, **overrides: Any) -> Therapist:
    n = _unique()
    values: dict[str, Any] = {
        "name": f"Therapist {n}",
        "email": f"therapist{n}-{secrets.token_hex(3)}@example.org",
        "phone": f"254712{n % 1_000_000:06d}",
        "telegram_user_id": None,
        "telegram_link_code": secrets.token_urlsafe(12),
        "weekly_hours": {day: [list(r) for r in ranges] for day, ranges in DEFAULT_WEEKLY_HOURS.items()},
        "active": True,
    }
    values.update(overrides)
    return await _add(session, Therapist(**values))


async def make_client(session: AsyncSession, **overrides: Any) -> Client:
    n = _unique()
    values: dict[str, Any] = {
        "telegram_user_id": None,
        "phone": f"254722{n % 1_000_000:06d}",
        "email": None,
        "name": f"Client {n}",
    }
    values.update(overrides)
    return await _add(session, Client(**values))


async def make_session_type(session: AsyncSession, **overrides: Any) -> SessionType:
    n = _unique()
    values: dict[str, Any] = {
        "name": f"Session type {n}-{secrets.token_hex(3)}",
        "minutes": 50,
        "price_kes": 2500,
        "active": True,
    }
    values.update(overrides)
    return await _add(session, SessionType(**values))


async def make_booking(
    session: AsyncSession,
    *,
    status: BookingStatus | str = BookingStatus.APPROVED,
    starts_at: datetime | None = None,
    therapist: Therapist | None = None,
    client: Client | None = None,
    session_type: SessionType | None = None,
    **overrides: Any,
) -> Booking:
    therapist = therapist or await make_therapist(session)
    client = client or await make_client(session)
    session_type = session_type or await make_session_type(session)
    starts_at = starts_at or next_slot()
    values: dict[str, Any] = {
        "reference": "SS" + secrets.token_hex(5).upper()[:10],
        "client_id": client.id,
        "therapist_id": therapist.id,
        "session_type_id": session_type.id,
        "starts_at": starts_at,
        "ends_at": starts_at + timedelta(minutes=session_type.minutes),
        "price_kes": session_type.price_kes,
        "status": str(BookingStatus(status)),
        "channel": "telegram",
        "email": None,
        "approval_code": secrets.token_hex(4).upper(),
    }
    values.update(overrides)
    return await _add(session, Booking(**values))


async def make_attempt(
    session: AsyncSession,
    booking: Booking,
    *,
    status: PaymentStatus | str = PaymentStatus.AWAITING_CUSTOMER,
    **overrides: Any,
) -> PaymentAttempt:
    values: dict[str, Any] = {
        "booking_id": booking.id,
        "client_id": booking.client_id,
        "idempotency_key": secrets.token_hex(16),
        "status": str(PaymentStatus(status)),
        "amount_kes": booking.price_kes,
        "phone": "254708374149",
        "environment": "simulator",
        "callback_secret_hash": hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        "checkout_request_id": f"ws_CO_{secrets.token_hex(10)}",
        "merchant_request_id": f"{_unique()}-{secrets.randbelow(10**8)}-1",
        "deadline_at": utcnow() + timedelta(seconds=120),
        "query_count": 0,
    }
    values.update(overrides)
    return await _add(session, PaymentAttempt(**values))


# -- databases -------------------------------------------------------------------------------


async def _pg_admin(server_url: str, sql: str) -> None:
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def create_pg_database(server_url: str) -> str:
    """Create an empty database on the server of ``server_url``; return its asyncpg URL."""
    base = make_url(normalise_database_url(server_url))
    name = f"ss_test_{secrets.token_hex(5)}"
    await _pg_admin(base.render_as_string(hide_password=False), f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(url: str) -> None:
    """Drop a database made by ``create_pg_database`` (connections are closed by force)."""
    target = make_url(url)
    admin = target.set(database="postgres").render_as_string(hide_password=False)
    await _pg_admin(admin, f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
