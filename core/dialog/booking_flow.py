"""The client's booking steps: practitioner → session type → day → time → e-mail → confirm."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from core.dialog import messages, values
from core.dialog.turn import CONFIRM, DAY, EMAIL, SESSION_TYPE, THERAPIST, TIME, Outcome, Turn
from core.dialog.types import Reply
from core.services.booking.directory import DirectoryError, validate_email
from core.services.booking.lifecycle import create_booking
from core.services.booking.queries import (
    active_session_types,
    available_days,
    available_slots,
    bookable_therapists,
    session_type_ref,
    therapist_ref,
)
from core.services.booking.types import BookingError

MAX_THERAPISTS = 20
DAY_PAGE = {"sms": 7, "telegram": 15}
TIME_PAGE = {"sms": 8, "telegram": 24}
_TIME_FORMAT = "%Y%m%d%H%M"


async def start(turn: Turn, *, before: list[Reply] | None = None) -> Outcome:
    """Begin a booking: choose a practitioner."""
    therapists = (await bookable_therapists(turn.runtime))[:MAX_THERAPISTS]
    if not therapists:
        return turn.idle(*(before or []), turn.reply("no_therapists"))
    return turn.menu(
        THERAPIST,
        turn.say("choose_therapist"),
        [(t.name, values.THERAPIST, t.id) for t in therapists],
        data={},
        before=before or [],
    )


async def on_choice(turn: Turn, choice: values.Choice) -> Outcome | None:
    """Handle a menu choice of the booking steps; None when it does not belong to them."""
    kind, step = choice.kind, turn.step
    if kind == values.THERAPIST and step == THERAPIST:
        return await _therapist_chosen(turn, choice.int_arg())
    if kind == values.SESSION_TYPE and step == SESSION_TYPE:
        return await _type_chosen(turn, choice.int_arg())
    if kind == values.PAGE and step in (DAY, TIME) and choice.arg.isdigit():
        page = min(int(choice.arg), 100)
        if step == DAY:
            return await day_menu(turn, turn.flow_data(), page=page, edit=True)
        return await time_menu(turn, turn.flow_data(), page=page, edit=True)
    if kind == values.DAY and step == DAY:
        return await _day_chosen(turn, choice.arg)
    if kind == values.TIME and step == TIME:
        return await _time_chosen(turn, choice.arg)
    if kind == values.EMAIL and step == EMAIL:
        saved = turn.data.get("saved_email") if choice.arg == "saved" else None
        return await _summary(turn, turn.flow_data(email=saved))
    if kind == values.SUMMARY and step == CONFIRM:
        if choice.arg == "yes":
            return _confirm(turn)
        return turn.main_menu(turn.say("menu"), before=[turn.reply("booking_dropped")])
    return None


async def on_text(turn: Turn, text: str) -> Outcome | None:
    """Typed text at a booking step (only the e-mail step takes free text)."""
    if turn.step != EMAIL:
        return None
    try:
        email = validate_email(text)
    except DirectoryError:
        return turn.reprompt(turn.say("invalid_email"), compact=True)
    return await _summary(turn, turn.flow_data(email=email))


# -- steps -------------------------------------------------------------------------------------


async def _therapist_chosen(turn: Turn, therapist_id: int | None) -> Outcome | None:
    therapist = await therapist_ref(turn.runtime, therapist_id) if therapist_id else None
    if therapist is None:
        return None
    types = await active_session_types(turn.runtime)
    if not types:
        return turn.idle(turn.reply("no_types"))
    return turn.menu(
        SESSION_TYPE,
        turn.say("choose_type"),
        [
            (
                turn.say("type_label", name=s.name, minutes=s.minutes, price=turn.price(s.price_kes)),
                values.SESSION_TYPE,
                s.id,
            )
            for s in types
        ],
        data={"therapist_id": therapist.id, "therapist_name": therapist.name},
        edit=True,
    )


async def _type_chosen(turn: Turn, session_type_id: int | None) -> Outcome | None:
    session_type = await session_type_ref(turn.runtime, session_type_id) if session_type_id else None
    if session_type is None:
        return None
    data = turn.flow_data(
        session_type_id=session_type.id,
        session_type_name=session_type.name,
        minutes=session_type.minutes,
        price_kes=session_type.price_kes,
    )
    return await day_menu(turn, data, page=0, edit=True)


async def day_menu(
    turn: Turn, data: dict[str, Any], *, page: int, edit: bool = False, before: list[Reply] | None = None
) -> Outcome:
    days = await available_days(turn.runtime, int(data["therapist_id"]), int(data["minutes"]))
    if not days:
        outcome = await start(
            turn, before=[*(before or []), turn.reply("no_days", therapist=data["therapist_name"])]
        )
        return outcome
    size = DAY_PAGE.get(turn.channel, 15)
    page = page if page * size < len(days) else 0
    shown = days[page * size : (page + 1) * size]
    choices: list[tuple[str, str, str | int]] = [
        (messages.day_label(d, turn.lang), values.DAY, d.strftime("%Y%m%d")) for d in shown
    ]
    if (page + 1) * size < len(days):
        choices.append((turn.label("more"), values.PAGE, page + 1))
    return turn.menu(
        DAY, turn.say("choose_day"), choices, data=dict(data, page=page), before=before or [], edit=edit
    )


async def _day_chosen(turn: Turn, arg: str) -> Outcome | None:
    day = _parse_day(arg)
    if day is None:
        return None
    return await time_menu(turn, turn.flow_data(day=day.isoformat()), page=0, edit=True)


async def time_menu(
    turn: Turn, data: dict[str, Any], *, page: int, edit: bool = False, before: list[Reply] | None = None
) -> Outcome:
    day = date.fromisoformat(str(data["day"]))
    slots = await available_slots(turn.runtime, int(data["therapist_id"]), int(data["minutes"]), day)
    if not slots:
        return await day_menu(turn, data, page=0, before=[*(before or []), turn.reply("no_times")])
    size = TIME_PAGE.get(turn.channel, 24)
    page = page if page * size < len(slots) else 0
    shown = slots[page * size : (page + 1) * size]
    choices: list[tuple[str, str, str | int]] = [
        (messages.time_label(s), values.TIME, s.strftime(_TIME_FORMAT)) for s in shown
    ]
    if (page + 1) * size < len(slots):
        choices.append((turn.label("more"), values.PAGE, page + 1))
    text = turn.say("choose_time", day=messages.day_label(day, turn.lang))
    return turn.menu(TIME, text, choices, data=dict(data, page=page), before=before or [], edit=edit)


async def _time_chosen(turn: Turn, arg: str) -> Outcome | None:
    start_at = parse_time(arg)
    data = turn.flow_data()
    if start_at is None or not data.get("day"):
        return None
    slots = await available_slots(
        turn.runtime, int(data["therapist_id"]), int(data["minutes"]), date.fromisoformat(str(data["day"]))
    )
    if start_at not in slots:
        return await time_menu(turn, data, page=0, before=[turn.reply("slot_gone")])
    data["start"] = start_at.isoformat()
    client = await turn.client()
    choices: list[tuple[str, str, str | int]] = [(turn.label("skip"), values.EMAIL, "skip")]
    if client.email:
        data["saved_email"] = client.email
        choices.insert(0, (client.email, values.EMAIL, "saved"))
    return turn.menu(EMAIL, turn.say("ask_email"), choices, data=data, edit=True)


async def _summary(turn: Turn, data: dict[str, Any]) -> Outcome:
    start_at = datetime.fromisoformat(str(data["start"]))
    text = turn.say(
        "summary",
        session_type=data["session_type_name"],
        minutes=data["minutes"],
        therapist=data["therapist_name"],
        when=turn.when(start_at),
        price=turn.price(int(data["price_kes"])),
        email=data.get("email") or turn.say("no_email"),
    )
    return turn.menu(
        CONFIRM,
        text,
        [(turn.label("confirm"), values.SUMMARY, "yes"), (turn.label("cancel"), values.SUMMARY, "no")],
        data=data,
        edit=True,
    )


def _confirm(turn: Turn) -> Outcome:
    """Claim the turn (back to idle), then send the request."""
    data = turn.flow_data()

    async def effect() -> Outcome:
        client = await turn.client()
        try:
            booking = await create_booking(
                turn.runtime,
                client_id=client.id,
                therapist_id=int(data["therapist_id"]),
                session_type_id=int(data["session_type_id"]),
                starts_at=datetime.fromisoformat(str(data["start"])),
                email=data.get("email") or None,
                channel=turn.channel,
            )
        except BookingError as exc:
            if exc.code in ("slot_taken", "slot_unavailable"):
                data.pop("start", None)
                key = "slot_taken" if exc.code == "slot_taken" else "slot_gone"
                return await time_menu(turn, data, page=0, before=[turn.reply(key)])
            if exc.code == "invalid_email":
                return await _summary(turn, {**data, "email": None})
            return turn.main_menu(turn.say("menu"), before=[turn.reply("no_therapists")])
        sent = turn.say(
            "booking_sent",
            reference=booking.reference,
            therapist=booking.therapist_name,
            price=turn.price(booking.price_kes),
        )
        return turn.idle(Reply(text=sent))

    return Outcome([], "idle", {}, effect=effect)


# -- helpers -----------------------------------------------------------------------------------


def _parse_day(arg: str) -> date | None:
    try:
        return datetime.strptime(arg, "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


def parse_time(arg: str) -> datetime | None:
    try:
        return datetime.strptime(arg, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
