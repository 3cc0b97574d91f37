"""Therapists and session types: the practice's catalogue."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.db.models import SessionType, Therapist
from core.db.uow import UnitOfWork
from core.domain.email import InvalidEmail, normalise_email
from core.domain.phone import normalise_phone
from core.domain.slots import DEFAULT_WEEKLY_HOURS, validate_weekly_hours

DEMO_SESSION_TYPES = (("Individual", 50, 2500), ("Couples", 80, 4000), ("Teen", 45, 2000))
DEMO_THERAPISTS = (
    ("Dr. Amani Wanjiku", "amani@smilingsteps.example", "0712000001"),
    ("Brian Otieno", "brian@smilingsteps.example", "0712000002"),
)


class DirectoryError(ValueError):
    """Bad or conflicting catalogue input; the message is safe to show."""


@dataclass(frozen=True)
class TherapistView:
    id: int
    name: str
    email: str
    phone: str
    telegram_user_id: int | None
    telegram_link_code: str | None
    weekly_hours: dict[str, Any]
    active: bool


def validate_email(email: str) -> str:
    """Return the normalised e-mail address (core.domain.email) or raise DirectoryError."""
    try:
        return normalise_email(email)
    except InvalidEmail:
        raise DirectoryError("that is not an e-mail address") from None


def validate_name(name: str) -> str:
    """Return a trimmed display name or raise DirectoryError."""
    name = " ".join(name.split())
    if not 2 <= len(name) <= 120:
        raise DirectoryError("a name must be 2 to 120 characters")
    return name


async def add_therapist(
    uow: UnitOfWork,
    *,
    name: str,
    email: str,
    phone: str,
    telegram_user_id: int | None = None,
    weekly_hours: dict[str, Any] | None = None,
) -> TherapistView:
    """Register a therapist; without a Telegram id a one-time link code is issued."""
    hours = weekly_hours if weekly_hours is not None else DEFAULT_WEEKLY_HOURS
    validate_weekly_hours(hours)
    therapist = Therapist(
        name=validate_name(name),
        email=validate_email(email),
        phone=normalise_phone(phone),
        telegram_user_id=telegram_user_id,
        telegram_link_code=None if telegram_user_id else new_link_code(),
        weekly_hours=dict(hours),
        active=True,
    )
    async with uow:
        uow.session.add(therapist)
        try:
            await uow.commit()
        except IntegrityError:
            raise DirectoryError("a therapist with that e-mail or Telegram user id already exists") from None
    return _view(therapist)


async def list_therapists(uow: UnitOfWork, *, active_only: bool = False) -> list[TherapistView]:
    """All therapists, ordered by name."""
    async with uow:
        query = select(Therapist).order_by(Therapist.name)
        if active_only:
            query = query.where(Therapist.active.is_(True))
        rows = (await uow.session.scalars(query)).all()
        return [_view(t) for t in rows]


async def seed_demo_data(uow: UnitOfWork, *, first_telegram_user_id: int | None = None) -> tuple[int, int]:
    """Create the demo session types and two therapists; idempotent. Returns (types, therapists) added.

    ``first_telegram_user_id`` links the first demo therapist to that Telegram user (local mode's
    ``demo``: a simulated user, so the walk-through can approve from the chat at once).
    """
    added_types = added_therapists = 0
    async with uow:
        if first_telegram_user_id is not None and await uow.session.scalar(
            select(Therapist.id).where(Therapist.telegram_user_id == first_telegram_user_id)
        ):
            first_telegram_user_id = None  # already someone's: keep the existing link
        existing_types = set((await uow.session.scalars(select(SessionType.name))).all())
        for name, minutes, price in DEMO_SESSION_TYPES:
            if name not in existing_types:
                uow.session.add(SessionType(name=name, minutes=minutes, price_kes=price, active=True))
                added_types += 1
        existing_emails = set((await uow.session.scalars(select(Therapist.email))).all())
        for position, (name, email, phone) in enumerate(DEMO_THERAPISTS):
            if email not in existing_emails:
                telegram_user_id = first_telegram_user_id if position == 0 else None
                uow.session.add(
                    Therapist(
                        name=name,
                        email=email,
                        phone=normalise_phone(phone),
                        telegram_user_id=telegram_user_id,
                        telegram_link_code=None if telegram_user_id else new_link_code(),
                        weekly_hours=dict(DEFAULT_WEEKLY_HOURS),
                        active=True,
                    )
                )
                added_therapists += 1
        await uow.commit()
    return added_types, added_therapists


async def count_therapists(uow: UnitOfWork) -> int:
    """How many therapists exist."""
    async with uow:
        return int(await uow.session.scalar(select(func.count(Therapist.id))) or 0)


def new_link_code() -> str:
    """A one-time code for the Telegram deep link ``/start <code>``."""
    return secrets.token_urlsafe(12)


def _view(t: Therapist) -> TherapistView:
    return TherapistView(
        id=t.id,
        name=t.name,
        email=t.email,
        phone=t.phone,
        telegram_user_id=t.telegram_user_id,
        telegram_link_code=t.telegram_link_code,
        weekly_hours=t.weekly_hours,
        active=t.active,
    )
