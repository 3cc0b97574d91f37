"""``GET /metrics``: operational counts in the Prometheus text format (no personal data).

Readable in local mode, and otherwise only with ``Authorization: Bearer <METRICS_TOKEN>``
(``webhooks/ops_access.py``): a wrong or missing token is 401; outside local mode without
``METRICS_TOKEN`` configured the route answers 403 saying so. The counts are the shared
database's (the same from every process); ``smiling_steps_process_info`` and
``smiling_steps_process_runs`` say which role answered and what it runs (``serve --role``).
"""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from core.runtime import Runtime
from core.services.ops.metrics import collect, render_prometheus
from webhooks.ops_access import OpsAccess, ops_access

RUNTIME = web.AppKey("metrics_runtime", Runtime)
CONTENT_TYPE = "text/plain"  # Prometheus text exposition format 0.0.4
log = logging.getLogger(__name__)
NOT_CONFIGURED = "forbidden: /metrics is off outside local mode until METRICS_TOKEN is set\n"
BAD_TOKEN = "unauthorized: send Authorization: Bearer <METRICS_TOKEN>\n"


async def metrics(request: web.Request) -> web.Response:
    """Counts by state; 503 when the database cannot be read."""
    access = ops_access(request, request.app[RUNTIME].settings)
    if access is OpsAccess.NOT_CONFIGURED:
        return web.Response(status=403, text=NOT_CONFIGURED, content_type=CONTENT_TYPE)
    if access is OpsAccess.BAD_TOKEN:
        return web.Response(
            status=401, text=BAD_TOKEN, content_type=CONTENT_TYPE,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    try:
        snapshot = await collect(request.app[RUNTIME])
    except (SQLAlchemyError, OSError) as exc:
        log.warning("metrics unavailable", extra={"error": type(exc).__name__})
        return web.Response(status=503, text="database unavailable\n", content_type=CONTENT_TYPE)
    return web.Response(
        text=render_prometheus(snapshot) + process_lines(request.app[RUNTIME].process),
        content_type=CONTENT_TYPE,
        headers={"X-Content-Type-Options": "nosniff"},
    )


def process_lines(process: dict[str, str]) -> str:
    """This process's role, wake-up signal and parts, as Prometheus gauges (always 1)."""
    role = process.get("role", "all")
    wake = process.get("wake", "in-process")
    parts = [p for p in process.get("runs", "").split(",") if p]
    lines = [
        "# HELP smiling_steps_process_info The role of the process that answered (serve --role).",
        "# TYPE smiling_steps_process_info gauge",
        f'smiling_steps_process_info{{role="{role}",wake="{wake}"}} 1',
        "# HELP smiling_steps_process_runs 1 for each part this process runs.",
        "# TYPE smiling_steps_process_runs gauge",
        *(f'smiling_steps_process_runs{{part="{part}"}} 1' for part in sorted(parts)),
    ]
    return "\n".join(lines) + "\n"


def setup_metrics(app: web.Application, runtime: Runtime) -> None:
    """Register ``/metrics`` on ``app``."""
    app[RUNTIME] = runtime
    app.router.add_get("/metrics", metrics)
