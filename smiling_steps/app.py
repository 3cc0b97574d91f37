"""The aiohttp application: wires the adapters onto one event loop for ``serve``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from core.config import Settings
from core.db.migrate import current_revision, head_revision, is_up_to_date, upgrade
from core.runtime import Runtime, build_runtime
from webhooks.health import setup_health

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024


class NotMigrated(RuntimeError):
    """The database schema is older than this code."""


async def prepare_database(runtime: Runtime, *, auto_upgrade: bool) -> None:
    """Upgrade (local mode) or refuse to run on a database that is not at the newest migration."""
    if await is_up_to_date(runtime.engine):
        return
    if auto_upgrade:
        await upgrade(runtime.engine)
        log.info("database upgraded", extra={"revision": head_revision()})
        return
    current = await current_revision(runtime.engine)
    raise NotMigrated(
        f"database is at revision {current or 'none (empty)'}, this code needs {head_revision()}: "
        "run `smiling-steps db upgrade` first"
    )


def create_app(settings: Settings, runtime: Runtime | None = None) -> web.Application:
    """Build the whole application for ``settings`` (``runtime`` lets tests share one)."""
    runtime = runtime or build_runtime(settings)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    runtime.components.setdefault("bot", "disabled")
    setup_health(app, runtime)

    async def runtime_ctx(_app: web.Application) -> AsyncIterator[None]:
        await prepare_database(runtime, auto_upgrade=settings.local_mode)
        yield
        await runtime.close()

    app.cleanup_ctx.append(runtime_ctx)
    return app
