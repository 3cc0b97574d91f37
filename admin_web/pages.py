"""Rendering for admin views: templates with the layout's context, messages, error pages,
and the audited read every view of payment data calls (Property 69).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from admin_web.context import PREFIX, active_environment, current_admin, runtime, signed_in_admin
from admin_web.security import Handler, csrf_token
from core.domain.phone import is_valid_phone, mask_phone
from core.services import audit

log = logging.getLogger(__name__)

# The layout's navigation: every page of the site (docs/admin.md).
NAV: tuple[tuple[str, str], ...] = (
    ("Dashboard", f"{PREFIX}/"),
    ("Transactions", f"{PREFIX}/transactions"),
    ("Review", f"{PREFIX}/review"),
    ("Reconciliation", f"{PREFIX}/reconciliation"),
    ("Audit", f"{PREFIX}/audit"),
    ("Notifications", f"{PREFIX}/notifications"),
    ("Settings", f"{PREFIX}/settings"),
    ("Test summary", f"{PREFIX}/test-summary"),
    ("Practitioners", f"{PREFIX}/practitioners"),
    ("Clients", f"{PREFIX}/clients"),
)
_FLASH = "flash"
_STATUS_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Page not found", 405: "Not allowed",
                  413: "Too large", 500: "Something went wrong"}


async def render(
    request: web.Request, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    """Render ``template`` (which extends ``base.html``); ``error``/``notice`` show as messages."""
    return aiohttp_jinja2.render_template(template, request, dict(context or {}), status=status)


async def bad_input(
    request: web.Request, template: str, message: str, context: Mapping[str, Any] | None = None
) -> web.Response:
    """The page again with a clear message, status 400, nothing changed."""
    return await render(request, template, {**(context or {}), "error": message}, status=400)


async def flash(request: web.Request, message: str) -> None:
    """A one-time message shown on the next page (after a POST → 303 → GET)."""
    session = await get_session(request)
    session[_FLASH] = [*session.get(_FLASH, []), message][-5:]


async def layout_context(request: web.Request) -> dict[str, Any]:
    """What base.html needs on every page (an aiohttp-jinja2 context processor)."""
    session = await get_session(request)
    messages = session.pop(_FLASH, []) if signed_in_admin(request) else []
    environment = await active_environment(request)  # the mode saved on the settings page wins
    return {
        "admin": signed_in_admin(request),
        "csrf_token": await csrf_token(request),
        "nav": NAV,
        "current_path": request.path,
        "flashes": messages,
        "test_mode": environment != "production",
        "environment": environment,
    }


async def audited_read(request: web.Request, filters: Mapping[str, Any] | None = None) -> None:
    """Audit that the signed-in admin viewed this route with these filters (Property 69).

    Call it in every view that shows payment data, after validating the input. Phone numbers
    among the filter values are kept as their last four digits.
    """
    safe = {key: _without_phone(value) for key, value in (filters or {}).items()}
    async with runtime(request).uow() as uow:
        await audit.record_admin_access(
            uow.session, admin_id=current_admin(request).id, what=request.path, filters=safe
        )
        await uow.commit()


def _without_phone(value: Any) -> Any:
    if isinstance(value, str) and sum(ch.isdigit() for ch in value) >= 9 and is_valid_phone(value):
        return mask_phone(value)
    return value


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors as plain pages; any other exception → a 500 page, logged, no traceback shown."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return await _error_page(request, exc.status, _reason(exc))
    except Exception:
        log.exception("admin view failed", extra={"path": request.path, "method": request.method})
        return await _error_page(request, 500, "The page could not be shown. The error has been logged.")


def _reason(exc: web.HTTPException) -> str:
    text = exc.text or ""
    if not text or text.startswith(f"{exc.status}:"):  # aiohttp's default body
        return _STATUS_TITLES.get(exc.status, exc.reason)
    return text


async def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    title = _STATUS_TITLES.get(status, "Error")
    try:
        return await render(request, "error.html", {"title": title, "message": message}, status=status)
    except Exception:  # the layout itself failed (e.g. the database is down): plain text
        log.exception("admin error page failed", extra={"path": request.path})
        return web.Response(status=status, text=f"{title}: {message}")
