"""Admin pages: the review queue and an admin's decision on one item.

``GET /admin/review`` lists attempts in NEEDS_REVIEW, PAID attempts flagged after payment
and open refunds due with their evidence; ``POST /admin/review/{id}`` applies
``confirm_booking``, ``refunded``, ``dismiss`` or ``reviewed`` (core.services.review.actions).
A refusal (bad form, stale state) shows the queue again with the reason; nothing changed.
"""

from __future__ import annotations

from aiohttp import web

from admin_web.context import PREFIX, current_admin, runtime
from admin_web.pages import audited_read, flash, render
from admin_web.security import see_other
from core.services.review import actions, queue

routes = web.RouteTableDef()
_STATUS = {"invalid": 400, "not_found": 404, "stale": 409, "refused": 409}


async def _queue_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    await audited_read(request, {})
    items = await queue.queue_of(runtime(request).uow)
    return await render(request, "review.html", {"queue": items, "error": error}, status=status)


@routes.get("/review")
async def review_queue(request: web.Request) -> web.Response:
    return await _queue_page(request)


@routes.post("/review/{id}")
async def review_decision(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        message = await actions.resolve_review_item(
            runtime(request), request.match_info["id"], fields, admin_id=current_admin(request).id
        )
    except actions.ReviewError as exc:
        return await _queue_page(request, error=exc.message, status=_STATUS.get(exc.kind, 400))
    await flash(request, message)
    return see_other(f"{PREFIX}/review")
