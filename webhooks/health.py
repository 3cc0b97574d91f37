"""``GET /healthz``: 200 only when the database answers and every started component is up."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from core.db.engine import ping
from core.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
DB_PING_TIMEOUT_S = 2.0
HEALTHY_COMPONENT_STATES = frozenset({"ok", "disabled"})


async def healthz(request: web.Request) -> web.Response:
    """Report database and component status; 503 names what is wrong."""
    runtime = request.app[RUNTIME]
    report: dict[str, str] = {}
    try:
        await asyncio.wait_for(ping(runtime.engine), DB_PING_TIMEOUT_S)
        report["database"] = "ok"
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        report["database"] = f"error: {type(exc).__name__}"
    report.update(runtime.components)
    healthy = all(value == "ok" or value in HEALTHY_COMPONENT_STATES for value in report.values())
    status = 200 if healthy else 503
    return web.json_response({"status": "ok" if healthy else "unavailable", **report}, status=status)


def setup_health(app: web.Application, runtime: Runtime) -> None:
    """Register ``/healthz`` on ``app``."""
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
