"""A practitioner's own calendar from the chat: weekly hours (``/hours``, ``HOURS``) and time off
(``/away``, ``AWAY 24-26 DEC``, ``AWAY 24 DEC 14:00-17:00``).

``/hours`` shows the hours; ``/hours mon-fri 09:00-17:00; sat 10:00-13:00`` replaces them (the
admin site's rule, audited). ``/away`` lists the blocks ahead, each with a "Remove" choice, and
on Telegram offers the next days and weeks as buttons; ``/away <date>`` blocks (dates are read
by :mod:`core.domain.time_off`). Blocking over booked sessions lists them and asks whether to
block anyway and keep them — a booking is never cancelled here. For anyone but a practitioner
these words are not commands (None): the text is read as usual.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from core.dialog import messages, values
from core.dialog.turn import AWAY, AWAY_CONFIRM, Outcome, Turn
from core.dialog.types import Reply
from core.domain.slots import NAIROBI, Interval, compact_weekly_hours
from core.domain.time_off import MAX_AWAY_DAYS, AwayRefusal, AwaySpan, parse_away
from core.services.booking.directory import DirectoryError
from core.services.booking.time_off import (
    block_time,
    bookings_outside_hours,
    change_hours,
    remove_time_off,
    upcoming_time_off,
    weekly_hours,
)
from core.services.booking.types import BookingError, BookingView, TherapistRef

DAYS_OFFERED = 7  # Telegram: one button per day, today and the six after
REMOVE_SHOWN = {"sms": 4, "telegram": 8}
LISTED = {"sms": 4, "telegram": 20}
CLASHES_SHOWN = {"sms": 3, "telegram": 20}
_DAY = "%Y%m%d"
_ONE_DIGIT_HOUR = re.compile(r"(?<![\d:])(\d):(\d{2})")


# -- /hours ---------------------------------------------------------------------------------


async def hours_command(turn: Turn, arg: str) -> Outcome | None:
    """``/hours``: show the weekly hours; ``/hours <hours>``: replace them."""
    therapist = await turn.therapist()
    if therapist is None:
        return None
    if not arg.strip():
        hours = compact_weekly_hours(await weekly_hours(turn.runtime, therapist.id))
        return turn.idle(turn.reply("hours_show", hours=hours or turn.say("hours_none")))
    try:
        changed = await change_hours(turn.runtime, therapist.id, _ONE_DIGIT_HOUR.sub(r"0\1:\2", arg))
    except DirectoryError:
        return turn.idle(turn.reply("hours_invalid"))
    replies = [turn.reply("hours_saved", hours=compact_weekly_hours(changed.weekly_hours))]
    outside = await bookings_outside_hours(turn.runtime, therapist.id, changed.weekly_hours)
    if outside:
        replies.append(_booking_list(turn, turn.say("hours_outside"), outside))
    return turn.idle(*replies)


# -- /away ----------------------------------------------------------------------------------


async def away_command(turn: Turn, arg: str) -> Outcome | None:
    """``/away``: the blocks ahead and how to add one; ``/away <date>``: block it."""
    therapist = await turn.therapist()
    if therapist is None:
        return None
    if arg.strip():
        return await _block_text(turn, therapist, arg)
    return await _away_menu(turn, therapist)


async def on_choice(turn: Turn, choice: values.Choice) -> Outcome | None:
    """A choice of the time-off menus; None when it does not belong to them."""
    kind, step = choice.kind, turn.step
    if kind not in (values.AWAY_DAYS, values.AWAY_REMOVE, values.AWAY_KEEP):
        return None
    therapist = await turn.therapist()
    if therapist is None:
        return None
    if kind == values.AWAY_DAYS and step == AWAY:
        span = _days_arg(choice.arg, turn.runtime.clock())
        return _block(turn, therapist, span) if span else None
    if kind == values.AWAY_REMOVE and step == AWAY and choice.int_arg():
        return _remove(turn, therapist, choice.int_arg() or 0)
    if kind == values.AWAY_KEEP and step == AWAY_CONFIRM:
        if choice.arg != "yes":
            return turn.idle(turn.reply("away_not_saved"))
        pending = _pending(turn.data)
        return _save(turn, therapist, pending, keep=True) if pending else None
    return None


async def on_text(turn: Turn, text: str) -> Outcome | None:
    """A date typed while the time-off menu is on screen blocks it, as ``/away <date>`` would."""
    if turn.step != AWAY:
        return None
    therapist = await turn.therapist()
    if therapist is None:
        return None
    return await _block_text(turn, therapist, text)


async def _away_menu(turn: Turn, therapist: TherapistRef) -> Outcome:
    blocks = await upcoming_time_off(turn.runtime, therapist.id)
    lines = [turn.say("away_header") if blocks else turn.say("away_none")]
    lines += [f"- {span_text(turn, b.starts_at, b.ends_at)}" for b in blocks[: LISTED.get(turn.channel, 20)]]
    lines.append(turn.say("away_usage"))
    removable = blocks[: REMOVE_SHOWN.get(turn.channel, 8)]
    if removable:
        lines.append(turn.say("away_remove_hint"))
    choices: list[tuple[str, str, str | int]] = []
    if not turn.sms:  # SMS: the typed AWAY form says it all; numbered days would fill the message
        choices += _day_choices(turn)
    choices += [
        (
            turn.say("away_remove_label", span=span_text(turn, b.starts_at, b.ends_at)),
            values.AWAY_REMOVE,
            b.id,
        )
        for b in removable
    ]
    return turn.menu(AWAY, "\n".join(lines), choices, data={})


def _day_choices(turn: Turn) -> list[tuple[str, str, str | int]]:
    today = turn.runtime.clock().astimezone(NAIROBI).date()
    days = [today + timedelta(days=i) for i in range(DAYS_OFFERED)]
    choices: list[tuple[str, str, str | int]] = [
        (messages.day_label(d, turn.lang), values.AWAY_DAYS, d.strftime(_DAY)) for d in days
    ]
    sunday = today + timedelta(days=6 - today.weekday())
    if sunday > today:
        choices.append((turn.label("away_rest_of_week"), values.AWAY_DAYS, _range_arg(today, sunday)))
    choices.append(
        (
            turn.label("away_next_week"),
            values.AWAY_DAYS,
            _range_arg(sunday + timedelta(1), sunday + timedelta(7)),
        )
    )
    return choices


def _range_arg(first: date, last: date) -> str:
    return f"{first.strftime(_DAY)}-{last.strftime(_DAY)}"


def _days_arg(arg: str, now: datetime) -> AwaySpan | None:
    """The days of a button (``20261224`` or ``20261224-20261226``), if still ahead and sensible."""
    try:
        first_text, _, last_text = arg.partition("-")
        first = datetime.strptime(first_text, _DAY).date()
        last = datetime.strptime(last_text, _DAY).date() if last_text else first
    except ValueError:
        return None
    today = now.astimezone(NAIROBI).date()
    if first < today or last < first or (last - first).days >= MAX_AWAY_DAYS:
        return None
    return AwaySpan(first, last)


async def _block_text(turn: Turn, therapist: TherapistRef, text: str) -> Outcome:
    parsed = parse_away(text, turn.runtime.clock())
    if isinstance(parsed, AwayRefusal):
        return turn.idle(_refusal(turn, parsed))
    return _block(turn, therapist, parsed)


def _refusal(turn: Turn, refusal: AwayRefusal) -> Reply:
    reason = turn.say(f"away_{refusal.reason}", days=MAX_AWAY_DAYS)
    return Reply(text=f"{reason}\n{turn.say('away_example')}")


def _block(turn: Turn, therapist: TherapistRef, span: AwaySpan) -> Outcome:
    """Block at once when nothing is booked then; else list the bookings and ask first.

    Runs after the turn is claimed, so a double tap or a repeated SMS acts once."""
    interval = span.interval()

    async def effect() -> Outcome:
        try:
            result = await block_time(turn.runtime, therapist.id, interval)
        except BookingError:
            return turn.idle(_refusal(turn, AwayRefusal("past")))
        text = span_text(turn, interval.start, interval.end)
        if result.covered_by is not None:
            return turn.idle(turn.reply("away_covered", span=text))
        if result.saved is not None:
            return turn.idle(turn.reply("away_saved", span=text))
        lead = turn.say("away_clash", count=len(result.clashes), span=text)
        keep, dont = turn.label("away_keep"), turn.label("away_dont")
        return turn.menu(
            AWAY_CONFIRM,
            turn.say("away_clash_ask"),
            [(keep, values.AWAY_KEEP, "yes"), (dont, values.AWAY_KEEP, "no")],
            data={"away_start": interval.start.isoformat(), "away_end": interval.end.isoformat()},
            before=[_booking_list(turn, lead, result.clashes)],
        )

    return Outcome([], turn.step, dict(turn.data), effect=effect, keep_choices=True)


def _save(turn: Turn, therapist: TherapistRef, span: Interval, *, keep: bool) -> Outcome:
    """Block ``span`` keeping its booked sessions, after claiming the turn (a double tap acts once)."""

    async def effect() -> Outcome:
        try:
            result = await block_time(turn.runtime, therapist.id, span, keep_bookings=keep)
        except BookingError:
            return turn.idle(turn.reply("away_past"))
        text = span_text(turn, span.start, span.end)
        if result.saved is None:
            return turn.idle(turn.reply("away_covered", span=text))
        if not result.clashes:
            return turn.idle(turn.reply("away_saved", span=text))
        return turn.idle(_booking_list(turn, turn.say("away_saved_kept", span=text), result.clashes))

    return Outcome([], AWAY_CONFIRM, dict(turn.data), effect=effect, keep_choices=True)


def _remove(turn: Turn, therapist: TherapistRef, time_off_id: int) -> Outcome:
    async def effect() -> Outcome:
        removed = await remove_time_off(turn.runtime, therapist.id, time_off_id)
        if removed is None:
            return turn.idle(turn.reply("away_remove_gone"))
        return turn.idle(turn.reply("away_removed", span=span_text(turn, removed.starts_at, removed.ends_at)))

    return Outcome([], AWAY, dict(turn.data), effect=effect, keep_choices=True)


def _pending(data: dict[str, Any]) -> Interval | None:
    try:
        return Interval(datetime.fromisoformat(data["away_start"]), datetime.fromisoformat(data["away_end"]))
    except (KeyError, TypeError, ValueError):
        return None


def _booking_list(turn: Turn, lead: str, bookings: list[BookingView]) -> Reply:
    shown = bookings[: CLASHES_SHOWN.get(turn.channel, 20)]
    lines = [turn.say("away_clash_line", reference=b.reference, when=turn.when(b.starts_at)) for b in shown]
    if len(bookings) > len(shown):
        lines.append("...")
    return Reply(text="\n".join([lead, *lines]))


# -- wording ---------------------------------------------------------------------------------


def span_text(turn: Turn, starts_at: datetime, ends_at: datetime) -> str:
    """``Wed 24 Dec``, ``Wed 24 Dec to Fri 26 Dec`` or ``Wed 24 Dec, 14:00-17:00`` (Nairobi)."""
    this_year = turn.runtime.clock().astimezone(NAIROBI).year

    def day(d: date) -> str:
        label = messages.day_label(d, turn.lang)
        return label if d.year == this_year else f"{label} {d.year}"

    span = AwaySpan.of(Interval(starts_at, ends_at))
    if span is None:  # not made in the chat: from an hour of one day to an hour of another
        start, end = starts_at.astimezone(NAIROBI), ends_at.astimezone(NAIROBI)
        first, last = f"{day(start.date())} {start:%H:%M}", f"{day(end.date())} {end:%H:%M}"
        return turn.say("away_span_days", first=first, last=last)
    if span.start is not None and span.end is not None:
        return turn.say(
            "away_span_part", day=day(span.first), start=f"{span.start:%H:%M}", end=f"{span.end:%H:%M}"
        )
    if span.first == span.last:
        return day(span.first)
    return turn.say("away_span_days", first=day(span.first), last=day(span.last))
