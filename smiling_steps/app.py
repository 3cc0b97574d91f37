"""The aiohttp application: wires the adapters and background workers onto one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.config import Settings, ensure_secret_key
from core.db.migrate import current_revision, head_revision, is_up_to_date, upgrade
from core.mpesa import DarajaClient
from core.runtime import Runtime, build_runtime
from core.services.callbacks import CallbackIntake, SettlementWorker
from core.services.payments import PaymentService
from core.services.watchdog import Watchdog
from webhooks.health import setup_health
from webhooks.mpesa import setup_mpesa_callbacks

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024
WATCHDOG_INTERVAL_S = 5


class NotMigrated(RuntimeError):
    """The database schema is older than this code."""


@dataclass
class Services:
    """What the adapters share; built when the application starts (inside the event loop)."""

    runtime: Runtime
    daraja: DarajaClient
    payments: PaymentService
    settlement: SettlementWorker
    watchdog: Watchdog


SERVICES = web.AppKey("services", Services)


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


def create_app(
    settings: Settings, runtime: Runtime | None = None, *, daraja: DarajaClient | None = None
) -> web.Application:
    """Build the whole application for ``settings`` (tests may pass a runtime or a Daraja client)."""
    runtime = runtime or build_runtime(settings)
    secret_key = ensure_secret_key(settings)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    runtime.components.setdefault("bot", "disabled")
    setup_health(app, runtime)

    settlement = SettlementWorker(runtime)
    intake = CallbackIntake(runtime, secret_key, on_stored=settlement.notify)
    setup_mpesa_callbacks(app, intake, settings)
    if settings.local_mode and settings.mpesa_api_base_url is None:
        from simulators.daraja import create_app as create_daraja_simulator

        app.add_subapp("/sim/daraja", create_daraja_simulator())

    async def runtime_ctx(_app: web.Application) -> AsyncIterator[None]:
        await prepare_database(runtime, auto_upgrade=settings.local_mode)
        yield
        await intake.close()
        await runtime.close()

    async def payments_ctx(app: web.Application) -> AsyncIterator[None]:
        client = daraja or DarajaClient.from_settings(settings)
        payments = PaymentService(runtime, client, secret_key, on_change=lambda _id: runtime.wake("payments"))
        watchdog = Watchdog(runtime, client, payments)
        if settings.mpesa_confirm_with_query:
            settlement.confirm = client.stk_query
        app[SERVICES] = Services(runtime, client, payments, settlement, watchdog)
        stop = asyncio.Event()
        settler = asyncio.create_task(settlement.run(stop), name="settlement")
        scheduler = AsyncIOScheduler(timezone="UTC")
        # Property 76: pick up every live attempt at start-up, then every few seconds.
        scheduler.add_job(_guarded(watchdog.tick), "interval", seconds=WATCHDOG_INTERVAL_S,
                          max_instances=1, coalesce=True, next_run_time=_now())
        scheduler.start()
        yield
        scheduler.shutdown(wait=False)
        stop.set()
        runtime.wake("settlement")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(settler, 5)
        if daraja is None:
            await client.aclose()

    app.cleanup_ctx.append(runtime_ctx)
    app.cleanup_ctx.append(payments_ctx)
    return app


def _guarded(job):  # type: ignore[no-untyped-def]
    async def run() -> None:
        try:
            await job()
        except Exception:  # a failing tick must not kill the scheduler; the next one retries
            log.exception("background job failed", extra={"job": getattr(job, "__qualname__", "job")})

    return run


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)
