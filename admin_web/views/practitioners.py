"""``GET /admin/practitioners``: the practitioners with their phone masked, Telegram link state and
weekly hours; ``POST /admin/practitioners`` adds one; ``POST /admin/practitioners/{id}`` with
``action`` = ``deactivate`` | ``reactivate`` | ``hours`` (field ``hours``) | ``link_code``.
Every change is audited by the directory service. The time off each practitioner blocked from
the chat (``/away``) is listed, read-only, so an admin can see which bookings they may need to
move or cancel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from admin_web.context import PREFIX, current_admin, runtime
from admin_web.pages import flash, render
from admin_web.people_forms import text
from admin_web.security import see_other
from core.domain.slots import to_nairobi
from core.domain.time_off import AwaySpan
from core.runtime import Runtime
from core.services.booking import directory
from core.services.booking.directory import DirectoryError, TherapistView
from core.services.booking.time_off import TimeOffView, time_off_ahead_by_practitioner

routes = web.RouteTableDef()
TEMPLATE = "practitioners.html"
ADD_FIELDS = ("name", "email", "phone", "hours")

Change = Callable[[Runtime, int, Mapping[str, str], str], Awaitable[TherapistView]]


async def _deactivate(rt: Runtime, therapist_id: int, _form: Mapping[str, str], actor: str) -> TherapistView:
    return await directory.set_practitioner_active(rt.uow(), therapist_id, active=False, actor=actor)


async def _reactivate(rt: Runtime, therapist_id: int, _form: Mapping[str, str], actor: str) -> TherapistView:
    return await directory.set_practitioner_active(rt.uow(), therapist_id, active=True, actor=actor)


async def _hours(rt: Runtime, therapist_id: int, form: Mapping[str, str], actor: str) -> TherapistView:
    return await directory.set_weekly_hours(rt.uow(), therapist_id, hours=form.get("hours", ""), actor=actor)


async def _link_code(rt: Runtime, therapist_id: int, _form: Mapping[str, str], actor: str) -> TherapistView:
    return await directory.regenerate_link_code(rt.uow(), therapist_id, actor=actor)


# action → (change, what the admin is told afterwards)
CHANGES: dict[str, tuple[Change, Callable[[TherapistView], str]]] = {
    "deactivate": (_deactivate, lambda t: f"{t.name} is no longer offered to clients."),
    "reactivate": (_reactivate, lambda t: f"{t.name} is offered to clients again."),
    "hours": (_hours, lambda t: f"Weekly hours of {t.name}: {t.hours_summary}."),
    "link_code": (_link_code, lambda t: f"New Telegram link code for {t.name}: {t.telegram_link_code}."),
}


@routes.get("/practitioners")
async def practitioners(request: web.Request) -> web.Response:
    return await _show(request)


@routes.post("/practitioners")
async def add_practitioner(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {name: text(form.get(name)) for name in ADD_FIELDS}
    try:
        added = await directory.add_practitioner(runtime(request).uow(), actor=_actor(request), **fields)
    except DirectoryError as exc:
        return await _show(request, form=fields, error=str(exc), status=400)
    await flash(request, f"{added.name} was added. Telegram link code: {added.telegram_link_code}.")
    return see_other(f"{PREFIX}/practitioners")


@routes.post(r"/practitioners/{therapist_id:\d{1,9}}")
async def change_practitioner(request: web.Request) -> web.Response:
    therapist_id = int(request.match_info["therapist_id"])
    form = await request.post()
    entry = CHANGES.get(text(form.get("action")))
    if entry is None:
        return await _show(request, error="Unknown action: nothing was changed.", status=400)
    change, told = entry
    fields = {"hours": text(form.get("hours"))}
    try:
        changed = await change(runtime(request), therapist_id, fields, _actor(request))
    except DirectoryError as exc:
        return await _show(request, error=str(exc), status=400)
    await flash(request, told(changed))
    return see_other(f"{PREFIX}/practitioners#practitioner-{therapist_id}")


def _actor(request: web.Request) -> str:
    return f"admin:{current_admin(request).id}"


async def _show(
    request: web.Request,
    *,
    form: Mapping[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    listed = await directory.list_therapists(runtime(request).uow())
    away = await time_off_ahead_by_practitioner(runtime(request))
    time_off = {therapist_id: [describe_time_off(b) for b in blocks] for therapist_id, blocks in away.items()}
    blank = dict.fromkeys(ADD_FIELDS, "")
    context = {
        "practitioners": listed,
        "time_off": time_off,
        "form": {**blank, **(form or {})},
        "error": error,
    }
    return await render(request, TEMPLATE, context, status=status)


def describe_time_off(block: TimeOffView) -> str:
    """``Wed 24 Dec 2031``, ``Wed 24 Dec 2031 – Fri 26 Dec 2031`` or ``Wed 24 Dec 2031, 14:00–17:00``."""
    span = AwaySpan.of(block.interval)
    if span is None:
        start, end = to_nairobi(block.starts_at), to_nairobi(block.ends_at)
        return f"{start:%a %d %b %Y, %H:%M} – {end:%a %d %b %Y, %H:%M}"
    first, last = f"{span.first:%a %d %b %Y}", f"{span.last:%a %d %b %Y}"
    if span.start is not None and span.end is not None:
        return f"{first}, {span.start:%H:%M}–{span.end:%H:%M}"
    return first if span.first == span.last else f"{first} – {last}"
