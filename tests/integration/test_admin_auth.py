"""The admin site's gate: sign-in, sessions, CSRF, throttling, safe redirects and headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from core.db.models import AdminLoginFailure, AuditEntry
from core.runtime import Runtime, build_runtime
from core.services.ops.admins import create_admin
from tests.conftest import make_settings
from tests.support.admin import (
    PASSWORD,
    USERNAME,
    AdminSite,
    admin_app,
    admin_site,
    login_form_token,
    sign_in,
)
from tests.support.payments import Clock

START = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
WRONG = "Wrong username or password."
LOCKED = "Too many failed sign-in attempts"
STRONG_SECRET = "UGNcPTHOh4H7RvzVvRQDFhjCl_Ku2N5NWsKldVX9qaY"  # secrets.token_urlsafe(32)


@pytest.fixture
async def clocked(database_url: str) -> AsyncIterator[tuple[Runtime, Clock]]:
    clock = Clock(start=START)
    rt = build_runtime(make_settings(database_url), clock=clock)
    try:
        yield rt, clock
    finally:
        await rt.close()


async def _count(runtime: Runtime, model: type, **where: str) -> int:
    query = select(func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    async with runtime.uow() as uow:
        return int(await uow.session.scalar(query) or 0)


# -- without a session ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/", "/admin/transactions?from=2030-01-01&q=QK1", "/admin/review"])
async def test_a_page_without_a_session_redirects_to_the_login_with_next(runtime: Runtime, path: str) -> None:
    async with TestClient(TestServer(admin_app(runtime))) as client:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303
        location = response.headers["Location"]
        assert location.startswith("/admin/login?next=")
        assert unquote(location.split("next=", 1)[1]) == path


@pytest.mark.parametrize("path", ["/admin/logout", "/admin/review/1", "/admin/settings/mpesa"])
async def test_a_post_without_a_session_is_forbidden(runtime: Runtime, path: str) -> None:
    async with TestClient(TestServer(admin_app(runtime))) as client:
        response = await client.post(path, data={"csrf_token": "x"}, allow_redirects=False)
        assert response.status == 403
        assert "Traceback" not in await response.text()


# -- signing in -----------------------------------------------------------------------------


async def test_the_login_form_has_username_password_and_a_csrf_token(runtime: Runtime) -> None:
    async with TestClient(TestServer(admin_app(runtime))) as client:
        html = await (await client.get("/admin/login")).text()
    assert 'name="username"' in html and 'name="password"' in html
    assert 'type="hidden" name="csrf_token" value="' in html


async def test_signing_in_goes_to_the_dashboard_with_a_new_session(runtime: Runtime) -> None:
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with TestClient(TestServer(admin_app(runtime))) as client:
        await client.get("/admin/login")
        before = _cookie(client)
        response = await sign_in(client, USERNAME, PASSWORD)
        assert response.status == 303 and response.headers["Location"] == "/admin/"
        assert _cookie(client) != before  # the pre-login session is replaced (rotated)
        assert (await client.get("/admin/", allow_redirects=False)).status == 200
    assert await _count(runtime, AuditEntry, action="admin.login") == 1


async def test_wrong_password_and_unknown_user_get_the_same_page(runtime: Runtime) -> None:
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with TestClient(TestServer(admin_app(runtime))) as client:
        wrong = await sign_in(client, USERNAME, "not the password")
        unknown = await sign_in(client, "nobody-here", "not the password")
        assert wrong.status == unknown.status == 401
        wrong_html, unknown_html = await wrong.text(), await unknown.text()
        assert (await client.get("/admin/", allow_redirects=False)).status == 303
    assert WRONG in wrong_html and WRONG in unknown_html
    assert _without_token(wrong_html) == _without_token(unknown_html)


@pytest.mark.parametrize(
    ("next_value", "expected"),
    [
        ("/admin/transactions?status=PAID", "/admin/transactions?status=PAID"),
        ("//evil.example/admin/", "/admin/"),
        ("https://evil.example/admin/", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("/sim/", "/admin/"),
        ("/admin/../sim/", "/admin/"),
        ("/admin/%2e%2e/sim/", "/admin/"),
        ("/admin/login", "/admin/"),
        ("javascript:alert(1)", "/admin/"),
        ("", "/admin/"),
    ],
)
async def test_after_login_only_a_local_admin_next_is_followed(
    runtime: Runtime, next_value: str, expected: str
) -> None:
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with TestClient(TestServer(admin_app(runtime))) as client:
        response = await sign_in(client, USERNAME, PASSWORD, next=next_value)
        assert response.status == 303
        assert response.headers["Location"] == expected


async def test_login_without_the_forms_csrf_token_is_refused(runtime: Runtime) -> None:
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with TestClient(TestServer(admin_app(runtime))) as client:
        await client.get("/admin/login")
        response = await client.post(
            "/admin/login", data={"username": USERNAME, "password": PASSWORD, "csrf_token": "forged"},
            allow_redirects=False,
        )
        assert response.status == 403
        assert (await client.get("/admin/", allow_redirects=False)).status == 303
    assert await _count(runtime, AuditEntry, action="admin.login") == 0


# -- CSRF on every POST ---------------------------------------------------------------------


@pytest.mark.parametrize("token", [False, "wrong-token", ""])
async def test_a_post_without_the_sessions_csrf_token_is_forbidden_and_changes_nothing(
    admin: AdminSite, token: bool | str
) -> None:
    entries = await _count(admin.runtime, AuditEntry)
    response = await admin.post("/admin/logout", csrf=token)
    assert response.status == 403
    assert await _count(admin.runtime, AuditEntry) == entries
    assert (await admin.get("/admin/")).status == 200  # still signed in: the logout did not happen


async def test_logout_ends_the_session_even_for_a_copied_cookie(admin: AdminSite) -> None:
    copied = dict(admin.client.session.cookie_jar.filter_cookies(admin.client.make_url("/admin/")))
    response = await admin.post("/admin/logout")
    assert response.status == 303 and response.headers["Location"] == "/admin/login"
    assert (await admin.get("/admin/")).status == 303
    replay = await admin.client.get("/admin/", cookies=copied, allow_redirects=False)
    assert replay.status == 303  # sessions issued before the logout are revoked in the database


# -- throttling -----------------------------------------------------------------------------


async def test_five_failures_lock_the_account_for_fifteen_minutes(clocked: tuple[Runtime, Clock]) -> None:
    runtime, clock = clocked
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with TestClient(TestServer(admin_app(runtime))) as client:
        statuses = []
        for _ in range(5):
            statuses.append((await sign_in(client, USERNAME, "wrong password!")).status)
            clock.advance(60)
        assert statuses == [401, 401, 401, 401, 429]  # the fifth failure says the lock started
        locked = await sign_in(client, USERNAME, PASSWORD)  # even the right password waits
        assert locked.status == 429 and LOCKED in await locked.text()
        clock.advance(13 * 60)  # now +18 min; the fifth failure was at +4 min: locked until +19 min
        assert (await sign_in(client, USERNAME, PASSWORD)).status == 429
        clock.advance(61)
        assert (await sign_in(client, USERNAME, PASSWORD)).status == 303
    assert await _count(runtime, AuditEntry, action="admin.login_failed") == 5
    assert await _count(runtime, AuditEntry, action="admin.login_locked") >= 1


async def test_failures_spread_over_more_than_fifteen_minutes_do_not_lock(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with TestClient(TestServer(admin_app(runtime))) as client:
        for _ in range(6):
            assert (await sign_in(client, USERNAME, "wrong password!")).status == 401
            clock.advance(4 * 60)
        assert (await sign_in(client, USERNAME, PASSWORD)).status == 303


async def test_an_unknown_user_locks_like_a_real_one(clocked: tuple[Runtime, Clock]) -> None:
    runtime, _clock = clocked
    async with TestClient(TestServer(admin_app(runtime))) as client:
        statuses = [(await sign_in(client, "ghost", "wrong password!")).status for _ in range(6)]
    assert statuses == [401] * 4 + [429] * 2


async def test_five_failures_from_one_address_lock_every_account_from_it(
    clocked: tuple[Runtime, Clock],
) -> None:
    runtime, clock = clocked
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with TestClient(TestServer(admin_app(runtime))) as client:
        for number in range(4):  # different accounts, one address
            assert (await sign_in(client, f"guess{number}", "wrong password!")).status == 401
        assert (await sign_in(client, "guess4", "wrong password!")).status == 429
        response = await sign_in(client, USERNAME, PASSWORD)
        assert response.status == 429
        assert await _count(runtime, AdminLoginFailure, ip="127.0.0.1") == 5
        clock.advance(15 * 60 + 1)
        assert (await sign_in(client, USERNAME, PASSWORD)).status == 303


async def test_the_lock_holds_across_processes(clocked: tuple[Runtime, Clock]) -> None:
    runtime, clock = clocked
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with TestClient(TestServer(admin_app(runtime))) as first:
        for _ in range(5):
            await sign_in(first, USERNAME, "wrong password!")
    other = build_runtime(runtime.settings, clock=clock)  # another process on the same database
    try:
        async with TestClient(TestServer(admin_app(other))) as second:
            assert (await sign_in(second, USERNAME, PASSWORD)).status == 429
    finally:
        await other.close()


# -- session expiry -------------------------------------------------------------------------


async def test_a_session_idle_for_thirty_minutes_ends(clocked: tuple[Runtime, Clock]) -> None:
    runtime, clock = clocked
    async with admin_site(runtime) as site:
        clock.advance(29 * 60)
        assert (await site.get("/admin/")).status == 200  # activity restarts the idle timer
        clock.advance(29 * 60)
        assert (await site.get("/admin/")).status == 200
        clock.advance(30 * 60 + 1)
        response = await site.get("/admin/")
        assert response.status == 303 and response.headers["Location"].startswith("/admin/login")
        login_page = await (await site.get(response.headers["Location"])).text()
        assert "Your session expired. Please sign in again." in login_page
        assert (await site.get("/admin/")).status == 303  # and it stays over


async def test_a_session_ends_twelve_hours_after_login_however_active(clocked: tuple[Runtime, Clock]) -> None:
    runtime, clock = clocked
    async with admin_site(runtime) as site:
        for _ in range(24):  # active every 29 minutes for 11.6 hours
            clock.advance(29 * 60)
            assert (await site.get("/admin/")).status == 200
        clock.advance(29 * 60)  # 12.08 hours after signing in
        assert (await site.get("/admin/")).status == 303


# -- headers and errors ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/", "/admin/login", "/admin/no-such-page"])
async def test_every_admin_page_sends_the_security_headers(admin: AdminSite, path: str) -> None:
    response = await admin.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_session_cookie_is_httponly_strict_and_scoped_to_admin(runtime: Runtime) -> None:
    async with TestClient(TestServer(admin_app(runtime))) as client:
        header = (await client.get("/admin/login")).headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/admin" in header
    assert "Secure" not in header  # plain http in local mode; https sets it (next test)


async def test_the_session_cookie_is_secure_and_hsts_is_sent_behind_https(database_url: str) -> None:
    settings = make_settings(database_url, PUBLIC_BASE_URL="https://pay.example.org")
    rt = build_runtime(settings)
    try:
        async with TestClient(TestServer(admin_app(rt))) as client:
            response = await client.get("/admin/login")
        assert "Secure" in response.headers["Set-Cookie"]
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        await rt.close()


async def test_an_unknown_page_is_a_plain_404(admin: AdminSite) -> None:
    response = await admin.get("/admin/no-such-page")
    assert response.status == 404
    assert "Page not found" in await response.text()


def _cookie(client: TestClient) -> str:
    return next(c.value for c in client.session.cookie_jar if c.key == "ss_admin")


def _without_token(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", html)


@pytest.mark.parametrize("mode", ["simulator", "sandbox"])
async def test_the_application_serves_the_admin_site_in_every_mode(database_url: str, mode: str) -> None:
    from smiling_steps.app import create_app

    extra = {} if mode == "simulator" else {
        "MPESA_ENVIRONMENT": "sandbox", "MPESA_CONSUMER_KEY": "k", "MPESA_CONSUMER_SECRET": "s"
    }
    rt = build_runtime(make_settings(database_url, SECRET_KEY=STRONG_SECRET, **extra))
    app = create_app(rt.settings, rt, with_bot=False, with_notifications=False)
    async with TestClient(TestServer(app)) as client:
        home = await client.get("/", allow_redirects=False)
        bare = await client.get("/admin", allow_redirects=False)
        page = await client.get("/admin/", allow_redirects=False)
        form = await client.get("/admin/login")
        form_html = await form.text()
    assert home.headers["Location"] == ("/sim/" if mode == "simulator" else "/admin/")
    assert bare.status == 303 and bare.headers["Location"] == "/admin/"
    assert page.status == 303 and page.headers["Location"].startswith("/admin/login?next=")
    assert form.status == 200 and 'name="csrf_token"' in form_html


async def _sign_in_from(client: TestClient, forwarded_for: str, username: str, password: str) -> int:
    form = {"username": username, "password": password, "csrf_token": await login_form_token(client)}
    response = await client.post(
        "/admin/login", data=form, headers={"X-Forwarded-For": forwarded_for}, allow_redirects=False
    )
    return response.status


async def test_behind_a_trusted_proxy_the_forwarded_address_is_throttled(database_url: str) -> None:
    settings = make_settings(database_url, MPESA_TRUSTED_PROXIES="127.0.0.1/32")
    rt = build_runtime(settings, clock=Clock(start=START))
    try:
        await create_admin(rt.uow(), username=USERNAME, password=PASSWORD)
        async with TestClient(TestServer(admin_app(rt))) as client:
            for number in range(5):
                await _sign_in_from(client, "203.0.113.5", f"guess{number}", "wrong password!")
            assert await _sign_in_from(client, "203.0.113.5", USERNAME, PASSWORD) == 429
            # another person behind the same proxy is not locked out
            assert await _sign_in_from(client, "198.51.100.7", USERNAME, PASSWORD) == 303
        assert await _count(rt, AdminLoginFailure, ip="203.0.113.5") == 5
    finally:
        await rt.close()
