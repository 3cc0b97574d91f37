"""Free appointment slots from a therapist's weekly hours (Africa/Nairobi) and live bookings.

Everything is computed in aware datetimes: hours are read in Nairobi time, results are
returned in UTC for storage. Pure functions: the caller passes ``now``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BOOKING_HORIZON_DAYS = 14
MIN_LEAD = timedelta(hours=3)
SLOT_STEP_MINUTES = 30
DEFAULT_WEEKLY_HOURS: dict[str, list[list[str]]] = {day: [["09:00", "17:00"]] for day in WEEKDAYS[:5]}

WeeklyHours = Mapping[str, Sequence[Sequence[str]]]


class InvalidHours(ValueError):
    """Weekly hours that cannot be understood; the message shows the expected form."""


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


_HOURS_PART = re.compile(
    r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)\s+"
    r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$"
)
HOURS_FORMAT = "e.g. 'mon-fri 09:00-17:00; sat 10:00-13:00'"


def parse_weekly_hours(text: str) -> dict[str, list[list[str]]]:
    """Parse ``"mon-fri 09:00-17:00; sat 10:00-13:00"`` into the stored JSON form."""
    hours: dict[str, list[list[str]]] = {}
    parts = [p.strip().lower() for p in text.split(";") if p.strip()]
    if not parts:
        raise InvalidHours(f"no hours given ({HOURS_FORMAT})")
    for part in parts:
        match = _HOURS_PART.match(part)
        if not match:
            raise InvalidHours(f"cannot read '{part}' ({HOURS_FORMAT})")
        start, end = _parse_hhmm(match["start"]), _parse_hhmm(match["end"])
        if end <= start:
            raise InvalidHours(f"'{part}': the end must be after the start")
        for day in _expand_days(match["days"]):
            hours.setdefault(day, []).append([match["start"], match["end"]])
    return hours


def validate_weekly_hours(hours: WeeklyHours) -> None:
    """Raise InvalidHours unless ``hours`` is ``{day: [[HH:MM, HH:MM], ...]}``."""
    for day, ranges in hours.items():
        if day not in WEEKDAYS:
            raise InvalidHours(f"unknown weekday '{day}'")
        for pair in ranges:
            if len(pair) != 2 or _parse_hhmm(pair[1]) <= _parse_hhmm(pair[0]):
                raise InvalidHours(f"bad range {pair!r} on {day}")


def format_weekly_hours(hours: WeeklyHours) -> str:
    """Weekly hours as :func:`parse_weekly_hours` reads them, a day after another
    (``mon 09:00-12:00; mon 13:00-17:00; tue 09:00-17:00``), so an edit form can show them."""
    parts = [f"{day} {a}-{b}" for day in WEEKDAYS for a, b in hours.get(day, ())]
    return "; ".join(parts) or "no hours"


def compact_weekly_hours(hours: WeeklyHours) -> str:
    """Weekly hours as short as :func:`parse_weekly_hours` reads them back: days in a row with
    the same ranges share one entry (``mon-fri 09:00-17:00; sat 10:00-13:00``); "" for none."""
    runs: list[tuple[str, str, list[tuple[str, str]]]] = []  # (first day, last day, ranges)
    for day in WEEKDAYS:
        ranges = sorted((str(a), str(b)) for a, b in hours.get(day, ()))
        if runs and runs[-1][2] == ranges and WEEKDAYS.index(runs[-1][1]) + 1 == WEEKDAYS.index(day):
            runs[-1] = (runs[-1][0], day, ranges)
        elif ranges:
            runs.append((day, day, ranges))
    days = [(first if first == last else f"{first}-{last}", ranges) for first, last, ranges in runs]
    return "; ".join(f"{span} {a}-{b}" for span, ranges in days for a, b in ranges)


def free_slots(
    *,
    hours: WeeklyHours,
    minutes: int,
    busy: Iterable[Interval],
    day: date,
    now: datetime,
    step_minutes: int = SLOT_STEP_MINUTES,
    min_lead: timedelta = MIN_LEAD,
    horizon_days: int = BOOKING_HORIZON_DAYS,
) -> list[datetime]:
    """Start times (UTC) on the Nairobi ``day`` where a ``minutes``-long session fits."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(NAIROBI).date()
    if day < today or day > today + timedelta(days=horizon_days):
        return []
    busy_list = list(busy)
    earliest = now + min_lead
    length = timedelta(minutes=minutes)
    slots: list[datetime] = []
    for start_text, end_text in hours.get(WEEKDAYS[day.weekday()], ()):
        cursor = datetime.combine(day, _parse_hhmm(start_text), NAIROBI)
        close = datetime.combine(day, _parse_hhmm(end_text), NAIROBI)
        while cursor + length <= close:
            candidate = Interval(cursor.astimezone(UTC), (cursor + length).astimezone(UTC))
            if candidate.start >= earliest and not any(candidate.overlaps(b) for b in busy_list):
                slots.append(candidate.start)
            cursor += timedelta(minutes=step_minutes)
    return sorted(set(slots))  # overlapping or unordered ranges must not offer a slot twice


def bookable_days(
    *,
    hours: WeeklyHours,
    minutes: int,
    busy: Iterable[Interval],
    now: datetime,
    horizon_days: int = BOOKING_HORIZON_DAYS,
) -> list[date]:
    """Nairobi dates in the horizon that have at least one free slot."""
    busy_list = list(busy)
    today = now.astimezone(NAIROBI).date()
    return [
        day
        for day in (today + timedelta(days=i) for i in range(horizon_days + 1))
        if free_slots(hours=hours, minutes=minutes, busy=busy_list, day=day, now=now)
    ]


def to_nairobi(moment: datetime) -> datetime:
    """Display form of a stored UTC time."""
    return moment.astimezone(NAIROBI)


def format_nairobi(moment: datetime) -> str:
    """A stored UTC time as people in Kenya read it: ``Mon 30 Nov 2026, 10:00 EAT``."""
    return moment.astimezone(NAIROBI).strftime("%a %d %b %Y, %H:%M EAT")


def _parse_hhmm(text: str) -> time:
    try:
        hour, minute = (int(x) for x in text.split(":"))
        return time(hour, minute)
    except (ValueError, TypeError):
        raise InvalidHours(f"'{text}' is not a time HH:MM") from None


def _expand_days(spec: str) -> list[str]:
    days: list[str] = []
    for chunk in spec.split(","):
        first, _, last = chunk.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise InvalidHours(f"unknown weekday in '{chunk}' ({HOURS_FORMAT})")
        i, j = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if j < i:
            raise InvalidHours(f"'{chunk}': days must run forwards")
        days.extend(WEEKDAYS[i : j + 1])
    return days
