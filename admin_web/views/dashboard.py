"""``GET /admin/``: the dashboard (today / 7 / 30 days, chart, work waiting)."""

from __future__ import annotations

from aiohttp import web

from admin_web.charts import as_data_uri, daily_revenue_and_success_svg
from admin_web.context import active_environment, runtime
from admin_web.pages import audited_read, bad_input, render
from core.services.reporting.dashboard import dashboard as dashboard_figures

routes = web.RouteTableDef()

ENVIRONMENTS = ("production", "sandbox", "simulator")


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    active = await active_environment(request)
    environment = request.query.get("environment") or active  # empty: the default
    if environment not in ENVIRONMENTS:
        message = "Unknown environment: choose production, sandbox or simulator."
        return await bad_input(request, "dashboard.html", message, _choices(active, active))
    await audited_read(request, {"environment": environment})
    figures = await dashboard_figures(runtime(request), environment=environment)
    chart = as_data_uri(daily_revenue_and_success_svg(figures.days))
    return await render(request, "dashboard.html", {"figures": figures, "chart": chart,
                                                    **_choices(environment, active)})


def _choices(environment: str, active: str) -> dict[str, object]:
    return {"selected_environment": environment, "active_environment": active, "environments": ENVIRONMENTS}
