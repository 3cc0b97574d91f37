"""Changing the M-Pesa mode and credentials (Properties 45, 80): validated, re-authenticated with
the admin's password, refused as a whole when anything is wrong, stored encrypted and audited
(which fields changed, never their values)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.db.models import AuditEntry
from core.domain.throttle import LOOKBACK, locked_until
from core.runtime import Runtime
from core.services import audit
from core.services.ops import admins
from core.services.settings.mpesa import (
    ENVIRONMENT_KEY,
    ENVIRONMENTS,
    FIELD_LABELS,
    FIELDS,
    SECRET_FIELDS,
    MpesaSettings,
    forget_saved,
    resolve_config,
    setting_key,
    simulator_available,
)
from core.services.settings.store import read_settings, write_settings

REFUSED_ACTION = "settings.mpesa_refused"
WRONG_PASSWORD = "current password wrong"
NAIROBI = ZoneInfo("Africa/Nairobi")
_PRINTABLE = re.compile(r"^[\x21-\x7e]{1,200}$")  # no spaces or control characters
_SHORT_CODE = re.compile(r"^\d{5,7}$")
MAX_URL = 200


class SettingsRefused(ValueError):
    """The change was not made; ``str()`` is safe to show the admin."""


@dataclass(frozen=True)
class MpesaChangeRequest:
    """The mode wanted and the credentials typed in (blank fields keep what is saved)."""

    environment: str
    values: Mapping[str, Mapping[str, str]]  # mode -> field -> new value

    @property
    def changed_keys(self) -> list[str]:
        return [f"{env}.{name}" for env, fields in self.values.items() for name in fields]


@dataclass(frozen=True)
class MpesaChangeDone:
    previous: str
    environment: str
    changed: tuple[str, ...]

    def message(self) -> str:
        parts = []
        if self.previous != self.environment:
            parts.append(f"M-Pesa mode switched from {self.previous} to {self.environment}")
        if self.changed:
            parts.append("saved: " + ", ".join(self.changed))
        return ("; ".join(parts) or "Nothing changed") + ". New payments use it from now on."


def form_field(environment: str, name: str) -> str:
    """The HTML input name of one credential of one mode, e.g. ``production_passkey``."""
    return f"{environment}_{name}"


def parse_mpesa_form(form: Mapping[str, str]) -> MpesaChangeRequest:
    """Read and check the settings form; the first bad field raises SettingsRefused naming it."""
    environment = (form.get("environment") or "").strip()
    if environment not in ENVIRONMENTS:
        raise SettingsRefused(f"M-Pesa mode must be one of {', '.join(ENVIRONMENTS)}.")
    values: dict[str, dict[str, str]] = {}
    for env in ENVIRONMENTS:
        for name in FIELDS:
            raw = (form.get(form_field(env, name)) or "").strip()
            if raw:
                values.setdefault(env, {})[name] = _checked(env, name, raw)
    return MpesaChangeRequest(environment, values)


async def change_mpesa_settings(
    provider: MpesaSettings, *, admin_id: int, current_password: str, request: MpesaChangeRequest
) -> MpesaChangeDone:
    """Apply ``request`` in one transaction, or refuse it whole (nothing changed)."""
    runtime = provider.runtime
    actor = f"admin:{admin_id}"
    await _check_not_locked(runtime, actor)
    if not await admins.confirm_password(runtime, admin_id=admin_id, password=current_password):
        async with runtime.uow() as uow:
            await audit.record(
                uow.session,
                actor=actor,
                action=REFUSED_ACTION,
                subject_type="settings",
                subject_id="mpesa",
                details={"reason": WRONG_PASSWORD, "wanted": request.environment},
                at=runtime.clock(),
            )
            await uow.commit()
        raise SettingsRefused("The current password is not correct. Nothing was changed.")
    async with runtime.uow() as uow:
        await audit.lock_chain(uow.session)  # chain lock first, as every audited change does
        saved = await read_settings(uow.session, provider.cipher, "mpesa.")
        stored_env = saved.get(ENVIRONMENT_KEY)
        previous = stored_env.value if stored_env and stored_env.value else runtime.settings.mpesa_environment
        _check_target(provider, request, saved)
        updates = {
            setting_key(env, name): value
            for env, fields in request.values.items()
            for name, value in fields.items()
        }
        secret_keys = frozenset(k for k in updates if k.rsplit(".", 1)[1] in SECRET_FIELDS)
        if request.environment != previous:
            updates[ENVIRONMENT_KEY] = request.environment
        if not updates:
            return MpesaChangeDone(previous, request.environment, ())
        await write_settings(
            uow.session, provider.cipher, updates, secret_keys=secret_keys, actor=actor, now=runtime.clock()
        )
        await audit.record(
            uow.session,
            actor=actor,
            action="settings.mpesa_changed",
            subject_type="settings",
            subject_id="mpesa",
            details={"from": previous, "to": request.environment, "changed": request.changed_keys},
        )
        await uow.commit()
    forget_saved(runtime)  # this process's next payment uses the change at once
    return MpesaChangeDone(previous, request.environment, tuple(request.changed_keys))


async def _check_not_locked(runtime: Runtime, actor: str) -> None:
    """The login throttle's rule for the password asked again: 5 wrong in 15 minutes lock 15 minutes.

    A stolen session must not become a way to guess the password; the wrong tries are the
    ``settings.mpesa_refused`` audit entries, so the rule holds across processes.
    """
    now = runtime.clock()
    async with runtime.uow() as uow:
        times = (
            await uow.session.scalars(
                select(AuditEntry.at).where(
                    AuditEntry.action == REFUSED_ACTION,
                    AuditEntry.actor == actor,
                    AuditEntry.at >= now - LOOKBACK,
                )
            )
        ).all()
    until = locked_until(times, now)
    if until is not None:
        raise SettingsRefused(
            "Too many wrong passwords: changes are locked until "
            f"{until.astimezone(NAIROBI).strftime('%H:%M')} (Nairobi time). Nothing was changed."
        )


def _check_target(provider: MpesaSettings, request: MpesaChangeRequest, saved: Mapping[str, object]) -> None:
    target = request.environment
    if target == "simulator" and not simulator_available(provider.runtime):
        raise SettingsRefused(
            "The Daraja simulator only runs in local mode (or with MPESA_API_BASE_URL). Nothing was changed."
        )
    config = resolve_config(provider.runtime, target, saved, request.values.get(target))  # type: ignore[arg-type]
    missing = config.missing()
    if missing:
        names = ", ".join(FIELD_LABELS[name] for name in missing)
        extra = " (an https:// address)" if "callback_base_url" in missing else ""
        raise SettingsRefused(
            f"Switching to {target} needs {target} credentials: {names}{extra} missing. Nothing was changed."
        )


def _checked(env: str, name: str, raw: str) -> str:
    label = f"{env} {FIELD_LABELS[name]}"
    if name == "short_code":
        if not _SHORT_CODE.fullmatch(raw):
            raise SettingsRefused(f"The {label} must be 5 to 7 digits. Nothing was changed.")
        return raw
    if name == "callback_base_url":
        value = raw.rstrip("/")
        parts = urlsplit(value)
        if len(value) > MAX_URL or parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise SettingsRefused(f"The {label} must be an http(s) address such as https://pay.example.org.")
        if "mpesa" in value.lower():  # Safaricom refuses callback URLs containing "mpesa"
            raise SettingsRefused(f"The {label} must not contain the word 'mpesa' (Safaricom refuses it).")
        return value
    if not _PRINTABLE.fullmatch(raw):
        raise SettingsRefused(f"The {label} must be 1 to 200 characters without spaces. Nothing was changed.")
    return raw
