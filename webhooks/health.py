"""``GET /healthz``: 200 only when the database answers and every started component is up.

Anyone gets the verdict alone (``{"status": "ok"}`` / 503 ``{"status": "unavailable"}``);
the parts and what is wrong with them are shown only to callers that may read operational
details (``webhooks/ops_access.py``: local mode, or the ``METRICS_TOKEN`` bearer), with the
process's ``role`` (``all``, ``web`` or ``worker``), what it ``runs`` and how wake-ups reach it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from core.db.engine import ping
from core.runtime import Runtime
from webhooks.ops_access import OpsAccess, ops_access

RUNTIME = web.AppKey("runtime", Runtime)
DB_PING_TIMEOUT_S = 2.0
HEALTHY_COMPONENT_STATES = frozenset({"ok", "disabled"})


async def health_report(runtime: Runtime) -> dict[str, str]:
    """Database and component states ("ok", "disabled", or what is wrong)."""
    report: dict[str, str] = {}
    try:
        await asyncio.wait_for(ping(runtime.engine), DB_PING_TIMEOUT_S)
        report["database"] = "ok"
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        report["database"] = f"error: {type(exc).__name__}"
    report.update(runtime.components)
    return report


async def healthz(request: web.Request) -> web.Response:
    """The verdict for everyone; the details for callers allowed to see them."""
    runtime = request.app[RUNTIME]
    report = await health_report(runtime)
    healthy = all(value in HEALTHY_COMPONENT_STATES for value in report.values())
    body: dict[str, object] = {"status": "ok" if healthy else "unavailable"}
    if ops_access(request, runtime.settings) is OpsAccess.GRANTED:
        body.update(report)
        body["process"] = process_details(runtime.process)
    return web.json_response(body, status=200 if healthy else 503, headers={"Cache-Control": "no-store"})


def process_details(process: dict[str, str]) -> dict[str, object]:
    """Which role answers, what it runs and how wake-ups reach it (no personal data)."""
    details: dict[str, object] = {"role": process.get("role", "all")}
    details["runs"] = [part for part in process.get("runs", "").split(",") if part]
    details["wake"] = process.get("wake", "in-process")
    if "telegram_polling" in process:  # a worker among several: holds the polling lease or stands by
        details["telegram_polling"] = process["telegram_polling"]
    return details


def setup_health(app: web.Application, runtime: Runtime) -> None:
    """Register ``/healthz`` on ``app``."""
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
