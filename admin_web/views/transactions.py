"""Admin pages: the transaction list, its streamed CSV export and one attempt's detail.

Thin views: parse the query, one service call (core.services.reporting), render. Every view
that shows payment data writes an admin-access audit entry first (Property 69).
"""

from __future__ import annotations

from aiohttp import web

from admin_web.context import active_environment, runtime
from admin_web.pages import audited_read, render
from admin_web.security import streaming_headers
from core.domain.states import PaymentStatus
from core.services.reporting import transaction_detail, transactions, transactions_csv

routes = web.RouteTableDef()


async def _parsed(request: web.Request) -> transactions.ParsedFilter:
    return transactions.parse_filter(request.query, active_environment=await active_environment(request))


def _list_context(page: transactions.TransactionPage, parsed: transactions.ParsedFilter) -> dict[str, object]:
    return {
        "page": page,
        "raw": parsed.raw,
        "errors": page.errors,
        "statuses": [s.value for s in PaymentStatus],
        "environments": transactions.ENVIRONMENTS,
    }


@routes.get("/transactions")
async def transaction_list(request: web.Request) -> web.Response:
    parsed = await _parsed(request)
    if not parsed.errors:
        await audited_read(request, transactions.audit_filters(parsed.filter))
    page = await transactions.transactions_page(runtime(request).uow, parsed)
    status = 400 if page.errors else 200
    return await render(request, "transactions/list.html", _list_context(page, parsed), status=status)


@routes.get("/transactions.csv")
async def transaction_csv(request: web.Request) -> web.StreamResponse:
    parsed = await _parsed(request)
    export = await transactions_csv.open_export(runtime(request).uow, parsed)
    if export.errors:
        page = transactions.TransactionPage(filter=parsed.filter, errors=export.errors)
        return await render(request, "transactions/list.html", _list_context(page, parsed), status=400)
    await audited_read(request, transactions.audit_filters(parsed.filter))
    response = web.StreamResponse(
        headers={
            **streaming_headers(),
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{export.filename}"',
        }
    )
    await response.prepare(request)
    async for chunk in export.chunks():
        await response.write(chunk.encode("utf-8"))
    await response.write_eof()
    return response


@routes.get("/transactions/{id}")
async def transaction(request: web.Request) -> web.Response:
    raw_id = request.match_info["id"]
    if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 10 or int(raw_id) > 2**31 - 1:
        raise web.HTTPNotFound(text="There is no such payment attempt.")
    detail = await transaction_detail.detail_of(runtime(request).uow, int(raw_id))
    if detail is None:
        raise web.HTTPNotFound(text="There is no such payment attempt.")
    await audited_read(request, {"attempt_id": detail.row.id})
    return await render(request, "transactions/detail.html", {"d": detail})
