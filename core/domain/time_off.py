"""Reading a practitioner's time off as typed in a chat or an SMS: pure, and never raises.

``24 DEC``, ``24-26 DEC``, ``30 Dec - 2 Jan``, ``24 DEC 14:00-17:00``, ``24/12``,
``2026-12-24``, ``tomorrow``, ``fri`` (and the Kiswahili month and day names, ``leo``,
``kesho``). A date without a year is its next occurrence (today counts); the end of a range
is the first such date on or after its start, so ``30 DEC-2 JAN`` crosses the new year; a
date without a year that passed less than a month ago is refused as past (typed on 4 Dec,
``1 DEC`` is a slip, not next December).
Anything else — a past date, a date that does not exist, a range running backwards or longer
than :data:`MAX_AWAY_DAYS`, times on a range of days — is refused with a :class:`AwayRefusal`
whose ``reason`` names the sentence to show (``away_<reason>`` in the message catalogue).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from core.domain.slots import NAIROBI, Interval

MAX_AWAY_DAYS = 92  # longer is a typing mistake, or a matter for the practice (deactivate)
MAX_AHEAD_DAYS = 366
MAX_TEXT = 60
RECENT_PAST_DAYS = 31  # a date without a year this recently passed is refused, not moved a year on

_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "jan january januari",
        "feb february februari",
        "mar march machi mac",
        "apr april aprili",
        "may mei",
        "jun june juni",
        "jul july julai",
        "aug august agosti ago",
        "sep sept september septemba",
        "oct october oktoba okt",
        "nov november novemba",
        "dec december desemba des",
    ),
    start=1,
):
    _MONTHS.update(dict.fromkeys(_names.split(), _number))

_WEEKDAYS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "mon monday jumatatu",
        "tue tues tuesday jumanne",
        "wed wednesday jumatano",
        "thu thur thurs thursday alhamisi",
        "fri friday ijumaa",
        "sat saturday jumamosi",
        "sun sunday jumapili",
    )
):
    _WEEKDAYS.update(dict.fromkeys(_names.split(), _number))

_RELATIVE = {"today": 0, "leo": 0, "tomorrow": 1, "kesho": 1}
_CLOCK = r"\d{1,2}(?:[:.]\d{2})?\s*(?:am|pm)?"
_TIMES = re.compile(rf"^(?P<rest>.*?)\s*(?P<t1>{_CLOCK})\s*(?:-|to|hadi|mpaka)\s*(?P<t2>{_CLOCK})$")
_ONE_CLOCK = re.compile(r"^(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*(?P<ampm>am|pm)?$")
_RANGE = re.compile(r"\s*(?:-|\bto\b|\buntil\b|\btill\b|\bhadi\b|\bmpaka\b)\s*")
_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")


@dataclass(frozen=True)
class AwaySpan:
    """Whole days ``first``..``last`` (Nairobi), or part of the one day ``first`` when times are set."""

    first: date
    last: date
    start: time | None = None
    end: time | None = None

    @property
    def whole_days(self) -> bool:
        return self.start is None

    @classmethod
    def of(cls, interval: Interval) -> AwaySpan | None:
        """The days (or part of a day) a stored block covers, as people name them; None for a
        block that runs from an hour of one day to an hour of another (not typed here)."""
        start, end = interval.start.astimezone(NAIROBI), interval.end.astimezone(NAIROBI)
        if start.time() == end.time() == time(0) and end.date() > start.date():
            return cls(start.date(), end.date() - timedelta(days=1))
        if start.date() == end.date() and end > start:
            return cls(start.date(), start.date(), start.time(), end.time())
        return None

    def interval(self) -> Interval:
        """The span in UTC: whole days run from midnight to midnight, Nairobi time."""
        if self.start is None or self.end is None:
            begin = datetime.combine(self.first, time(0), NAIROBI)
            finish = datetime.combine(self.last + timedelta(days=1), time(0), NAIROBI)
        else:
            begin = datetime.combine(self.first, self.start, NAIROBI)
            finish = datetime.combine(self.first, self.end, NAIROBI)
        return Interval(begin.astimezone(UTC), finish.astimezone(UTC))


@dataclass(frozen=True)
class AwayRefusal:
    """Why a text is not time off: ``unreadable``, ``no_date``, ``past``, ``too_far``,
    ``backwards``, ``too_long``, ``times_one_day`` or ``bad_times``."""

    reason: str


# (day, month, year); a missing month or year is None.
_Partial = tuple[int, int | None, int | None]


def parse_away(text: object, now: datetime) -> AwaySpan | AwayRefusal:
    """The time off ``text`` names, seen at ``now`` (aware); a refusal for anything else."""
    if not isinstance(text, str) or now.tzinfo is None:
        return AwayRefusal("unreadable")
    local_now = now.astimezone(NAIROBI)
    today = local_now.date()
    cleaned = _normalise(text)
    if not cleaned or len(cleaned) > MAX_TEXT:
        return AwayRefusal("unreadable")
    cleaned, times = _split_times(cleaned, today)
    if isinstance(times, AwayRefusal):
        return times
    span = _read_days(cleaned, today)
    if isinstance(span, AwayRefusal):
        return span
    first, last = span
    if last < first:
        return AwayRefusal("backwards")
    if first < today:
        return AwayRefusal("past")
    if first > today + timedelta(days=MAX_AHEAD_DAYS):
        return AwayRefusal("too_far")
    if (last - first).days + 1 > MAX_AWAY_DAYS:
        return AwayRefusal("too_long")
    if times is None:
        return AwaySpan(first, last)
    if first != last:
        return AwayRefusal("times_one_day")
    start, end = times
    if first == today and datetime.combine(first, end, NAIROBI) <= local_now:
        return AwayRefusal("past")
    return AwaySpan(first, first, start, end)


def _normalise(text: str) -> str:
    if any(c.isdigit() and not c.isascii() for c in text):
        return ""  # "²" or "٣" are digits to str.isdigit/int but never a date typed here
    text = text.casefold().replace("\u2013", "-").replace("\u2014", "-")
    text = re.sub(r"[,;]", " ", text)
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)  # 24th -> 24
    text = re.sub(r"(\d)([a-z])", r"\1 \2", text)  # 24dec -> 24 dec
    text = re.sub(r"\s+(am|pm)\b", r"\1", text)  # "2 pm" -> "2pm"
    text = re.sub(r"([a-z])(\d)", r"\1 \2", text)  # dec24 -> dec 24
    text = _ISO.sub(lambda m: f"{m[3]}/{m[2]}/{m[1]}", text)  # 2026-12-24 -> 24/12/2026
    text = re.sub(r"\s+(am|pm)\b", r"\1", text)
    return " ".join(text.split()).strip(" .")


def _split_times(text: str, today: date) -> tuple[str, tuple[time, time] | AwayRefusal | None]:
    """Cut a trailing ``14:00-17:00`` / ``2-5pm`` off the text: (rest, (start, end) or a refusal or None)."""
    match = _TIMES.match(text)
    if match is None or not match["rest"]:
        return text, None
    t1, t2 = match["t1"], match["t2"]
    marked = any(mark in t1 + t2 for mark in (":", "am", "pm"))
    dotted = "." in t1 and "." in t2 and _clock(t1) is not None and _clock(t2) is not None
    # "24 dec 14-17": bare hours after a whole date; but in "dec 24-26" the numbers are days.
    bare = not isinstance(_read_days(match["rest"], today), AwayRefusal)
    if not (marked or dotted or bare):
        return text, None
    suffix = next((s for s in ("am", "pm") if t2.endswith(s) and not t1.endswith(("am", "pm"))), "")
    start, end = _clock(t1 + suffix), _clock(t2)
    if suffix and start is not None and end is not None and start >= end:
        start = _clock(t1)  # "11-2pm": 11:00 to 14:00
    if start is None or end is None or end <= start:
        return match["rest"], AwayRefusal("bad_times")
    return match["rest"].removesuffix(" from").strip(), (start, end)


def _clock(text: str) -> time | None:
    match = _ONE_CLOCK.match(text.strip())
    if match is None:
        return None
    hour, minute = int(match["h"]), int(match["m"] or 0)
    if match["ampm"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["ampm"] == "pm" else 0)
    if hour == 24 and minute == 0:
        return time(23, 59)  # "until 24:00": the end of the day
    return time(hour, minute) if hour < 24 and minute < 60 else None


def _read_days(text: str, today: date) -> tuple[date, date] | AwayRefusal:
    words = text.split()
    if words and words[0] in ("from", "on"):
        text = " ".join(words[1:])
    parts = [p for p in _RANGE.split(text) if p]
    if len(parts) not in (1, 2) or len(_RANGE.findall(text)) > 1:
        return AwayRefusal("unreadable")
    read = [r for r in (_part(p, today) for p in parts) if r is not None]
    if len(read) != len(parts):
        return AwayRefusal("unreadable")
    if len(read) == 1:
        only = read[0]
        day = only if isinstance(only, date) else _resolve(only, today, None)
        return (day, day) if isinstance(day, date) else day
    return _resolve_range(read[0], read[1], today)


def _resolve_range(
    head: date | _Partial, tail: date | _Partial, today: date
) -> tuple[date, date] | AwayRefusal:
    if isinstance(tail, date):
        last: date | AwayRefusal = tail
        if not isinstance(head, date):
            head = (head[0], head[1] or tail.month, head[2] or tail.year)
            first = _resolve(head, today, None, before=tail)
        else:
            first = head
    else:
        if isinstance(head, date):
            first = head
        else:
            if head[1] is None:  # "24-26 dec": the month (and year) of the end
                head = (head[0], tail[1], head[2] or tail[2])
            elif tail[1] is None:  # "dec 24-26": the month (and year) of the start
                tail = (tail[0], head[1], tail[2] or head[2])
            if head[2] is None and tail[2] is not None:
                first = _resolve(head, today, None, before=_exact(tail))
            else:
                first = _resolve(head, today, None)
        last = _resolve(tail, today, first if isinstance(first, date) else None)
    if isinstance(first, AwayRefusal):
        return first
    if isinstance(last, AwayRefusal):
        return last
    return first, last


def _exact(partial: _Partial) -> date | None:
    day, month, year = partial
    try:
        return date(year, month, day) if month and year else None
    except ValueError:
        return None


def _resolve(
    partial: _Partial, today: date, after: date | None, *, before: date | None = None
) -> date | AwayRefusal:
    """A (day, month, year) as a date: without a year, the next occurrence on/after ``after``
    (default today), or the last one on/before ``before`` when that is given."""
    day, month, year = partial
    if month is None:
        return AwayRefusal("unreadable")
    if year is not None:
        try:
            return date(year, month, day)
        except ValueError:
            return AwayRefusal("no_date")
    if before is not None:
        for candidate_year in range(before.year, before.year - 5, -1):
            candidate = _date_or_none(candidate_year, month, day)
            if candidate is not None and candidate <= before:
                return candidate
        return AwayRefusal("no_date")
    if after is None:  # "1 DEC" typed on 4 Dec is a mistake, not next year's 1 December
        recent = _date_or_none(today.year - (month > today.month), month, day)
        if recent is not None and today - timedelta(days=RECENT_PAST_DAYS) <= recent < today:
            return AwayRefusal("past")
    floor = after or today
    for candidate_year in range(floor.year, floor.year + 5):
        candidate = _date_or_none(candidate_year, month, day)
        if candidate is not None and candidate >= floor:
            return candidate
    return AwayRefusal("no_date")


def _date_or_none(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _part(text: str, today: date) -> date | _Partial | None:
    """One side of a range: a date, a (day, month?, year?) to resolve, or None if unreadable."""
    words = text.split()
    if len(words) == 1 and words[0] in _RELATIVE:
        return today + timedelta(days=_RELATIVE[words[0]])
    if len(words) == 1 and words[0] in _WEEKDAYS:
        return today + timedelta(days=(_WEEKDAYS[words[0]] - today.weekday()) % 7)
    if len(words) == 1 and "/" in words[0]:
        return _slashed(words[0])
    day = month = year = None
    for word in words:
        if word.isdigit() and len(word) <= 2 and day is None:
            day = int(word)
        elif word.isdigit() and len(word) == 4 and year is None:
            year = int(word)
        elif word in _MONTHS and month is None:
            month = _MONTHS[word]
        else:
            return None
    if day is None or not 1 <= day <= 31 or year is not None and month is None:
        return None
    return (day, month, year)


def _slashed(word: str) -> _Partial | None:
    """``24/12`` or ``24/12/2026`` (day first, as in Kenya)."""
    pieces = word.split("/")
    if len(pieces) not in (2, 3) or not all(p.isdigit() and len(p) <= 4 for p in pieces):
        return None
    day, month = int(pieces[0]), int(pieces[1])
    year = int(pieces[2]) if len(pieces) == 3 else None
    if not (1 <= day <= 31 and 1 <= month <= 12) or year is not None and not 2000 <= year <= 2100:
        return None
    return (day, month, year)
