"""Therapists and session types: the practice's catalogue, and the admin site's changes to it.

Admin changes (add, deactivate/reactivate, weekly hours, a new Telegram link code) each run
in one transaction with their audit entry; bad input raises ``DirectoryError`` with a
message fit to show, before anything is written.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from core.db.models import SessionType, Therapist
from core.db.uow import UnitOfWork
from core.domain.email import InvalidEmail, normalise_email
from core.domain.phone import InvalidPhoneNumber, mask_phone, normalise_phone
from core.domain.slots import (
    DEFAULT_WEEKLY_HOURS,
    InvalidHours,
    format_weekly_hours,
    parse_weekly_hours,
    validate_weekly_hours,
)
from core.domain.text import has_control_characters
from core.services import audit

HOURS_FIELD_MAX = 400

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

    @property
    def phone_masked(self) -> str:
        """The phone as pages show it: the last four digits only."""
        return mask_phone(self.phone)

    @property
    def hours_summary(self) -> str:
        """Weekly hours in the form the hours field takes (``mon 09:00-17:00; …``)."""
        return format_weekly_hours(self.weekly_hours)


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
    if has_control_characters(name):
        raise DirectoryError("a name cannot contain control characters")
    return name


async def add_therapist(
    uow: UnitOfWork,
    *,
    name: str,
    email: str,
    phone: str,
    telegram_user_id: int | None = None,
    weekly_hours: dict[str, Any] | None = None,
    actor: str | None = None,
) -> TherapistView:
    """Register a therapist; without a Telegram id a one-time link code is issued.

    With ``actor`` (an admin) the addition is audited in the same transaction.
    """
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
        if actor:
            await audit.lock_chain(uow.session)
        uow.session.add(therapist)
        try:
            await uow.session.flush()
        except IntegrityError:
            raise DirectoryError("a therapist with that e-mail or Telegram user id already exists") from None
        if actor:
            await _audit(uow, actor, "therapist.added", therapist.id, {"hours": format_weekly_hours(hours)})
        await uow.commit()
    return _view(therapist)


def parse_hours_field(text: str) -> dict[str, list[list[str]]]:
    """A weekly-hours form field: blank means Mon–Fri 09:00–17:00; else ``mon-fri 09:00-17:00; …``
    (new lines separate like ``;``, for a textarea)."""
    if not text.strip():
        return {day: [list(r) for r in ranges] for day, ranges in DEFAULT_WEEKLY_HOURS.items()}
    if len(text) > HOURS_FIELD_MAX:
        raise InvalidHours(f"weekly hours are at most {HOURS_FIELD_MAX} characters")
    hours = parse_weekly_hours(text.replace("\r", "").replace("\n", ";"))
    validate_weekly_hours(hours)
    return hours


async def add_practitioner(
    uow: UnitOfWork, *, name: str, email: str, phone: str, hours: str, actor: str
) -> TherapistView:
    """The admin site's "add a practitioner" form: every field checked first, then one audited insert."""
    try:
        return await add_therapist(
            uow, name=name, email=email, phone=phone, weekly_hours=parse_hours_field(hours), actor=actor
        )
    except (InvalidPhoneNumber, InvalidHours) as exc:
        raise DirectoryError(str(exc)) from None


async def set_practitioner_active(
    uow: UnitOfWork, therapist_id: int, *, active: bool, actor: str
) -> TherapistView:
    """Deactivate (no longer offered to clients; booked sessions stay) or reactivate; audited."""
    async with uow:
        await audit.lock_chain(uow.session)
        changed = await uow.session.execute(
            update(Therapist)
            .where(Therapist.id == therapist_id, Therapist.active != active)
            .values(active=active)
            .execution_options(synchronize_session=False)
        )
        therapist = await _get(uow, therapist_id)
        if not changed.rowcount:  # type: ignore[attr-defined]
            state = "active" if active else "inactive"
            raise DirectoryError(f"{therapist.name} is already {state}")
        action = "therapist.reactivated" if active else "therapist.deactivated"
        await _audit(uow, actor, action, therapist_id, {})
        await uow.commit()
        return _view(therapist)


async def set_weekly_hours(uow: UnitOfWork, therapist_id: int, *, hours: str, actor: str) -> TherapistView:
    """Replace a practitioner's weekly hours (``mon-fri 09:00-17:00; sat 10:00-13:00``); audited."""
    if not hours.strip():
        raise DirectoryError("give the weekly hours, e.g. 'mon-fri 09:00-17:00; sat 10:00-13:00'")
    try:
        parsed = parse_hours_field(hours)
    except InvalidHours as exc:
        raise DirectoryError(str(exc)) from None
    async with uow:
        await audit.lock_chain(uow.session)
        therapist = await _get(uow, therapist_id)
        therapist.weekly_hours = parsed
        summary = {"hours": format_weekly_hours(parsed)}
        await _audit(uow, actor, "therapist.hours_changed", therapist_id, summary)
        await uow.commit()
        return _view(therapist)


async def regenerate_link_code(uow: UnitOfWork, therapist_id: int, *, actor: str) -> TherapistView:
    """Issue a new one-time Telegram link code (the old one stops working); audited, code not logged.

    A practitioner who is linked already may use it to move to another Telegram account.
    """
    async with uow:
        await audit.lock_chain(uow.session)
        therapist = await _get(uow, therapist_id)
        therapist.telegram_link_code = new_link_code()
        await _audit(uow, actor, "therapist.link_code_issued", therapist_id, {})
        await uow.commit()
        return _view(therapist)


async def _get(uow: UnitOfWork, therapist_id: int) -> Therapist:
    therapist = await uow.session.get(Therapist, therapist_id, populate_existing=True)
    if therapist is None:
        raise DirectoryError(f"there is no practitioner {therapist_id}")
    return therapist


async def _audit(
    uow: UnitOfWork, actor: str, action: str, therapist_id: int, details: dict[str, Any]
) -> None:
    await audit.record(
        uow.session, actor=actor, action=action, subject_type="therapist", subject_id=therapist_id,
        details=details,
    )


async def list_therapists(uow: UnitOfWork, *, active_only: bool = False) -> list[TherapistView]:
    """All therapists, ordered by name."""
    async with uow:
        query = select(Therapist).order_by(Therapist.name)
        if active_only:
            query = query.where(Therapist.active.is_(True))
        rows = (await uow.session.scalars(query)).all()
        return [_view(t) for t in rows]


async def seed_demo_data(uow: UnitOfWork, *, telegram_user_ids: Sequence[int] = ()) -> tuple[int, int]:
    """Create the demo session types and two therapists; idempotent. Returns (types, therapists) added.

    ``telegram_user_ids`` links the demo therapists, in the order the booking chat lists them (by
    name), to those Telegram users (local mode: the simulated chat's practitioner personas, so the
    walk-through can approve from the chat at once). An id already someone's keeps its owner.
    """
    added_types = added_therapists = 0
    async with uow:
        taken = set((await uow.session.scalars(select(Therapist.telegram_user_id))).all())
        existing_types = set((await uow.session.scalars(select(SessionType.name))).all())
        for name, minutes, price in DEMO_SESSION_TYPES:
            if name not in existing_types:
                uow.session.add(SessionType(name=name, minutes=minutes, price_kes=price, active=True))
                added_types += 1
        existing_emails = set((await uow.session.scalars(select(Therapist.email))).all())
        links = dict(zip(demo_therapist_names(), telegram_user_ids, strict=False))
        for name, email, phone in DEMO_THERAPISTS:
            if email not in existing_emails:
                telegram_user_id = links.get(name)
                if telegram_user_id in taken:
                    telegram_user_id = None
                uow.session.add(_demo_therapist(name, email, phone, telegram_user_id))
                added_therapists += 1
        await uow.commit()
    return added_types, added_therapists


async def seed_demo_data_if_empty(
    uow: UnitOfWork, *, telegram_user_ids: Sequence[int] = ()
) -> tuple[int, int] | None:
    """Seed as :func:`seed_demo_data` when there is no therapist and no session type yet; else None."""
    async with uow:
        has_therapist = await uow.session.scalar(select(Therapist.id).limit(1))
        has_type = await uow.session.scalar(select(SessionType.id).limit(1))
    if has_therapist is not None or has_type is not None:
        return None
    return await seed_demo_data(uow, telegram_user_ids=telegram_user_ids)


def demo_therapist_names() -> list[str]:
    """The demo therapists in the order the booking chat lists them (by name)."""
    return sorted(name for name, _email, _phone in DEMO_THERAPISTS)


def _demo_therapist(name: str, email: str, phone: str, telegram_user_id: int | None) -> Therapist:
    return Therapist(
        name=name,
        email=email,
        phone=normalise_phone(phone),
        telegram_user_id=telegram_user_id,
        telegram_link_code=None if telegram_user_id else new_link_code(),
        weekly_hours=dict(DEFAULT_WEEKLY_HOURS),
        active=True,
    )


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
