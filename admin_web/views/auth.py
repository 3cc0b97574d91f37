"""``GET|POST /admin/login`` and ``POST /admin/logout``."""

from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from admin_web.context import PREFIX, current_admin, runtime
from admin_web.formatting import nairobi_time
from admin_web.pages import render
from admin_web.security import EXPIRED, client_ip, csrf_ok, safe_next, see_other, start_admin_session
from core.services.ops import admins

routes = web.RouteTableDef()

WRONG = "Wrong username or password."
STALE_FORM = "The form was out of date. Please try again."
EXPIRED_NOTICE = "Your session expired. Please sign in again."
MAX_USERNAME = 200


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    expired = (await get_session(request)).pop(EXPIRED, False)
    context = {"next": safe_next(request.query.get("next")), "notice": EXPIRED_NOTICE if expired else None}
    return await render(request, "login.html", context)


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    next_url = safe_next(_text(form.get("next")))
    if not await csrf_ok(request):
        return await render(request, "login.html", {"next": next_url, "error": STALE_FORM}, status=403)
    username, password = _text(form.get("username")).strip(), _text(form.get("password"))
    if not username or not password or len(username) > MAX_USERNAME:
        return await render(request, "login.html", {"next": next_url, "error": WRONG}, status=401)
    outcome = await admins.login(
        runtime(request), username=username, password=password, ip=client_ip(request)
    )
    if outcome.ok and outcome.admin_id is not None:
        await start_admin_session(request, outcome.admin_id)
        return see_other(next_url)
    if outcome.locked_until is not None:
        message = (
            "Too many failed sign-in attempts. Signing in is paused until "
            f"{nairobi_time(outcome.locked_until)} (Nairobi time)."
        )
        return await render(request, "login.html", {"next": next_url, "error": message}, status=429)
    return await render(request, "login.html", {"next": next_url, "error": WRONG}, status=401)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    await admins.logout(runtime(request), admin_id=current_admin(request).id)
    (await get_session(request)).invalidate()
    return see_other(f"{PREFIX}/login")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
