"""``/admin/audit``: browse the audit trail, verify its hash chain, export it as JSONL (Property 70)."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from admin_web.context import PREFIX, current_admin, runtime
from admin_web.pages import audited_read, bad_input, flash, render
from admin_web.security import see_other, streaming_headers
from core.services.audit.browse import (
    AuditFilterError,
    AuditPage,
    browse_audit,
    export_audit,
    parse_audit_filter,
    verify_audit_chain,
)

routes = web.RouteTableDef()
TEMPLATE = "audit.html"


@routes.get("/audit")
async def audit_page(request: web.Request) -> web.Response:
    try:
        filters = parse_audit_filter(request.query)
    except AuditFilterError as exc:
        return await bad_input(request, TEMPLATE, str(exc), {"page": None, "query": request.query})
    await audited_read(request, {**filters.as_dict(), "before": filters.before})
    page = await browse_audit(runtime(request), filters)
    return await render(request, TEMPLATE, {"page": page, "query": filters.as_dict(), **_links(page)})


@routes.post("/audit/verify")
async def verify(request: web.Request) -> web.Response:
    result = await verify_audit_chain(runtime(request), admin_id=current_admin(request).id)
    if result.ok:
        await flash(request, f"Audit chain OK: {result.count} entries verified.")
    else:
        await flash(request, f"Audit chain BROKEN at entry #{result.first_broken_seq}: {result.reason}.")
    return see_other(f"{PREFIX}/audit")


@routes.get("/audit.jsonl")
async def export(request: web.Request) -> web.StreamResponse:
    await audited_read(request, {})
    stamp = runtime(request).clock().strftime("%Y%m%d-%H%M%S")
    response = web.StreamResponse(
        headers={
            **streaming_headers(),
            "Content-Type": "application/x-ndjson; charset=utf-8",
            "Content-Disposition": f'attachment; filename="audit-{stamp}.jsonl"',
        }
    )
    await response.prepare(request)
    await export_audit(runtime(request), response.write)
    await response.write_eof()
    return response


def _links(page: AuditPage) -> dict[str, str | None]:
    base = page.filters.as_dict()
    older = f"{PREFIX}/audit?{urlencode({**base, 'before': page.rows[-1].seq})}" if page.has_next else None
    newest = f"{PREFIX}/audit?{urlencode(base)}" if page.filters.before is not None else None
    return {"previous_url": newest, "next_url": older}
