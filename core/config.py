"""Settings from the environment (DESIGN.md §4), read and validated once at start.

With no variables set the service runs in *local mode*: M-Pesa through the built-in
simulator, SQLite in the working directory, a generated secret key kept in a file.
A bad value raises ``ConfigError`` whose message is one line naming the variable.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

MpesaEnvironment = Literal["simulator", "sandbox", "production"]

# Safaricom's public sandbox shortcode and passkey (Daraja documentation).
SANDBOX_SHORT_CODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
# Credentials the local Daraja simulator accepts.
SIMULATOR_CONSUMER_KEY = "simulator-consumer-key"
SIMULATOR_CONSUMER_SECRET = "simulator-consumer-secret"

DARAJA_BASE_URLS: dict[str, str] = {
    "sandbox": "https://sandbox.safaricom.co.ke",
    "production": "https://api.safaricom.co.ke",
}
TELEGRAM_DEFAULT_BASE_URL = "https://api.telegram.org/bot"
SECRET_FILE_NAME = ".smiling_steps_secret"
MAX_CANCEL_WINDOW_HOURS = 720  # CLIENT_CANCEL_WINDOW_HOURS: 30 days, beyond any bookable start
MAX_RESCHEDULE_WINDOW_HOURS = 720  # CLIENT_RESCHEDULE_WINDOW_HOURS: the same bound
DEFAULT_RESCHEDULE_WINDOW_HOURS = 24
# Set but empty (``CLIENT_RESCHEDULE_WINDOW_HOURS=``): clients may not move sessions themselves.
_OFF_WHEN_EMPTY = ("client_reschedule_window_hours",)

# SECRET_KEY outside local mode: at least 32 random bytes (it derives the key that encrypts
# stored credentials and signs sessions). 43 characters of URL-safe base64 or 64 hex digits.
MIN_SECRET_KEY_CHARS = 43
MIN_HEX_SECRET_KEY_CHARS = 64
MIN_SECRET_KEY_DISTINCT_CHARS = 10
MIN_SECRET_KEY_ESTIMATED_BITS = 128  # a lower bound seen in the value itself; random keys score ~200+
GENERATE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

_ALLOWED_DB_DRIVERS = "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"


class ConfigError(ValueError):
    """A setting that stops start-up; ``str()`` is one line naming the variable."""


class Settings(BaseSettings):
    """Every environment variable of DESIGN.md §4 (plus a few operational ones)."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", env_ignore_empty=True, frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() hands in the environment it was given; never read os.environ behind it.
        return (init_settings,)

    database_url: str = "sqlite+aiosqlite:///./smiling_steps.db"
    port: int = 8080
    host: str | None = None
    public_base_url: str | None = None
    secret_key: str | None = None

    mpesa_environment: MpesaEnvironment = "simulator"
    mpesa_api_base_url: str | None = None
    mpesa_consumer_key: str | None = None
    mpesa_consumer_secret: str | None = None
    mpesa_business_short_code: str | None = None
    mpesa_passkey: str | None = None
    mpesa_till_number: str | None = None
    mpesa_callback_allowed_ips: str | None = None
    mpesa_callback_ip_mode: Literal["log", "enforce"] = "log"
    mpesa_trusted_proxies: str | None = None
    mpesa_confirm_with_query: bool | None = None  # unset: see confirm_success_by_query
    mpesa_payment_deadline_seconds: int = 120
    # Local mode only: how long a push refused by an unavailable Daraja waits before it is retried
    # (unset: 30 s, as in production); lets `smiling-steps demo --scenario outage` run in seconds.
    mpesa_unavailable_retry_seconds: int | None = None
    # Hours before its start until which a client may cancel a paid (CONFIRMED) booking
    # in the chat; unset: never (they ask the practice). Unpaid bookings may always be cancelled.
    client_cancel_window_hours: int | None = None
    # The language an SMS conversation starts in ("en" or "sw"; core/i18n.py). Telegram starts
    # from the user's own language_code; anyone may switch with /language, LUGHA or LANGUAGE.
    default_language: str = "en"
    # Hours before its start until which a client may move an approved or paid booking to
    # another free slot; set but empty: never (they ask the practice). Admins always may.
    client_reschedule_window_hours: int | None = DEFAULT_RESCHEDULE_WINDOW_HOURS
    # A client's move waits for the practitioner's approval (the old slot is kept meanwhile).
    reschedule_needs_approval: bool = False

    # What `smiling-steps serve` runs: all, web or worker (smiling_steps/roles.py); --role wins.
    serve_role: Literal["all", "web", "worker"] = "all"

    telegram_bot_token: str | None = None
    telegram_api_base_url: str = TELEGRAM_DEFAULT_BASE_URL
    telegram_webhook_secret: str | None = None

    at_username: str | None = None
    at_api_key: str | None = None
    at_shortcode: str | None = None
    at_api_base_url: str | None = None
    at_webhook_secret: str | None = None

    meeting_url_template: str = "https://meet.jit.si/{room}"

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "Smiling Steps <no-reply@smilingsteps.local>"
    smtp_starttls: bool = True

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # serve's event loop: uvloop when installed (auto), or the standard asyncio loop.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # Bearer token for /metrics and the details of /healthz (webhooks/ops_access.py).
    metrics_token: str | None = None

    # -- field rules -------------------------------------------------------------
    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a TCP port between 1 and 65535")
        return value

    @field_validator("mpesa_payment_deadline_seconds")
    @classmethod
    def _deadline(cls, value: int) -> int:
        if not 1 <= value <= 600:
            raise ValueError("must be between 1 and 600 seconds (Safaricom's prompt lasts about 120)")
        return value

    @field_validator("mpesa_unavailable_retry_seconds")
    @classmethod
    def _unavailable_retry(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 30:
            raise ValueError("must be between 1 and 30 seconds")
        return value

    @field_validator("client_cancel_window_hours")
    @classmethod
    def _cancel_window(cls, value: int | None) -> int | None:
        # Bookings are at most 14 days ahead; far larger numbers are most likely minutes or seconds.
        if value is not None and not 0 <= value <= MAX_CANCEL_WINDOW_HOURS:
            raise ValueError(
                f"must be whole hours from 0 to {MAX_CANCEL_WINDOW_HOURS} "
                "(leave it unset so that clients cannot cancel a paid booking)"
            )
        return value

    @field_validator("default_language", mode="before")
    @classmethod
    def _default_language(cls, value: object) -> str:
        text = str(value).strip().lower()
        if text not in ("en", "sw"):
            raise ValueError("must be en (English) or sw (Kiswahili)")
        return text
    @field_validator("client_reschedule_window_hours")
    @classmethod
    def _reschedule_window(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= MAX_RESCHEDULE_WINDOW_HOURS:
            raise ValueError(
                f"must be whole hours from 0 to {MAX_RESCHEDULE_WINDOW_HOURS} "
                "(set it empty so that clients cannot move a session themselves)"
            )
        return value

    @field_validator("at_shortcode")
    @classmethod
    def _sender_id(cls, value: str | None) -> str | None:
        # Africa's Talking sends from a numeric shortcode or an alphanumeric sender id.
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]{3,11}", value.strip()):
            raise ValueError("must be a shortcode or sender id of 3 to 11 letters or digits")
        return value.strip() if value else value

    @field_validator("mpesa_business_short_code", "mpesa_till_number")
    @classmethod
    def _digits(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{5,7}", value.strip()):
            raise ValueError("must be 5 to 7 digits")
        return value.strip() if value else value

    @field_validator("public_base_url", "mpesa_api_base_url", "at_api_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://example.org")
        return value

    @field_validator("telegram_api_base_url")
    @classmethod
    def _telegram_base(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL (PTB base_url, e.g. https://api.telegram.org/bot)")
        return value

    @field_validator("mpesa_callback_allowed_ips", "mpesa_trusted_proxies")
    @classmethod
    def _ip_list(cls, value: str | None) -> str | None:
        for item in _split_list(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not an IP address or CIDR network") from None
        return value

    @field_validator("meeting_url_template")
    @classmethod
    def _meeting(cls, value: str) -> str:
        if "{room}" not in value or urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL containing {room}")
        if re.search(r"therap|counsel|mental|psych", value, re.IGNORECASE):
            # The link goes out by SMS: it must not name the kind of care (health data).
            raise ValueError("must not name the kind of care (therapy, counselling, mental, psych…)")
        return value

    @field_validator("telegram_webhook_secret", "at_webhook_secret")
    @classmethod
    def _secret_token(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_\-]{8,256}", value):
            raise ValueError("must be 8-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_\-.~+/=]{32,256}", value):
            raise ValueError(
                "must be 32-256 characters of A-Z, a-z, 0-9 and -._~+/= "
                f"(make one with: {GENERATE_SECRET_KEY})"
            )
        return value

    @model_validator(mode="after")
    def _production_needs_real_values(self) -> Settings:
        if self.mpesa_environment == "production":
            for name in (
                "mpesa_consumer_key",
                "mpesa_consumer_secret",
                "mpesa_business_short_code",
                "mpesa_passkey",
                "secret_key",
                "public_base_url",
            ):
                if not getattr(self, name):
                    raise ValueError(f"{name.upper()} is required when MPESA_ENVIRONMENT=production")
            if not str(self.public_base_url).startswith("https://"):
                raise ValueError("PUBLIC_BASE_URL must be https:// when MPESA_ENVIRONMENT=production")
        if not self.local_mode and self.secret_key:
            weakness = secret_key_weakness(self.secret_key)
            if weakness:
                raise ValueError(
                    f"SECRET_KEY is too weak for MPESA_ENVIRONMENT={self.mpesa_environment} ({weakness}); "
                    f"use at least 32 random bytes, e.g. the output of: {GENERATE_SECRET_KEY}"
                )
        if self.mpesa_unavailable_retry_seconds is not None and not self.local_mode:
            raise ValueError(
                "MPESA_UNAVAILABLE_RETRY_SECONDS is for local mode only (MPESA_ENVIRONMENT=simulator)"
            )
        if self.mpesa_environment == "sandbox":
            for name in ("mpesa_consumer_key", "mpesa_consumer_secret"):
                if not getattr(self, name):
                    raise ValueError(
                        f"{name.upper()} is required when MPESA_ENVIRONMENT=sandbox "
                        "(create an app on the Daraja portal)"
                    )
        return self

    # -- derived values ----------------------------------------------------------
    @property
    def local_mode(self) -> bool:
        """Simulator mode: outside systems are the project's own stand-ins."""
        return self.mpesa_environment == "simulator"

    @property
    def confirm_success_by_query(self) -> bool:
        """Whether a success callback is confirmed by STK Query before it settles anything.

        MPESA_CONFIRM_WITH_QUERY when given; unset, on in sandbox and production (there the URL
        secret would otherwise be a success callback's only proof) and off in simulator mode.
        """
        if self.mpesa_confirm_with_query is not None:
            return self.mpesa_confirm_with_query
        return not self.local_mode

    @property
    def unavailable_retry_after(self) -> timedelta:
        """How long a push refused by an unavailable Daraja waits (Properties 55, 71: 30 s)."""
        return timedelta(seconds=self.mpesa_unavailable_retry_seconds or 30)

    @property
    def bind_host(self) -> str:
        return self.host or ("127.0.0.1" if self.local_mode else "0.0.0.0")  # noqa: S104

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://127.0.0.1:{self.port}"

    @property
    def stand_ins_url(self) -> str:
        """Where local mode's stand-ins (/sim/…) answer: this process, or for a worker the web process.

        A ``worker`` serves no /sim/ routes; it reaches the ``web`` process's at PUBLIC_BASE_URL.
        """
        if self.serve_role == "worker":
            return self.base_url
        return f"http://127.0.0.1:{self.port}"

    @property
    def daraja_base_url(self) -> str:
        if self.mpesa_api_base_url:
            return self.mpesa_api_base_url
        if self.local_mode:
            return f"{self.stand_ins_url}/sim/daraja"
        return DARAJA_BASE_URLS[self.mpesa_environment]

    @property
    def daraja_short_code(self) -> str:
        return self.mpesa_business_short_code or SANDBOX_SHORT_CODE

    @property
    def daraja_passkey(self) -> str:
        return self.mpesa_passkey or SANDBOX_PASSKEY

    @property
    def daraja_consumer_key(self) -> str:
        return self.mpesa_consumer_key or SIMULATOR_CONSUMER_KEY

    @property
    def daraja_consumer_secret(self) -> str:
        return self.mpesa_consumer_secret or SIMULATOR_CONSUMER_SECRET

    @property
    def callback_allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(i, strict=False) for i in _split_list(self.mpesa_callback_allowed_ips)]

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(i, strict=False) for i in _split_list(self.mpesa_trusted_proxies)]

    @property
    def test_mode(self) -> bool:
        """Sandbox and simulator payments are marked TEST MODE to users (Property 78)."""
        return is_test_environment(self.mpesa_environment)

    @property
    def client_cancel_window(self) -> timedelta | None:
        """How long before the start a client may still cancel a paid booking; None: never."""
        if self.client_cancel_window_hours is None:
            return None
        return timedelta(hours=self.client_cancel_window_hours)

    @property
    def client_reschedule_window(self) -> timedelta | None:
        """How long before the start a client may still move a booking; None: never."""
        if self.client_reschedule_window_hours is None:
            return None
        return timedelta(hours=self.client_reschedule_window_hours)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def is_test_environment(environment: str) -> bool:
    """Property 78: everything but production is test money, marked TEST MODE to users."""
    return environment != "production"


def secret_key_weakness(value: str) -> str | None:
    """Why ``value`` cannot be 32 random bytes, or None when it may be (never quotes the value).

    A length alone is not enough: ``"k" * 48`` or a short word repeated are long but guessable,
    so the value must not repeat a shorter pattern and must look random by its own letters.
    """
    hex_only = all(c in "0123456789abcdefABCDEF" for c in value)
    needed = MIN_HEX_SECRET_KEY_CHARS if hex_only else MIN_SECRET_KEY_CHARS
    if len(value) < needed:
        kind = "hex digits" if hex_only else "characters"
        return f"too short: {len(value)} of at least {needed} {kind}"
    if _repeats_a_pattern(value):
        return "it repeats a shorter pattern"
    counts = [value.count(c) for c in set(value)]
    bits = -sum(n * math.log2(n / len(value)) for n in counts)
    if len(counts) < MIN_SECRET_KEY_DISTINCT_CHARS or bits < MIN_SECRET_KEY_ESTIMATED_BITS:
        return "too few different characters to be random"
    return None


def _repeats_a_pattern(value: str) -> bool:
    # A string is a repetition of a shorter unit iff it occurs in itself doubled, minus the ends.
    return value in (value + value)[1:-1]


def normalise_database_url(value: str) -> str:
    """Accept the async drivers we support; rewrite the usual sync spellings to them."""
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError(f"must be a URL: {_ALLOWED_DB_DRIVERS}")
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite+aiosqlite://" + rest
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return "postgresql+asyncpg://" + rest
    raise ValueError(f"unknown driver '{scheme}'; use {_ALLOWED_DB_DRIVERS}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raise ConfigError with one line naming the variable."""
    source = os.environ if environ is None else environ
    values = {k.lower(): v for k, v in source.items() if k.lower() in Settings.model_fields}
    off = [k for k, v in values.items() if k in _OFF_WHEN_EMPTY and not v.strip()]
    values = {k: v for k, v in values.items() if v != "" and k not in off}
    try:
        return Settings.model_validate({**values, **dict.fromkeys(off)})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, values)) from None


def ensure_secret_key(settings: Settings, directory: Path | None = None) -> str:
    """Return SECRET_KEY; in local mode generate one once and keep it in a 0600 file."""
    if settings.secret_key:
        return settings.secret_key
    if not settings.local_mode:
        raise ConfigError(
            f"SECRET_KEY: required outside local mode (at least 32 random bytes: {GENERATE_SECRET_KEY})"
        )
    path = (directory or Path.cwd()) / SECRET_FILE_NAME
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # exactly owner read/write, whatever the umask
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _split_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _one_line(exc: ValidationError, values: Mapping[str, str]) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ()) if part != "__root__"]
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if error.get("type") == "literal_error":
        message = "must be one of " + str(error.get("ctx", {}).get("expected", "")).replace("'", "")
    elif error.get("type") in ("int_parsing", "int_type"):
        message = "must be a whole number"
    elif error.get("type") in ("bool_parsing", "bool_type"):
        message = "must be true or false"
    if not loc:  # model-level rule: the message names the variable itself
        return message
    name = loc[0]
    got = values.get(name)
    if got is not None and name == "database_url":
        got = re.sub(r"^((?:[^:/@]*://)?[^:/@]*):.*@", r"\1:***@", got)  # never echo a database password
    shown = "" if got is None or _is_secret(name) else f" (got '{got}')"
    return f"{name.upper()}: {message}{shown}"


def _is_secret(name: str) -> bool:
    return any(word in name for word in ("secret", "key", "password", "token", "passkey"))
