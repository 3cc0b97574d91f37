"""Admin accounts: Argon2id password hashes, login with throttling, logout, password re-checks.

Hash checks run in a worker thread (Argon2id costs tens of milliseconds of CPU: the event
loop keeps serving meanwhile). Failed logins are stored (``admin_login_failures``) so the
lock of core/domain/throttle.py holds across processes; each failure, lock, login and
logout is in the audit trail.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.db.models import AdminLoginFailure, AdminUser
from core.db.uow import UnitOfWork
from core.domain.throttle import LOOKBACK, locked_until
from core.runtime import Runtime
from core.services import audit

_hasher = PasswordHasher()  # argon2-cffi defaults to Argon2id
_USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{3,60}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # longer input is refused before hashing (no CPU spent on it)
FIRST_ADMIN_USERNAME = "admin"
# A valid hash of a random password: unknown users cost the same verify time as known ones.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AdminError(ValueError):
    """Bad admin input; the message is safe to show."""


@dataclass(frozen=True)
class LoginOutcome:
    """The result of one login attempt: an admin id, or nothing (and maybe a lock's end)."""

    admin_id: int | None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.admin_id is not None


@dataclass(frozen=True)
class AdminIdentity:
    """The admin behind a session."""

    id: int
    username: str


async def create_admin(uow: UnitOfWork, *, username: str, password: str) -> int:
    """Create an admin user; returns its id."""
    if not _USERNAME.match(username):
        raise AdminError("username must be 3-60 characters of letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AdminError(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    admin = AdminUser(username=username, password_hash=password_hash)
    async with uow:
        uow.session.add(admin)
        try:
            await uow.commit()
        except IntegrityError:
            raise AdminError(f"admin '{username}' already exists") from None
    return admin.id


async def ensure_first_admin(runtime: Runtime) -> str | None:
    """Local mode: with no admin yet, create ``admin`` with a random password and return it once."""
    async with runtime.uow() as uow:
        existing = await uow.session.scalar(select(AdminUser.id).limit(1))
    if existing is not None:
        return None
    password = secrets.token_urlsafe(12)
    try:
        await create_admin(runtime.uow(), username=FIRST_ADMIN_USERNAME, password=password)
    except AdminError:  # another process made it first
        return None
    return password


async def verify_admin_password(uow: UnitOfWork, *, username: str, password: str) -> int | None:
    """Return the admin id when the password matches, else None (no throttling: see ``login``)."""
    async with uow:
        admin = await uow.session.scalar(select(AdminUser).where(AdminUser.username == username))
    matches = await _check(admin.password_hash if admin else None, password)
    return admin.id if admin is not None and matches else None


async def confirm_password(runtime: Runtime, *, admin_id: int, password: str) -> bool:
    """Re-check a signed-in admin's password before a sensitive change (Property 80)."""
    async with runtime.uow() as uow:
        stored = await uow.session.scalar(select(AdminUser.password_hash).where(AdminUser.id == admin_id))
    return await _check(stored, password)


async def login(runtime: Runtime, *, username: str, password: str, ip: str) -> LoginOutcome:
    """Check a login with throttling: 5 failures per account or per address in 15 min lock 15 min."""
    now = runtime.clock()
    key, ip = account_key(username), ip[:45]
    async with runtime.uow() as uow:
        until = await _lock_in_force(uow, key, ip, now)
        if until is not None:
            return LoginOutcome(None, until)
        admin = await uow.session.scalar(select(AdminUser).where(AdminUser.username == username))
    matches = await _check(admin.password_hash if admin else None, password)
    async with runtime.uow() as uow:
        if admin is not None and matches:
            await _record_success(uow, admin.id, key, ip, now)
            await uow.commit()
            return LoginOutcome(admin.id)
        until = await _record_failure(uow, admin.id if admin else None, key, ip, now)
        await uow.commit()
    return LoginOutcome(None, until)


async def session_admin(runtime: Runtime, *, admin_id: int, issued_at: datetime) -> AdminIdentity | None:
    """The admin of a session issued at ``issued_at``, or None if gone or logged out since."""
    async with runtime.uow() as uow:
        row = (
            await uow.session.execute(
                select(AdminUser.id, AdminUser.username, AdminUser.sessions_revoked_at).where(
                    AdminUser.id == admin_id
                )
            )
        ).first()
    if row is None or (row.sessions_revoked_at is not None and issued_at <= row.sessions_revoked_at):
        return None
    return AdminIdentity(row.id, row.username)


async def logout(runtime: Runtime, *, admin_id: int) -> None:
    """End every session of the admin issued until now, and audit it."""
    now = runtime.clock()
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(AdminUser).where(AdminUser.id == admin_id).values(sessions_revoked_at=now)
        )
        await audit.record(uow.session, actor=f"admin:{admin_id}", action="admin.logout",
                           subject_type="admin", subject_id=admin_id, at=now)
        await uow.commit()


def account_key(username: str) -> str:
    """What the throttle stores for a username: SHA-256 of it, lower-cased."""
    return hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()


async def _check(stored_hash: str | None, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    return await asyncio.to_thread(_verify, stored_hash, password)


def _verify(stored_hash: str | None, password: str) -> bool:
    try:
        _hasher.verify(stored_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return stored_hash is not None


async def _failures(
    uow: UnitOfWork, key: str, ip: str, now: datetime
) -> tuple[list[datetime], list[datetime]]:
    rows = await uow.session.execute(
        select(AdminLoginFailure.at, AdminLoginFailure.account_key, AdminLoginFailure.ip).where(
            AdminLoginFailure.at >= now - LOOKBACK,
            or_(AdminLoginFailure.account_key == key, AdminLoginFailure.ip == ip),
        )
    )
    by_account, by_ip = [], []
    for at, row_key, row_ip in rows:
        if row_key == key:
            by_account.append(at)
        if row_ip == ip:
            by_ip.append(at)
    return by_account, by_ip


async def _lock_in_force(uow: UnitOfWork, key: str, ip: str, now: datetime) -> datetime | None:
    by_account, by_ip = await _failures(uow, key, ip, now)
    ends = [t for t in (locked_until(by_account, now), locked_until(by_ip, now)) if t is not None]
    return max(ends) if ends else None


async def _record_success(uow: UnitOfWork, admin_id: int, key: str, ip: str, now: datetime) -> None:
    await uow.session.execute(delete(AdminLoginFailure).where(AdminLoginFailure.account_key == key))
    await uow.session.execute(update(AdminUser).where(AdminUser.id == admin_id).values(last_login_at=now))
    await audit.record(uow.session, actor=f"admin:{admin_id}", action="admin.login",
                       subject_type="admin", subject_id=admin_id, details={"ip": ip}, at=now)


async def _record_failure(
    uow: UnitOfWork, admin_id: int | None, key: str, ip: str, now: datetime
) -> datetime | None:
    """Store the failure, forget old ones, audit; returns the end of a lock this failure started."""
    # The audit gets no username: what was typed may be a password in the wrong field.
    uow.session.add(AdminLoginFailure(at=now, account_key=key, ip=ip))
    await uow.session.execute(delete(AdminLoginFailure).where(AdminLoginFailure.at < now - LOOKBACK))
    await uow.session.flush()
    subject_type = "admin" if admin_id is not None else None
    await audit.record(uow.session, actor="system", action="admin.login_failed",
                       subject_type=subject_type, subject_id=admin_id,
                       details={"ip": ip, "known_account": admin_id is not None}, at=now)
    by_account, by_ip = await _failures(uow, key, ip, now)
    until = None
    for scope, times in (("account", by_account), ("ip", by_ip)):
        scope_until = locked_until(times, now)
        if scope_until is not None:
            until = max(until or scope_until, scope_until)
            await audit.record(uow.session, actor="system", action="admin.login_locked",
                               subject_type=subject_type, subject_id=admin_id,
                               details={"scope": scope, "ip": ip, "until": scope_until}, at=now)
    return until
