"""Moving a session from the chat: "Reschedule" on a session card → day → time → confirm.

The days and times offered are the booking flow's (:func:`booking_flow.day_menu` /
:func:`booking_flow.time_menu`) for the booking's own practitioner and session type; the
flow data carries ``moving`` (the booking id) so the chosen time leads here instead of the
e-mail step. The move itself is :func:`core.services.booking.reschedule.reschedule_booking`
(re-checked there: the window, the slot, the status). A time taken a moment ago by someone
else is answered with the other free times. The practitioner's answer to a move that needs
approval arrives as ``v1:rsok:<id>`` / ``v1:rsno:<id>`` or SMS ``A<code>`` / ``D<code>``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from core.dialog import booking_flow, values
from core.dialog.turn import MOVE, TIME, Outcome, Turn
from core.dialog.types import Reply
from core.domain.states import LIVE_PAYMENT_STATUSES
from core.services.booking.queries import available_days, client_booking, list_client_bookings
from core.services.booking.reschedule import (
    RescheduleResult,
    client_reschedule_refusal,
    decide_reschedule,
    reschedule_booking,
)
from core.services.booking.types import BookingError, BookingView

MOVING = "moving"  # flow data: the id of the booking being moved


def refusal(turn: Turn, booking: BookingView) -> str | None:
    """Why this client may not move ``booking`` now (None: they may)."""
    window = turn.runtime.settings.client_reschedule_window
    return client_reschedule_refusal(
        booking.status, booking.starts_at, now=turn.runtime.clock(), window=window
    )


def can_move(turn: Turn, booking: BookingView) -> bool:
    """Whether "Reschedule" is offered for ``booking`` (allowed, and no payment in progress)."""
    return refusal(turn, booking) is None and booking.payment_status not in LIVE_PAYMENT_STATUSES


async def movable(turn: Turn) -> list[int]:
    """Ids of the client's upcoming bookings that can be moved now."""
    client = await turn.client()
    return [b.id for b in await list_client_bookings(turn.runtime, client.id) if can_move(turn, b)]


def refused(turn: Turn, code: str, reference: str) -> Reply:
    """The answer to a refused move; "too_late" names the window."""
    hours = turn.runtime.settings.client_reschedule_window_hours
    if code == "too_late" and hours:
        window = turn.say("one_hour") if hours == 1 else turn.say("hours", count=hours)
        return turn.reply("move_too_late", reference=reference, window=window)
    if code == "off":
        return turn.reply("move_off", reference=reference)
    return turn.reply("move_not_allowed", reference=reference)


async def start(turn: Turn, booking_id: int | None) -> Outcome:
    """ "Reschedule" pressed: offer the practitioner's free days (or say why not)."""
    client = await turn.client()
    booking = await client_booking(turn.runtime, client.id, booking_id) if booking_id else None
    if booking is None:
        return turn.idle(turn.reply("pay_not_found"))
    why = refusal(turn, booking)
    if why is not None:
        return turn.idle(refused(turn, why, booking.reference))
    when = turn.when(booking.starts_at)
    if not await available_days(turn.runtime, booking.therapist_id, booking.minutes):
        return turn.idle(
            turn.reply(
                "move_no_days", therapist=booking.therapist_name, reference=booking.reference, when=when
            )
        )
    data: dict[str, Any] = {
        MOVING: booking.id,
        "reference": booking.reference,
        "old_start": booking.starts_at.isoformat(),
        "therapist_id": booking.therapist_id,
        "therapist_name": booking.therapist_name,
        "session_type_id": booking.session_type_id,
        "session_type_name": booking.session_type_name,
        "minutes": booking.minutes,
        "price_kes": booking.price_kes,
    }
    intro = turn.reply("move_intro", reference=booking.reference, when=when, therapist=booking.therapist_name)
    return await booking_flow.day_menu(turn, data, page=0, before=[intro])


async def on_choice(turn: Turn, choice: values.Choice) -> Outcome | None:
    """The chosen time of a move, and the yes/no; None for anything else (the booking flow's)."""
    if turn.data.get(MOVING) is None:
        return None
    if choice.kind == values.TIME and turn.step == TIME:
        return await _time_chosen(turn, choice.arg)
    if choice.kind == values.MOVE and turn.step == MOVE:
        if choice.arg == "yes":
            return _confirm(turn)
        return turn.idle(turn.reply("move_kept", reference=turn.data["reference"], when=_old_when(turn)))
    return None


def _old_when(turn: Turn) -> str:
    return turn.when(datetime.fromisoformat(str(turn.data["old_start"])))


async def _time_chosen(turn: Turn, arg: str) -> Outcome | None:
    new_start = booking_flow.parse_time(arg)
    data = turn.flow_data()
    if new_start is None or not data.get("day"):
        return None
    data["start"] = new_start.isoformat()
    text = turn.say(
        "move_confirm", reference=data["reference"], old=_old_when(turn), new=turn.when(new_start)
    )
    return turn.menu(
        MOVE,
        text,
        [(turn.label("yes_move"), values.MOVE, "yes"), (turn.label("keep"), values.MOVE, "no")],
        data=data,
        edit=True,
    )


def _confirm(turn: Turn) -> Outcome:
    """Claim the turn (back to idle), then move the booking."""
    data = turn.flow_data()

    async def effect() -> Outcome:
        client = await turn.client()
        try:
            result = await reschedule_booking(
                turn.runtime,
                booking_id=int(data[MOVING]),
                new_starts_at=datetime.fromisoformat(str(data["start"])),
                client_id=client.id,
            )
        except BookingError as exc:
            return await _failed(turn, data, exc)
        return turn.idle(_done(turn, result))

    return Outcome([], "idle", {}, effect=effect)


async def _failed(turn: Turn, data: dict[str, Any], exc: BookingError) -> Outcome:
    reference = exc.reference or str(data["reference"])
    if exc.code in ("slot_taken", "slot_unavailable", "same_time"):
        data.pop("start", None)  # someone else was quicker: the other free times
        key = {"slot_taken": "slot_taken", "same_time": "move_same_time"}.get(exc.code, "slot_gone")
        return await booking_flow.time_menu(turn, data, page=0, before=[turn.reply(key, reference=reference)])
    if exc.code == "not_movable":
        return turn.idle(refused(turn, exc.detail, reference))
    if exc.code == "payment_in_progress":
        return turn.idle(turn.reply("move_payment_live", reference=reference))
    if exc.code == "changed":
        return turn.idle(turn.reply("move_changed", reference=reference))
    return turn.idle(turn.reply("pay_not_found"))


def _done(turn: Turn, result: RescheduleResult) -> Reply:
    b = result.booking
    if result.pending:
        return turn.reply(
            "move_requested",
            therapist=b.therapist_name,
            reference=b.reference,
            when=turn.when(result.new_starts_at),
            old=turn.when(result.old_starts_at),
        )
    key = "move_done_paid" if b.paid else "move_done"
    return turn.reply(key, reference=b.reference, when=turn.when(b.starts_at), therapist=b.therapist_name)


# -- the practitioner's answer -------------------------------------------------------------------


async def decide(turn: Turn, request_id: int | None, *, approve: bool) -> Outcome:
    """Approve or decline a client's move after claiming the turn (a double tap acts once)."""
    therapist = await turn.therapist()
    if therapist is None or request_id is None:
        return turn.stay(turn.reply("request_not_found"))
    step, data = turn.step, dict(turn.data)
    pressed = turn.inbound.option is not None

    async def effect() -> Outcome:
        try:
            result = await decide_reschedule(
                turn.runtime, therapist_id=therapist.id, request_id=request_id, approve=approve
            )
        except BookingError as exc:
            key = {"already_decided": "move_already_decided", "changed": "move_request_gone"}.get(
                exc.code, "request_not_found"
            )
            reply = turn.reply(key)
        else:
            b = result.booking
            key = "move_approved_done" if approve else "move_declined_done"
            client = b.client_name or turn.say("the_client")
            reply = turn.reply(key, reference=b.reference, when=turn.when(b.starts_at), client=client)
        if pressed:
            reply = replace(reply, edit_previous=True)
        return Outcome([reply], step, data, keep_choices=True)

    return Outcome([], step, data, effect=effect, keep_choices=True)
