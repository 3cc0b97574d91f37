"""The practitioner's side: link Telegram, dashboard, Approve/Decline, session lists.

Approve/Decline (buttons ``v1:approve:<id>`` / ``v1:decline:<id>`` or SMS ``A<code>`` /
``D<code>``) are re-checked in the database: only the practitioner's own PENDING_APPROVAL
booking changes; a second press or an old button answers harmlessly (Property 3).
Session lists show payment status, the receipt of paid sessions and a clear
[PAID]/[UNPAID] marker (Properties 33, 34, 36).
"""

from __future__ import annotations

from dataclasses import replace

from core.dialog import reschedule_flow, values
from core.dialog.turn import Outcome, Turn
from core.dialog.types import Option, Reply
from core.services.booking.lifecycle import (
    approve_booking,
    booking_id_for_code,
    decline_booking,
    link_therapist_telegram,
)
from core.services.booking.queries import SCOPES, Scope, list_therapist_sessions, pending_requests
from core.services.booking.reschedule import request_id_for_code
from core.services.booking.types import BookingError, BookingView, TherapistRef

MAX_REQUESTS_SHOWN = 5
MAX_LINES = {"sms": 6, "telegram": 30}


async def link(turn: Turn, code: str) -> Outcome | None:
    """``/start <code>`` on Telegram: link this account to a practitioner; None if not a link code."""
    try:
        therapist = await link_therapist_telegram(turn.runtime, code, int(turn.inbound.user_key))
    except BookingError as exc:
        if exc.code == "already_linked":
            return turn.idle(turn.reply("link_taken"))
        return None
    except ValueError:
        return None
    turn._therapist, turn._therapist_loaded = therapist, True
    return await dashboard(turn, therapist, before=[turn.reply("linked", name=therapist.name)])


async def dashboard(turn: Turn, therapist: TherapistRef, *, before: list[Reply] | None = None) -> Outcome:
    """Today's count, paid count and the requests waiting for a decision, with their buttons."""
    today = await list_therapist_sessions(turn.runtime, therapist.id, "today")
    pending = await pending_requests(turn.runtime, therapist.id)
    text = turn.say(
        "dashboard",
        name=therapist.name,
        today=len(today),
        paid=sum(1 for b in today if b.paid),
        pending=len(pending),
    )
    scopes = tuple(Option(turn.label(scope), values.action(values.SESSIONS, scope)) for scope in SCOPES)
    replies = [*(before or []), Reply(text=text, options=scopes)]
    replies.extend(request_card(turn, b) for b in pending[:MAX_REQUESTS_SHOWN])
    return turn.idle(*replies)


def help_reply(turn: Turn) -> Reply:
    """What a practitioner can send: the session lists, then the calendar (/hours, /away)."""
    return Reply(text=f"{turn.say('therapist_help')}\n{turn.say('therapist_help_calendar')}")


def request_card(turn: Turn, b: BookingView) -> Reply:
    """One request: Approve/Decline buttons (Telegram) or the A<code>/D<code> answer (SMS)."""
    text = turn.say(
        "request_card",
        reference=b.reference,
        client=b.client_name or turn.say("client_unnamed"),
        session_type=b.session_type_name,
        minutes=b.minutes,
        when=turn.when(b.starts_at),
        price=turn.price(b.price_kes),
        code=b.approval_code,
    )
    if turn.sms:
        return Reply(text=text)
    return Reply(
        text=text,
        options=(
            Option(turn.label("approve"), values.action(values.APPROVE, b.id)),
            Option(turn.label("decline"), values.action(values.DECLINE, b.id)),
        ),
    )


async def sessions(turn: Turn, therapist: TherapistRef, asked: str) -> Outcome:
    scope: Scope = next((s for s in SCOPES if s == asked), "upcoming")
    rows = await list_therapist_sessions(turn.runtime, therapist.id, scope)
    lines = [turn.say(f"sessions_{scope}")]
    limit = MAX_LINES.get(turn.channel, 30)
    for b in rows[:limit]:
        lines.append(session_line(turn, b))
    if not rows:
        lines.append(turn.say("sessions_none"))
    return turn.idle(Reply(text="\n".join(lines)))


def session_line(turn: Turn, b: BookingView) -> str:
    receipt = turn.say("receipt_part", receipt=b.receipt) if b.paid and b.receipt else ""
    return turn.say(
        "session_line",
        mark=turn.say("mark_paid" if b.paid else "mark_unpaid"),
        when=turn.when(b.starts_at),
        client=b.client_name or turn.say("client_unnamed"),
        session_type=b.session_type_name,
        status=turn.say(f"tstatus_{b.status.value}"),
        receipt=receipt,
        reference=b.reference,
    )


async def decide(turn: Turn, booking_id: int | None, *, approve: bool) -> Outcome:
    """Approve or decline after claiming the turn (a double tap acts once)."""
    therapist = await turn.therapist()
    if therapist is None or booking_id is None:
        return turn.stay(turn.reply("request_not_found"))
    step, data = turn.step, dict(turn.data)
    pressed = turn.inbound.option is not None

    async def effect() -> Outcome:
        try:
            if approve:
                booking = await approve_booking(
                    turn.runtime, therapist_id=therapist.id, booking_id=booking_id
                )
            else:
                booking = await decline_booking(
                    turn.runtime, therapist_id=therapist.id, booking_id=booking_id
                )
        except BookingError as exc:
            reply = _decision_error(turn, exc)
        else:
            key = "approved_done" if approve else "declined_done"
            client = booking.client_name or turn.say("the_client")
            reply = turn.reply(key, reference=booking.reference, client=client)
        if pressed:
            reply = replace(reply, edit_previous=True)
        return Outcome([reply], step, data, keep_choices=True)

    return Outcome([], step, data, effect=effect, keep_choices=True)


async def decide_by_code(turn: Turn, code: str, *, approve: bool) -> Outcome:
    """SMS ``A<code>`` / ``D<code>``: a booking request's code, or a pending move's."""
    therapist = await turn.therapist()
    if therapist is None:
        return turn.stay(turn.reply("request_not_found"))
    move = await request_id_for_code(turn.runtime, therapist_id=therapist.id, code=code)
    if move is not None:  # the code of a client's pending move
        return await reschedule_flow.decide(turn, move, approve=approve)
    try:
        booking_id = await booking_id_for_code(turn.runtime, therapist_id=therapist.id, code=code)
    except BookingError:
        return turn.stay(turn.reply("unknown_code", code=code.upper()))
    return await decide(turn, booking_id, approve=approve)


def _decision_error(turn: Turn, exc: BookingError) -> Reply:
    reference = exc.reference or ""
    key = {
        "already_approved": "already_approved",
        "already_declined": "already_declined",
        "not_pending": "not_pending",
        "too_late": "too_late",
    }.get(exc.code, "request_not_found")
    return turn.reply(key, reference=reference)
