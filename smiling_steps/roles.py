"""Process roles of ``smiling-steps serve --role all|web|worker`` (or ``SERVE_ROLE``).

* ``all`` (default) — one process runs everything on one event loop, as before the roles existed.
* ``web`` — the aiohttp site: webhooks with the M-Pesa callback intake, the Telegram webhook
  (webhook mode: the bot's handlers run here and only *record* progress messages), the SMS hooks,
  /admin, /healthz, /metrics and, in local mode, the stand-ins under /sim/. No background workers.
* ``worker`` — settlement, payment watchdog, outbox dispatcher, reminders, housekeeping, the
  progress-message follower and Telegram polling (when no webhook is configured). It listens on
  its own PORT for /healthz and /metrics only, so that it can be monitored like a web process.

Processes share work only through the database; a wake-up crosses processes by PostgreSQL
``NOTIFY`` or, on SQLite, by the worker watching the file's data version
(``core/wake_signal.py``). See README "Running several instances".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from core.config import ConfigError, Settings
from core.db.engine import sqlite_file
from core.runtime import Runtime
from core.wake_signal import PgWakeBridge, SqliteChangeWatcher

ROLE_NAMES = ("all", "web", "worker")


class Role(StrEnum):
    ALL = "all"
    WEB = "web"
    WORKER = "worker"


def parse_role(text: str | None) -> Role:
    """``--role`` / ``SERVE_ROLE`` (empty: ``all``); ConfigError with one line otherwise."""
    value = (text or "all").strip().lower()
    try:
        return Role(value)
    except ValueError:
        shown = (text or "")[:40].encode("unicode_escape").decode()
        raise ConfigError(f"SERVE_ROLE / --role: '{shown}' is not one of {', '.join(ROLE_NAMES)}") from None


@dataclass(frozen=True)
class RolePlan:
    """What a role runs; ``runs()`` is what /healthz and /metrics report."""

    role: Role
    site: bool  # webhooks, admin, simulators (web, all)
    workers: bool  # settlement, watchdog, outbox, reminders, housekeeping (worker, all)
    telegram_webhook_mode: bool

    @property
    def bot_receives(self) -> bool:
        """Whether this process receives Telegram updates (webhook: web; polling: worker)."""
        if self.role is Role.ALL:
            return True
        return self.site if self.telegram_webhook_mode else self.workers

    @property
    def follows_progress(self) -> bool:
        """Whether this process edits progress messages (the one with the workers)."""
        return self.workers

    def runs(self, *, bot: bool) -> list[str]:
        parts: list[str] = []
        if self.site:
            parts += ["webhooks", "admin"]
        parts += ["health", "metrics"]
        if self.workers:
            parts += ["settlement", "watchdog", "outbox", "reminders", "housekeeping"]
        if bot and self.bot_receives:
            parts.append("telegram-webhook" if self.telegram_webhook_mode else "telegram-polling")
        if bot and self.follows_progress:
            parts.append("telegram-progress")
        return parts


def plan_for(role: Role, settings: Settings) -> RolePlan:
    webhook = bool(settings.telegram_webhook_secret)
    return RolePlan(
        role, site=role is not Role.WORKER, workers=role is not Role.WEB, telegram_webhook_mode=webhook
    )


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def wake_ctx(runtime: Runtime, plan: RolePlan) -> CleanupContext | None:
    """The cross-process wake-up of a split role (None for ``all``: one process, local events)."""
    if plan.role is Role.ALL:
        return None
    settings = runtime.settings
    signal: PgWakeBridge | SqliteChangeWatcher | None
    if not settings.is_sqlite:
        signal = PgWakeBridge(runtime, listen=plan.workers)
    elif plan.workers:
        path = sqlite_file(settings.database_url)
        if path is None:
            raise ConfigError("DATABASE_URL: web and worker processes need a database file, not :memory:")
        signal = SqliteChangeWatcher(runtime, path)
    else:
        signal = None  # a SQLite web process: its commits are the signal the worker watches

    async def wake(_app: web.Application) -> AsyncIterator[None]:
        if signal is not None:
            await signal.start()
        runtime.process["wake"] = _wake_kind(signal)
        yield
        if signal is not None:
            await signal.stop()

    return wake


def _wake_kind(signal: object) -> str:
    if isinstance(signal, PgWakeBridge):
        return "postgresql-listen-notify" if signal.listen else "postgresql-notify"
    if isinstance(signal, SqliteChangeWatcher):
        return f"sqlite-data-version-{int(signal.interval * 1000)}ms"
    return "database-commits"
