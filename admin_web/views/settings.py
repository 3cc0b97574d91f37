"""``/admin/settings``: the M-Pesa mode and Daraja credentials per mode (Properties 41, 45, 80).

Views stay thin: the rules (validation, password again, production needs production
credentials, encryption, audit) live in ``core.services.settings``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin_web.context import PREFIX, current_admin, mpesa
from admin_web.pages import audited_read, bad_input, flash, render
from admin_web.security import see_other
from core.services.settings.connectivity import test_connection
from core.services.settings.mpesa import ENVIRONMENTS, FIELD_LABELS, FIELDS, SECRET_FIELDS, last4
from core.services.settings.mpesa_changes import (
    SettingsRefused,
    change_mpesa_settings,
    form_field,
    parse_mpesa_form,
)

routes = web.RouteTableDef()
PAGE = "/settings"
TEMPLATE = "settings.html"


@routes.get(PAGE)
async def settings_page(request: web.Request) -> web.Response:
    await audited_read(request, {})
    return await render(request, TEMPLATE, await _context(request))


@routes.post(PAGE + "/mpesa")
async def save_mpesa(request: web.Request) -> web.Response:
    form = await request.post()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        change = parse_mpesa_form(values)
        done = await change_mpesa_settings(
            mpesa(request).settings,
            admin_id=current_admin(request).id,
            current_password=values.get("current_password", ""),
            request=change,
        )
    except SettingsRefused as exc:
        return await bad_input(request, TEMPLATE, str(exc), await _context(request))
    await flash(request, done.message())
    return see_other(PREFIX + PAGE)


@routes.post(PAGE + "/test-connection")
async def check_connection(request: web.Request) -> web.Response:
    form = await request.post()
    environment = str(form.get("environment") or "").strip() or None
    if environment is not None and environment not in ENVIRONMENTS:
        return await bad_input(
            request, TEMPLATE, f"Mode must be one of {', '.join(ENVIRONMENTS)}.", await _context(request)
        )
    report = await test_connection(
        mpesa(request), admin_id=current_admin(request).id, environment=environment
    )
    if report.ok:
        await flash(request, f"Daraja connection ({report.environment}): OK in {report.latency_ms:.0f} ms.")
    else:
        latency = f" after {report.latency_ms:.0f} ms" if report.latency_ms is not None else ""
        await flash(request, f"Daraja connection ({report.environment}): FAILED{latency}: {report.error}")
    return see_other(PREFIX + PAGE)


async def _context(request: web.Request) -> dict[str, Any]:
    overview = await mpesa(request).settings.overview()
    modes = []
    for env in ENVIRONMENTS:
        config = overview.configs[env]
        fields = []
        for name in FIELDS:
            value = config.value(name) if name != "callback_base_url" else config.callback_base_url
            shown = last4(value) if name in SECRET_FIELDS else (value or "")
            fields.append(
                {
                    "name": form_field(env, name),
                    "label": FIELD_LABELS[name],
                    "shown": shown,
                    "source": config.sources.get(name, "unset"),
                    "secret": name in SECRET_FIELDS,
                }
            )
        modes.append(
            {
                "environment": env,
                "base_url": config.base_url,
                "fields": fields,
                "missing": [FIELD_LABELS[n] for n in config.missing()],
            }
        )
    return {
        "active": overview.active,
        "booted": overview.booted,
        "modes": modes,
        "environments": ENVIRONMENTS,
    }
