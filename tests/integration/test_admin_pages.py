"""The admin framework's promises to every page: audited reads without phone numbers, error
pages without tracebacks, one-time messages after a redirect."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from admin_web.app import create_admin_app
from admin_web.context import AdminDeps
from admin_web.pages import audited_read, flash, render
from admin_web.security import see_other
from core.db.models import AuditEntry
from core.runtime import Runtime
from core.services.ops.admins import create_admin
from tests.support.admin import PASSWORD, TEST_SECRET_KEY, USERNAME, AdminSite, sign_in


async def _probe_read(request: web.Request) -> web.Response:
    await audited_read(request, {"q": request.query.get("q", ""), "status": "PAID"})
    return web.Response(text="ok")


async def _probe_crash(_request: web.Request) -> web.Response:
    raise RuntimeError("secret internals: /srv/app/core.py line 12")


async def _probe_flash(request: web.Request) -> web.Response:
    await flash(request, "Saved <b>bold</b>.")
    return see_other("/admin/probe/page")


async def _probe_page(request: web.Request) -> web.Response:
    return await render(request, "error.html", {"title": "Probe", "message": "page"})


@asynccontextmanager
async def probed_site(runtime: Runtime) -> AsyncIterator[AdminSite]:
    """The admin site plus probe routes that use the framework as a page would."""
    admin_id = await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    sub = create_admin_app(AdminDeps(runtime, TEST_SECRET_KEY))
    sub.router.add_get("/probe/read", _probe_read)
    sub.router.add_get("/probe/crash", _probe_crash)
    sub.router.add_post("/probe/flash", _probe_flash)
    sub.router.add_get("/probe/page", _probe_page)
    root = web.Application()
    root.add_subapp("/admin", sub)
    async with TestClient(TestServer(root)) as client:
        assert (await sign_in(client, USERNAME, PASSWORD)).status == 303
        yield AdminSite(client, runtime, admin_id)


# Feature: mpesa-payment-integration, Property 69: Admin Access Logs Required Fields
@pytest.mark.parametrize(("q", "stored"), [("0712345678", "******5678"), ("+254 712 345 678", "********5678"),
                                           ("4149", "4149"), ("QKL1ABCD23", "QKL1ABCD23")])
async def test_an_audited_read_names_admin_route_and_filters_but_never_a_phone_number(
    runtime: Runtime, q: str, stored: str
) -> None:
    async with probed_site(runtime) as site:
        response = await site.get("/admin/probe/read", params={"q": q})
        assert response.status == 200
    async with runtime.uow() as uow:
        query = select(AuditEntry).where(AuditEntry.action == "admin.accessed")
        [entry] = (await uow.session.scalars(query)).all()
    assert entry.actor == f"admin:{site.admin_id}"
    assert entry.details == {"what": "/admin/probe/read", "filters": {"q": stored, "status": "PAID"}}


async def test_an_unexpected_error_is_a_plain_500_page_and_a_log_line(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async with probed_site(runtime) as site:
        with caplog.at_level(logging.ERROR, logger="admin_web.pages"):
            response = await site.get("/admin/probe/crash")
            html = await response.text()
    assert response.status == 500
    assert "Something went wrong" in html
    assert "secret internals" not in html and "Traceback" not in html
    assert response.headers["X-Frame-Options"] == "DENY"
    assert any(r.message == "admin view failed" and r.exc_info for r in caplog.records)


async def test_a_flashed_message_shows_once_escaped_after_the_redirect(runtime: Runtime) -> None:
    async with probed_site(runtime) as site:
        response = await site.post("/admin/probe/flash")
        assert response.status == 303
        first = await (await site.get("/admin/probe/page")).text()
        second = await (await site.get("/admin/probe/page")).text()
    assert "Saved &lt;b&gt;bold&lt;/b&gt;." in first
    assert "Saved" not in second
