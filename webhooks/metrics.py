"""``GET /metrics``: operational counts in the Prometheus text format (no personal data)."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from core.runtime import Runtime
from core.services.ops.metrics import collect, render_prometheus

RUNTIME = web.AppKey("metrics_runtime", Runtime)
CONTENT_TYPE = "text/plain"  # Prometheus text exposition format 0.0.4
log = logging.getLogger(__name__)


async def metrics(request: web.Request) -> web.Response:
    """Counts by state; 503 when the database cannot be read."""
    try:
        snapshot = await collect(request.app[RUNTIME])
    except (SQLAlchemyError, OSError) as exc:
        log.warning("metrics unavailable", extra={"error": type(exc).__name__})
        return web.Response(status=503, text="database unavailable\n", content_type=CONTENT_TYPE)
    return web.Response(
        text=render_prometheus(snapshot),
        content_type=CONTENT_TYPE,
        headers={"X-Content-Type-Options": "nosniff"},
    )


def setup_metrics(app: web.Application, runtime: Runtime) -> None:
    """Register ``/metrics`` on ``app``."""
    app[RUNTIME] = runtime
    app.router.add_get("/metrics", metrics)
