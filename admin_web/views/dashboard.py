"""``GET /admin/``: the dashboard (today / 7 / 30 days, chart, work waiting)."""

from __future__ import annotations

from aiohttp import web

from admin_web.pages import audited_read, render

routes = web.RouteTableDef()


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    await audited_read(request, {})
    return await render(request, "dashboard.html", {})
