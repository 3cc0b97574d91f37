"""The active M-Pesa configuration: which mode (simulator/sandbox/production) and which Daraja
credentials a NEW payment uses.

Resolution, per field and mode: a value an admin saved (``settings`` table) wins; else the
environment variable, which describes only the mode the process booted in
(``MPESA_ENVIRONMENT``); else the mode's public default (the simulator's and Safaricom's
sandbox test values). Payments read the table through a short cache (:data:`SAVED_TTL_S`):
a burst of Pay presses shares one read. A change saved through :func:`forget_saved` (the admin
settings page) is used by this process's next payment; another process uses it within
``SAVED_TTL_S`` — in both cases without a restart. The admin page itself always reads fresh.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import (
    DARAJA_BASE_URLS,
    SANDBOX_PASSKEY,
    SANDBOX_SHORT_CODE,
    SIMULATOR_CONSUMER_KEY,
    SIMULATOR_CONSUMER_SECRET,
    is_test_environment,
)
from core.db.models import Setting
from core.runtime import Runtime
from core.services.settings.crypto import SettingsCipher
from core.services.settings.store import StoredSetting, read_settings

SAVED_TTL_S = 2.0  # how long another process may use the previous saved M-Pesa settings
# Bumped by forget_saved(): every MpesaSettings of that database in this process drops its cache.
_GENERATIONS: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()

ENVIRONMENTS = ("simulator", "sandbox", "production")
CREDENTIAL_FIELDS = ("consumer_key", "consumer_secret", "short_code", "passkey")
FIELDS = (*CREDENTIAL_FIELDS, "callback_base_url")
SECRET_FIELDS = frozenset(CREDENTIAL_FIELDS)  # stored encrypted, shown as the last 4 characters
ENVIRONMENT_KEY = "mpesa.environment"
KEY_PREFIX = "mpesa."
FIELD_LABELS = {
    "consumer_key": "consumer key",
    "consumer_secret": "consumer secret",
    "short_code": "business short code",
    "passkey": "passkey",
    "callback_base_url": "callback base URL",
}
_ENV_FIELDS = {  # our field -> core.config.Settings attribute
    "consumer_key": "mpesa_consumer_key",
    "consumer_secret": "mpesa_consumer_secret",
    "short_code": "mpesa_business_short_code",
    "passkey": "mpesa_passkey",
}
_DEFAULTS: dict[str, dict[str, str]] = {
    "simulator": {
        "consumer_key": SIMULATOR_CONSUMER_KEY,
        "consumer_secret": SIMULATOR_CONSUMER_SECRET,
        "short_code": SANDBOX_SHORT_CODE,
        "passkey": SANDBOX_PASSKEY,
    },
    "sandbox": {"short_code": SANDBOX_SHORT_CODE, "passkey": SANDBOX_PASSKEY},
    "production": {},
}


def setting_key(environment: str, name: str) -> str:
    """The ``settings`` row key of one field of one mode, e.g. ``mpesa.production.passkey``."""
    return f"{KEY_PREFIX}{environment}.{name}"


def last4(value: str | None) -> str:
    """What the page shows of a credential: never more than its last 4 characters."""
    if not value:
        return ""
    return "…" + value[-4:] if len(value) > 4 else "…" + value[-1:]


@dataclass(frozen=True)
class MpesaConfig:
    """Everything a Daraja client of one mode needs; secrets are left out of ``repr``."""

    environment: str
    base_url: str
    callback_base_url: str
    short_code: str | None
    consumer_key: str | None = field(repr=False)
    consumer_secret: str | None = field(repr=False)
    passkey: str | None = field(repr=False)
    till_number: str | None = None
    sources: Mapping[str, str] = field(
        default_factory=dict, repr=False
    )  # saved|environment|default|unset|unreadable

    def value(self, name: str) -> str | None:
        value: str | None = getattr(self, name)
        return value

    def missing(self) -> list[str]:
        """Credential fields without a usable value, plus an insecure production callback."""
        gaps = [name for name in CREDENTIAL_FIELDS if not self.value(name)]
        if self.environment == "production" and not self.callback_base_url.startswith("https://"):
            gaps.append("callback_base_url")
        return gaps

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything a Daraja client is built from changes (never shown)."""
        parts = (self.base_url, self.short_code, self.consumer_key, self.consumer_secret, self.passkey)
        joined = "\x1f".join(p or "" for p in (*parts, self.till_number))
        return hashlib.sha256(joined.encode()).hexdigest()


@dataclass(frozen=True)
class MpesaOverview:
    """What the settings page shows: the active mode and every mode's configuration."""

    active: str
    booted: str
    configs: Mapping[str, MpesaConfig]
    updated: Mapping[str, StoredSetting]


class MpesaSettings:
    """The "active M-Pesa configuration" provider; payment initiation asks it per payment."""

    def __init__(self, runtime: Runtime, cipher: SettingsCipher, *, ttl_s: float = SAVED_TTL_S) -> None:
        self.runtime = runtime
        self.cipher = cipher
        self._ttl_s = ttl_s
        self._cached: tuple[int, float, dict[str, StoredSetting]] | None = None  # generation, until, rows

    async def active_environment(self) -> str:
        """The mode new payments use (one plain row: asked on every admin page and chat turn)."""
        async with self.runtime.uow() as uow:
            saved = await uow.session.scalar(select(Setting.value).where(Setting.key == ENVIRONMENT_KEY))
        return saved if saved in ENVIRONMENTS else self.runtime.settings.mpesa_environment

    async def config_for(self, environment: str) -> MpesaConfig:
        if environment not in ENVIRONMENTS:
            raise ValueError(f"unknown M-Pesa environment {environment!r}")
        return resolve_config(self.runtime, environment, await self._saved())

    async def active_config(self) -> MpesaConfig:
        saved = await self._saved()
        return resolve_config(self.runtime, _active(self.runtime, saved), saved)

    async def overview(self) -> MpesaOverview:
        saved = await self._saved(fresh=True)  # the settings page shows what is stored now
        return MpesaOverview(
            active=_active(self.runtime, saved),
            booted=self.runtime.settings.mpesa_environment,
            configs={env: resolve_config(self.runtime, env, saved) for env in ENVIRONMENTS},
            updated=saved,
        )

    async def _saved(self, *, fresh: bool = False) -> dict[str, StoredSetting]:
        generation, now = _GENERATIONS.get(self.runtime.engine.sync_engine, 0), time.monotonic()
        cached = self._cached
        if not fresh and cached is not None and cached[0] == generation and now < cached[1]:
            return cached[2]
        async with self.runtime.uow() as uow:
            saved = await read_settings(uow.session, self.cipher, KEY_PREFIX)
        self._cached = (generation, now + self._ttl_s, saved)
        return saved


def forget_saved(runtime: Runtime) -> None:
    """Call after committing a change of the saved M-Pesa settings: this process re-reads them."""
    engine = runtime.engine.sync_engine
    _GENERATIONS[engine] = _GENERATIONS.get(engine, 0) + 1


async def active_test_mode(session: AsyncSession, runtime: Runtime) -> bool:
    """TEST MODE (Property 78) for a message about a payment yet to be made: the saved mode, else
    MPESA_ENVIRONMENT. Reads one plain row inside the caller's transaction (no decryption)."""
    saved = await session.scalar(select(Setting.value).where(Setting.key == ENVIRONMENT_KEY))
    mode = saved if saved in ENVIRONMENTS else runtime.settings.mpesa_environment
    return is_test_environment(mode)


def simulator_available(runtime: Runtime) -> bool:
    """The simulator mode needs a simulator: the local one (local mode) or MPESA_API_BASE_URL."""
    settings = runtime.settings
    return settings.local_mode or settings.mpesa_api_base_url is not None


def resolve_config(
    runtime: Runtime,
    environment: str,
    saved: Mapping[str, StoredSetting],
    overrides: Mapping[str, str] | None = None,
) -> MpesaConfig:
    """One mode's configuration from saved values, the environment and defaults (module docstring).

    ``overrides`` are values about to be saved (field -> value), to check a change before it is made.
    """
    settings = runtime.settings
    booted = settings.mpesa_environment == environment
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        stored = saved.get(setting_key(environment, name))
        if overrides and overrides.get(name):
            values[name], sources[name] = overrides[name], "saved"
        elif stored is not None and not stored.unreadable:
            values[name], sources[name] = stored.value, "saved"
        elif booted and name in _ENV_FIELDS and getattr(settings, _ENV_FIELDS[name]):
            values[name], sources[name] = getattr(settings, _ENV_FIELDS[name]), "environment"
        elif name == "callback_base_url":
            values[name], sources[name] = settings.base_url, "environment"
        elif name in _DEFAULTS[environment]:
            values[name], sources[name] = _DEFAULTS[environment][name], "default"
        else:
            values[name] = None
            sources[name] = "unreadable" if stored is not None else "unset"
    return MpesaConfig(
        environment=environment,
        base_url=_base_url(runtime, environment),
        callback_base_url=str(values["callback_base_url"]).rstrip("/"),
        short_code=values["short_code"],
        consumer_key=values["consumer_key"],
        consumer_secret=values["consumer_secret"],
        passkey=values["passkey"],
        till_number=settings.mpesa_till_number if booted else None,
        sources=sources,
    )


def _active(runtime: Runtime, saved: Mapping[str, StoredSetting]) -> str:
    stored = saved.get(ENVIRONMENT_KEY)
    if stored is not None and stored.value in ENVIRONMENTS:
        return stored.value
    return runtime.settings.mpesa_environment


def _base_url(runtime: Runtime, environment: str) -> str:
    # MPESA_API_BASE_URL overrides every mode (a local proxy or simulator stays in front of all).
    settings = runtime.settings
    if settings.mpesa_api_base_url:
        return settings.mpesa_api_base_url
    if environment == "simulator":
        return f"{settings.stand_ins_url}/sim/daraja"
    return DARAJA_BASE_URLS[environment]
