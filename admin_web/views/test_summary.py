"""Admin page: the test-session summary (Property 82): sandbox or simulator payments of a
period with their outcomes and totals. Production money is never part of it (Property 81)."""

from __future__ import annotations

from aiohttp import web

from admin_web.context import active_environment, runtime
from admin_web.pages import audited_read, render
from core.domain.slots import NAIROBI
from core.services.reporting import test_summary, transactions

routes = web.RouteTableDef()


@routes.get("/test-summary")
async def summary(request: web.Request) -> web.Response:
    rt = runtime(request)
    parsed = test_summary.parse_summary_filter(
        request.query,
        active_environment=await active_environment(request),
        today=rt.clock().astimezone(NAIROBI).date(),
    )
    if not parsed.errors:
        await audited_read(request, transactions.audit_filters(parsed.filter))
    result = await test_summary.summary_of(rt.uow, parsed)
    context = {
        "s": result,
        "raw": parsed.raw,
        "errors": result.errors,
        "environments": test_summary.TEST_ENVIRONMENTS,
    }
    return await render(request, "test_summary.html", context, status=400 if result.errors else 200)
