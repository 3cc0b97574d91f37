"""``create_admin_app``: the admin sub-application the composition root mounts at ``/admin``."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware

from admin_web import formatting
from admin_web.context import DEPS, PREFIX, AdminDeps
from admin_web.pages import error_pages, layout_context
from admin_web.security import require_admin, security_headers, session_storage
from admin_web.views import (
    audit,
    auth,
    bookings,
    clients,
    dashboard,
    notifications,
    practitioners,
    reconciliation,
    review,
    settings,
    test_summary,
    transactions,
)

HERE = Path(__file__).parent
# Every area's routes; an area owns its module (admin_web/views/<area>.py) and its templates.
AREAS = (auth, dashboard, transactions, review, test_summary, reconciliation, audit, settings,
         notifications, practitioners, clients, bookings)


def create_admin_app(deps: AdminDeps) -> web.Application:
    """The admin site: sessions, auth, CSRF, headers, templates, static files and every area's routes."""
    storage = session_storage(deps.runtime.settings, deps.secret_key)
    app = web.Application(
        middlewares=[security_headers, error_pages, session_middleware(storage), require_admin]
    )
    app[DEPS] = deps
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is HTML-escaped unless a template says otherwise
        context_processors=[layout_context],
    )
    env.filters.update(formatting.FILTERS)
    env.globals["prefix"] = PREFIX
    app.router.add_static("/static/", HERE / "static", name="static", append_version=False)
    for area in AREAS:
        app.add_routes(area.routes)
    return app
