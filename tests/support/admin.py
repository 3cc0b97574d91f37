"""A signed-in admin on the admin site, for tests of every admin page (both databases).

    async def test_something(admin: AdminSite) -> None:    # the `admin` fixture (tests/conftest.py), or
    async with admin_site(runtime) as admin:                # any runtime (e.g. one with a Clock)
        response = await admin.get("/admin/transactions?status=PAID")
        response = await admin.post("/admin/review/3", {"action": "dismiss", "note": "dup"})

``post`` adds the session's CSRF token unless ``csrf=False`` (or another token) is given.
The client does not follow redirects: assert the 303 and its ``Location``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from admin_web.app import create_admin_app
from admin_web.context import AdminDeps
from admin_web.security import COOKIE_NAME
from core.keys import ADMIN_SESSION_PURPOSE, derive_fernet_key
from core.runtime import Runtime
from core.services.ops.admins import create_admin

TEST_SECRET_KEY = "admin-site-test-secret-key-0123456789-abcdefgh"
USERNAME = "amina"
PASSWORD = "correct horse battery staple"
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class AdminSite:
    """The admin sub-application on a test server, with a signed-in admin."""

    client: TestClient
    runtime: Runtime
    admin_id: int
    username: str = USERNAME
    password: str = PASSWORD

    @property
    def session(self) -> dict[str, Any]:
        """The decrypted session cookie (``admin_id``, ``csrf_token``, ``issued``, ``seen``)."""
        return read_session(self.client)

    @property
    def csrf(self) -> str:
        return str(self.session["csrf_token"])

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.client.get(path, allow_redirects=False, **kwargs)

    async def post(self, path: str, data: Mapping[str, Any] | None = None, *, csrf: bool | str = True,
                   **kwargs: Any) -> Any:
        form = dict(data or {})
        if csrf is True:
            form["csrf_token"] = self.csrf
        elif isinstance(csrf, str):
            form["csrf_token"] = csrf
        return await self.client.post(path, data=form, allow_redirects=False, **kwargs)


def admin_app(runtime: Runtime, **deps: Any) -> web.Application:
    """A root application with only the admin site mounted at /admin (as smiling_steps.app does)."""
    app = web.Application()
    app.add_subapp("/admin", create_admin_app(AdminDeps(runtime, TEST_SECRET_KEY, **deps)))
    return app


def read_session(client: TestClient) -> dict[str, Any]:
    """Decrypt the client's admin session cookie with the test key ({} when there is none)."""
    for cookie in client.session.cookie_jar:
        if cookie.key == COOKIE_NAME and cookie.value:
            box = Fernet(derive_fernet_key(TEST_SECRET_KEY, ADMIN_SESSION_PURPOSE))
            envelope = json.loads(box.decrypt(cookie.value.strip('"').encode()))
            return dict(envelope.get("session") or {})
    return {}


async def login_form_token(client: TestClient, path: str = "/admin/login") -> str:
    """GET the login page and return the CSRF token of its form."""
    response = await client.get(path, allow_redirects=False)
    match = _CSRF_INPUT.search(await response.text())
    assert match, "the login page has no csrf_token input"
    return match.group(1)


async def sign_in(client: TestClient, username: str, password: str, **extra: str) -> Any:
    """Fill in and POST the login form like a browser; returns the (unfollowed) response."""
    token = await login_form_token(client)
    form = {"username": username, "password": password, "csrf_token": token, **extra}
    return await client.post("/admin/login", data=form, allow_redirects=False)


@asynccontextmanager
async def admin_site(
    runtime: Runtime, *, username: str = USERNAME, password: str = PASSWORD, **deps: Any
) -> AsyncIterator[AdminSite]:
    """Create an admin, serve the admin site and sign in; ``deps`` go to AdminDeps (e.g. daraja=…)."""
    admin_id = await create_admin(runtime.uow(), username=username, password=password)
    async with TestClient(TestServer(admin_app(runtime, **deps))) as client:
        response = await sign_in(client, username, password)
        assert response.status == 303, await response.text()
        yield AdminSite(client, runtime, admin_id, username, password)


@asynccontextmanager
async def serving_admin_site(runtime: Runtime, **deps: Any) -> AsyncIterator[str]:
    """The admin site on a real 127.0.0.1 port for a browser; yields the base URL (no trailing /)."""
    runner = web.AppRunner(admin_app(runtime, **deps))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def browser_sign_in(
    page: Any, base_url: str, username: str = USERNAME, password: str = PASSWORD
) -> None:
    """Sign in through the login form with a Playwright page; ends on the dashboard."""
    await page.goto(f"{base_url}/admin/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base_url}/admin/")
