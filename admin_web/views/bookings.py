"""``POST /admin/bookings/{id}/reschedule``: an admin moves a booking to another free slot.

The form (on a payment attempt's page and on the client's page) posts ``starts_at`` as a
Nairobi date and time (``YYYY-MM-DDTHH:MM``, the browser's datetime-local) and ``back``, the
page to return to. The move is :func:`core.services.booking.reschedule.reschedule_booking`
(same rules as a client's move, without the client's window or the practitioner's approval);
bad input or a refused move answers 400 with a clear message and changes nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp import web

from admin_web.context import PREFIX, current_admin, runtime
from admin_web.pages import flash, render
from admin_web.people_forms import text
from admin_web.security import see_other
from core.domain.slots import NAIROBI, format_nairobi
from core.services.booking.reschedule import reschedule_booking
from core.services.booking.types import BookingError

routes = web.RouteTableDef()
BOOKING_ID = r"{booking_id:\d{1,9}}"
_BACK = re.compile(rf"^{re.escape(PREFIX)}/(transactions|clients)/\d{{1,10}}$")
_REFUSALS = {
    "not_found": "There is no such booking.",
    "not_movable": "Only an approved or paid booking that has not started can be moved.",
    "same_time": "That is the booking's current time; choose another.",
    "payment_in_progress": "A payment for this booking is in progress; try again when it has finished.",
    "slot_taken": "That time is taken by another booking; choose another.",
    "slot_unavailable": (
        "That time is not a free slot of the practitioner (their weekly hours, at least 3 hours "
        "ahead, at most 14 days, not overlapping another session)."
    ),
    "inactive": "The practitioner or the session type is no longer active.",
    "changed": "The booking changed a moment ago; reload the page.",
}


def parse_local_time(raw: str) -> datetime:
    """``2031-03-12T10:30`` (Nairobi) as an aware UTC datetime; ValueError with a clear message."""
    try:
        local = datetime.strptime(raw.strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        raise ValueError("Give the new start as a date and time, e.g. 2031-03-12T10:30 (Nairobi).") from None
    return local.replace(tzinfo=NAIROBI).astimezone(UTC)


@routes.post(f"/bookings/{BOOKING_ID}/reschedule")
async def reschedule(request: web.Request) -> web.Response:
    booking_id = int(request.match_info["booking_id"])
    form = await request.post()
    back = text(form.get("back"))
    back = back if _BACK.match(back) else f"{PREFIX}/"
    try:
        new_start = parse_local_time(text(form.get("starts_at")))
        admin_id = current_admin(request).id
        result = await reschedule_booking(
            runtime(request), booking_id=booking_id, new_starts_at=new_start, admin_id=admin_id
        )
    except ValueError as exc:
        return await _refused(request, str(exc), back)
    except BookingError as exc:
        return await _refused(request, _REFUSALS.get(exc.code, "The booking could not be moved."), back)
    await flash(
        request,
        f"Booking {result.booking.reference} moved from {format_nairobi(result.old_starts_at)} "
        f"to {format_nairobi(result.new_starts_at)}; the practitioner and the client are told.",
    )
    return see_other(back)


async def _refused(request: web.Request, message: str, back: str) -> web.Response:
    context = {"title": "The booking was not moved", "message": message, "back": back}
    return await render(request, "error.html", context, status=400)
