"""``GET /admin/clients`` (search by name or the last 4+ phone digits, paged), ``GET /admin/clients/{id}``
(their bookings and payments; an audited read, Property 69) and ``POST /admin/clients/{id}/forget``
(Property 49; needs the ``confirm`` box ticked). Phones are shown by their last four digits only."""

from __future__ import annotations

from aiohttp import web

from admin_web.context import PREFIX, current_admin, runtime
from admin_web.pages import audited_read, bad_input, flash, render
from admin_web.people_forms import parse_page, text
from admin_web.security import see_other
from core.services.ops import client_records, privacy
from core.services.ops.client_records import QUERY_MAX, ClientRecordsError

routes = web.RouteTableDef()
CLIENT_ID = r"{client_id:\d{1,9}}"


@routes.get("/clients")
async def clients(request: web.Request) -> web.Response:
    raw_query = request.query.get("q", "")
    try:
        query = client_records.check_query(raw_query)
        page = parse_page(request.query.get("page"))
    except ValueError as exc:  # ClientRecordsError is one
        return await bad_input(request, "clients.html", str(exc), {"query": raw_query[:QUERY_MAX]})
    await audited_read(request, {"q": query, "page": page})
    result = await client_records.client_page(runtime(request), query=query, page=page)
    return await render(request, "clients.html", {"page": result, "query": query})


@routes.get(f"/clients/{CLIENT_ID}")
async def client(request: web.Request) -> web.Response:
    return await _show(request, int(request.match_info["client_id"]))


@routes.post(f"/clients/{CLIENT_ID}/forget")
async def forget(request: web.Request) -> web.Response:
    client_id = int(request.match_info["client_id"])
    confirmed = text((await request.post()).get("confirm")) == "yes"
    actor = f"admin:{current_admin(request).id}"
    try:
        await privacy.forget_client(runtime(request).uow(), client_id, confirmed=confirmed, actor=actor)
    except privacy.PrivacyError as exc:
        return await _show(request, client_id, error=str(exc), status=400)
    await flash(request, f"Client {client_id} was forgotten: personal details erased; money records kept.")
    return see_other(f"{PREFIX}/clients/{client_id}")


async def _show(
    request: web.Request, client_id: int, *, error: str | None = None, status: int = 200
) -> web.Response:
    await audited_read(request, {"client_id": client_id})
    try:
        record = await client_records.client_record(runtime(request), client_id)
    except ClientRecordsError:
        raise web.HTTPNotFound(text=f"There is no client {client_id}.") from None
    context = {"record": record, "client_id": client_id, "error": error}
    return await render(request, "client.html", context, status=status)
