"""Admin accounts: Argon2id password hashes."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.db.models import AdminUser
from core.db.uow import UnitOfWork

_hasher = PasswordHasher()  # argon2-cffi defaults to Argon2id
_USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{3,60}$")
MIN_PASSWORD_LENGTH = 10


class AdminError(ValueError):
    """Bad admin input; the message is safe to show."""


async def create_admin(uow: UnitOfWork, *, username: str, password: str) -> int:
    """Create an admin user; returns its id."""
    if not _USERNAME.match(username):
        raise AdminError("username must be 3-60 characters of letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    admin = AdminUser(username=username, password_hash=_hasher.hash(password))
    async with uow:
        uow.session.add(admin)
        try:
            await uow.commit()
        except IntegrityError:
            raise AdminError(f"admin '{username}' already exists") from None
    return admin.id


async def verify_admin_password(uow: UnitOfWork, *, username: str, password: str) -> int | None:
    """Return the admin id when the password matches, else None."""
    async with uow:
        admin = await uow.session.scalar(select(AdminUser).where(AdminUser.username == username))
    if admin is None:
        _hasher.hash(password)  # spend the same time as a real check
        return None
    try:
        _hasher.verify(admin.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return admin.id
