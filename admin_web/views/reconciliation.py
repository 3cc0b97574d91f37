"""``/admin/reconciliation``: compare our payments with M-Pesa by STK Query or an uploaded
statement CSV, flag the discrepancies and show / download the report (Properties 57-59)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin_web.context import active_environment, current_admin, deps, mpesa, runtime
from admin_web.pages import audited_read, bad_input, render
from admin_web.security import streaming_headers
from core.services.reconciliation.reconcile import ENVIRONMENTS, StatementError
from core.services.reconciliation.runs import (
    MAX_UPLOAD_BYTES,
    ReconciliationRequestError,
    check_request,
    report_csv,
    run_reconciliation,
    too_large_message,
)

routes = web.RouteTableDef()
TEMPLATE = "reconciliation.html"


@routes.get("/reconciliation")
async def reconciliation_page(request: web.Request) -> web.StreamResponse:
    token = request.query.get("report")
    if token is not None:
        return await _download(request, token)
    await audited_read(request, {})
    return await render(request, TEMPLATE, await _form_context(request))


@routes.post("/reconciliation")
async def run(request: web.Request) -> web.Response:
    form = await request.post()  # already read (and size-capped) by the CSRF check
    environment = str(form.get("environment") or "") or await active_environment(request)
    use_query = form.get("use_query") == "on"
    try:
        statement = _statement_bytes(form.get("statement"))
        wanted = check_request(environment, statement, use_query)
    except ReconciliationRequestError as exc:
        return await bad_input(request, TEMPLATE, str(exc), await _form_context(request))
    admin_id = current_admin(request).id
    try:
        report = await run_reconciliation(runtime(request), mpesa(request), wanted, admin_id=admin_id)
    except StatementError as exc:  # nothing was read or written
        return await bad_input(
            request, TEMPLATE, f"{exc}. Nothing was changed.", await _form_context(request)
        )
    # The report shows payment data: audit the read once it exists (a refused file changes nothing).
    await audited_read(
        request, {"environment": environment, "statement": statement is not None, "stk_query": use_query}
    )
    token = deps(request).reports.put(admin_id, report)
    return await render(request, TEMPLATE, {**await _form_context(request), "report": report, "token": token})


async def _download(request: web.Request, token: str) -> web.StreamResponse:
    report = deps(request).reports.get(current_admin(request).id, token)
    if report is None:
        message = (
            "That report is no longer available (reports are kept 30 minutes). Run the reconciliation again."
        )
        return await bad_input(request, TEMPLATE, message, await _form_context(request))
    await audited_read(request, {"report": "csv", "environment": report.environment})
    stamp = report.generated_at.strftime("%Y%m%d-%H%M%S")
    return web.Response(
        body=report_csv(report).encode("utf-8"),
        headers={
            **streaming_headers(),
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="reconciliation-{report.environment}-{stamp}.csv"',
        },
    )


def _statement_bytes(field: Any) -> bytes | None:
    """The uploaded file's bytes (None when no file was chosen); at most 5 MB are read."""
    if not isinstance(field, web.FileField):
        if isinstance(field, str) and field:
            raise ReconciliationRequestError("The statement must be uploaded as a file.")
        return None
    data = field.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ReconciliationRequestError(too_large_message())
    if not data and not field.filename:
        return None  # the file input was left empty
    return data


async def _form_context(request: web.Request) -> dict[str, Any]:
    return {
        "environments": ENVIRONMENTS,
        "active": await active_environment(request),
        "max_mb": MAX_UPLOAD_BYTES // (1024 * 1024),
    }
