"""``GET /admin/notifications``: notifications that failed for good, with their error;
``POST /admin/notifications/{id}`` with ``action=send_again`` puts one back in the outbox."""

from __future__ import annotations

from aiohttp import web

from admin_web.context import PREFIX, current_admin, runtime
from admin_web.pages import audited_read, bad_input, flash, render
from admin_web.people_forms import parse_choice, parse_page, text
from admin_web.security import see_other
from core.services.notifications import notify
from core.templates import CHANNELS

routes = web.RouteTableDef()
TEMPLATE = "notifications.html"
CHANNEL_CHOICES = tuple(sorted(CHANNELS))


@routes.get("/notifications")
async def failed_notifications(request: web.Request) -> web.Response:
    try:
        channel = parse_choice(request.query.get("channel"), CHANNEL_CHOICES, "channel")
        page = parse_page(request.query.get("page"))
    except ValueError as exc:
        return await bad_input(request, TEMPLATE, str(exc), {"channels": CHANNEL_CHOICES, "channel": ""})
    return await _show(request, channel=channel, page=page)


@routes.post(r"/notifications/{outbox_id:\d{1,9}}")
async def send_again(request: web.Request) -> web.Response:
    outbox_id = int(request.match_info["outbox_id"])
    action = text((await request.post()).get("action"))
    if action != "send_again":
        return await _show(request, error="Unknown action: nothing was changed.", status=400)
    try:
        await notify.send_again(runtime(request), outbox_id, actor=f"admin:{current_admin(request).id}")
    except notify.SendAgainRefused as exc:
        return await _show(request, error=str(exc), status=409)
    await flash(request, f"Notification {outbox_id} is queued again; it goes out within seconds.")
    return see_other(f"{PREFIX}/notifications")


async def _show(
    request: web.Request, *, channel: str = "", page: int = 1, error: str | None = None, status: int = 200
) -> web.Response:
    await audited_read(request, {"channel": channel, "page": page})
    result = await notify.failed_notice_page(runtime(request), page=page, channel=channel or None)
    context = {"page": result, "channel": channel, "channels": CHANNEL_CHOICES, "error": error}
    return await render(request, TEMPLATE, context, status=status)
