"""Sessions, sign-in check, CSRF and security headers for every ``/admin`` response.

Middleware order (outermost first): headers → errors (admin_web.pages) → session → auth.
The session is an encrypted cookie (docs/admin.md says why); it carries the admin id, a
CSRF token and two times (issued, last seen) checked against the runtime clock here.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from admin_web.context import PREFIX, runtime, set_current_admin
from core.config import Settings
from core.keys import ADMIN_SESSION_PURPOSE, derive_key
from core.services.ops.admins import AdminIdentity, session_admin
from webhooks.source_address import caller_address

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE_NAME = "ss_admin"
IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
CSRF_FIELD = "csrf_token"
EXPIRED = "expired"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({f"{PREFIX}/login"})
STATIC_PREFIX = f"{PREFIX}/static/"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def session_storage(settings: Settings, secret_key: str) -> EncryptedCookieStorage:
    """Fernet-encrypted cookie: HttpOnly, SameSite=Strict, Secure behind https, path /admin."""
    return EncryptedCookieStorage(
        derive_key(secret_key, ADMIN_SESSION_PURPOSE),
        cookie_name=COOKIE_NAME,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=settings.base_url.lower().startswith("https://"),
        max_age=None,  # a browser-session cookie; the expiry rules below use the runtime clock
    )


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSP without inline script, no framing, no sniffing; pages with data are never cached."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a redirect raised by a view keeps its cookies this way
        _add_headers(request, exc)
        raise
    _add_headers(request, response)
    return response


def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:  # a streamed body (CSV, JSONL) sets its headers before writing
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith(STATIC_PREFIX):
        response.headers["Cache-Control"] = "no-store"
    if runtime(request).settings.base_url.lower().startswith("https://"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")


def streaming_headers() -> dict[str, str]:
    """Headers for a ``web.StreamResponse`` (prepared before the middleware sees it)."""
    return {**SECURITY_HEADERS, "Cache-Control": "no-store"}


@web.middleware
async def require_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No session: GET → 303 to the login page with ``next``, POST → 403; POSTs need the CSRF token."""
    if request.path in PUBLIC_PATHS or request.path.startswith(STATIC_PREFIX):
        return await handler(request)
    session = await get_session(request)
    admin = await _session_owner(request, session)
    if admin is None:
        if request.method in SAFE_METHODS:
            return see_other(f"{PREFIX}/login?next={quote(request.path_qs, safe='')}")
        raise web.HTTPForbidden(text="Not signed in (or the session has expired). Sign in again.")
    if request.method not in SAFE_METHODS and not await csrf_ok(request, session):
        raise web.HTTPForbidden(text="The form was out of date. Reload the page and try again.")
    set_current_admin(request, admin)
    session["seen"] = _now(request).timestamp()
    return await handler(request)


async def _session_owner(request: web.Request, session: Session) -> AdminIdentity | None:
    """The admin of a live session; a session past its idle or absolute limit is emptied."""
    admin_id, issued, seen = session.get("admin_id"), session.get("issued"), session.get("seen")
    if not isinstance(admin_id, int) or not isinstance(issued, float) or not isinstance(seen, float):
        return None
    now = _now(request)
    if now - _at(issued) > ABSOLUTE_TIMEOUT or now - _at(seen) > IDLE_TIMEOUT:
        session.invalidate()
        session[EXPIRED] = True  # the login page says why (and this is all the cookie keeps)
        return None
    admin = await session_admin(runtime(request), admin_id=admin_id, issued_at=_at(issued))
    if admin is None:
        session.invalidate()
    return admin


async def start_admin_session(request: web.Request, admin_id: int) -> None:
    """A brand-new session for a just-signed-in admin (new contents, new CSRF token)."""
    session = await new_session(request)
    now = _now(request).timestamp()
    session.update({"admin_id": admin_id, "issued": now, "seen": now, CSRF_FIELD: _new_token()})


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token (created for a visitor's first page, e.g. the login form)."""
    session = await get_session(request)
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = session[CSRF_FIELD] = _new_token()
    return token


async def csrf_ok(request: web.Request, session: Session | None = None) -> bool:
    """True when the POSTed ``csrf_token`` equals the session's (constant-time comparison)."""
    session = session or await get_session(request)
    expected = session.get(CSRF_FIELD)
    form = await request.post()
    given = form.get(CSRF_FIELD)
    if not isinstance(expected, str) or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def safe_next(value: str | None) -> str:
    """A local ``/admin…`` path to go to after login; anything else (other hosts, schemes) → ``/admin/``."""
    default = f"{PREFIX}/"
    if not value or len(value) > 2000 or any(ch in value for ch in "\\\r\n\t\x00"):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return default
    if parts.path != PREFIX and not parts.path.startswith(f"{PREFIX}/"):
        return default
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):  # /admin/../sim
        return default
    if parts.path == f"{PREFIX}/login":
        return default
    return value


def client_ip(request: web.Request) -> str:
    """The caller's address (X-Forwarded-For believed only from MPESA_TRUSTED_PROXIES)."""
    return caller_address(request, runtime(request).settings.trusted_proxy_networks) or "unknown"


def see_other(location: str) -> web.Response:
    """A 303 redirect returned (not raised), so the session cookie set on it survives."""
    return web.Response(status=303, headers={"Location": location})


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def _now(request: web.Request) -> datetime:
    return runtime(request).clock()


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
