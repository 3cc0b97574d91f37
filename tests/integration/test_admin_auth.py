"""The admin site's gate: sign-in, sessions, CSRF, throttling, safe redirects and headers."""

from __future__ import annotations

from sqlalchemy import func, select

from core.db.models import AuditEntry
from tests.support.admin import AdminSite


async def _audit_count(site: AdminSite) -> int:
    async with site.runtime.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


async def test_a_signed_in_admin_sees_the_dashboard(admin: AdminSite) -> None:
    response = await admin.get("/admin/")
    assert response.status == 200
    assert "Dashboard" in await response.text()


async def test_logout_needs_the_csrf_token_and_then_ends_the_session(admin: AdminSite) -> None:
    refused = await admin.post("/admin/logout", csrf="wrong")
    assert refused.status == 403
    assert (await admin.get("/admin/")).status == 200
    done = await admin.post("/admin/logout")
    assert done.status == 303 and done.headers["Location"] == "/admin/login"
    again = await admin.get("/admin/")
    assert again.status == 303
