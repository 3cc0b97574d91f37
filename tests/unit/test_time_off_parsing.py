"""Reading a practitioner's time off from a chat or an SMS (core/domain/time_off.py): the forms
people type, the year of a date given without one, and a clear refusal for everything else.

The clock is a parameter: every example names the moment it is read at.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.slots import NAIROBI, compact_weekly_hours, parse_weekly_hours
from core.domain.time_off import MAX_AWAY_DAYS, AwayRefusal, AwaySpan, parse_away

FRIDAY_MORNING = datetime(2026, 12, 4, 9, 0, tzinfo=NAIROBI)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@pytest.mark.parametrize(
    ("typed", "first", "last", "hours"),
    [
        ("24 DEC", date(2026, 12, 24), date(2026, 12, 24), None),
        ("24-26 DEC", date(2026, 12, 24), date(2026, 12, 26), None),
        ("24 dec 14:00-17:00", date(2026, 12, 24), date(2026, 12, 24), (time(14), time(17))),
        ("24 Dec 2-5pm", date(2026, 12, 24), date(2026, 12, 24), (time(14), time(17))),
        ("24th December from 9am to 1pm", date(2026, 12, 24), date(2026, 12, 24), (time(9), time(13))),
        ("30 Dec - 2 Jan", date(2026, 12, 30), date(2027, 1, 2), None),
        ("Dec 24-26", date(2026, 12, 24), date(2026, 12, 26), None),
        ("24 dec to 26 dec", date(2026, 12, 24), date(2026, 12, 26), None),
        ("24/12", date(2026, 12, 24), date(2026, 12, 24), None),
        ("2026-12-24", date(2026, 12, 24), date(2026, 12, 24), None),
        ("24 Desemba", date(2026, 12, 24), date(2026, 12, 24), None),
        ("tomorrow", date(2026, 12, 5), date(2026, 12, 5), None),
        ("kesho 14.00-15.30", date(2026, 12, 5), date(2026, 12, 5), (time(14), time(15, 30))),
        ("fri", date(2026, 12, 4), date(2026, 12, 4), None),  # today is a Friday
        ("mon", date(2026, 12, 7), date(2026, 12, 7), None),
        ("today 10:00-12:00", date(2026, 12, 4), date(2026, 12, 4), (time(10), time(12))),  # still running
        ("15 jan", date(2027, 1, 15), date(2027, 1, 15), None),  # the next 15 January
        ("24 dec 14-17", date(2026, 12, 24), date(2026, 12, 24), (time(14), time(17))),  # bare hours
        ("dec 24 9-12", date(2026, 12, 24), date(2026, 12, 24), (time(9), time(12))),
    ],
)
def test_the_forms_practitioners_type_are_read(
    typed: str, first: date, last: date, hours: tuple[time, time] | None
):
    span = parse_away(typed, FRIDAY_MORNING)
    start, end = hours or (None, None)
    assert span == AwaySpan(first, last, start, end)


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("hello there", "unreadable"),
        ("", "unreadable"),
        ("24", "unreadable"),  # no month
        ("31 feb", "no_date"),
        ("24 dec 2025", "past"),  # an explicit year in the past
        ("1 dec", "past"),  # passed three days ago: a slip, not next December
        ("today 07:00-08:30", "past"),  # ended half an hour ago
        ("24 dec 2030", "too_far"),
        ("26-24 dec 2026", "backwards"),
        ("1 jan - 30 jun", "too_long"),
        ("24-26 dec 10:00-12:00", "times_one_day"),
        ("24 dec 17:00-14:00", "bad_times"),
        ("24 dec 25:00-26:00", "bad_times"),
    ],
)
def test_anything_else_is_refused_with_a_reason(typed: str, reason: str):
    assert parse_away(typed, FRIDAY_MORNING) == AwayRefusal(reason)


def test_a_whole_day_runs_from_midnight_to_midnight_nairobi_time_stored_in_utc():
    span = parse_away("24 dec", FRIDAY_MORNING)
    assert isinstance(span, AwaySpan)
    interval = span.interval()
    assert interval.start == datetime(2026, 12, 23, 21, 0, tzinfo=UTC)
    assert interval.end == datetime(2026, 12, 24, 21, 0, tzinfo=UTC)


def test_a_range_across_the_new_year_ends_in_the_next_year_and_the_next_january_is_chosen():
    late_december = datetime(2026, 12, 28, 12, 0, tzinfo=NAIROBI)
    assert parse_away("2 JAN", late_december) == AwaySpan(date(2027, 1, 2), date(2027, 1, 2))
    assert parse_away("30 DEC-2 JAN", late_december) == AwaySpan(date(2026, 12, 30), date(2027, 1, 2))


@pytest.mark.parametrize("typed", ["²", "24 dec ²", "٢٤ dec", "1² jan"])
def test_digits_of_other_scripts_are_refused_not_raised(typed: str):  # found by Hypothesis
    assert parse_away(typed, FRIDAY_MORNING) == AwayRefusal("unreadable")


def test_a_naive_clock_or_a_non_text_is_refused_not_raised():
    assert parse_away("24 dec", datetime(2026, 12, 4, 9, 0)) == AwayRefusal("unreadable")
    assert parse_away(None, FRIDAY_MORNING) == AwayRefusal("unreadable")


PIECES = st.sampled_from(
    [
        "24",
        "dec",
        "-",
        "14:00",
        "pm",
        " ",
        "/",
        "2026",
        "to",
        "jan",
        "feb",
        "29",
        "31",
        ".",
        "24:00",
        "th",
        "kesho",
    ]
)
TYPED = st.one_of(
    st.text(max_size=80),
    st.lists(PIECES, max_size=12).map("".join),
    st.lists(PIECES, max_size=8).map(" ".join),
)


@settings(max_examples=300, deadline=None)
@given(
    text=TYPED,
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2098, 12, 31), timezones=st.just(UTC)
    ),
)
def test_the_parser_never_raises_and_accepts_only_time_off_ahead(text: str, now: datetime):
    result = parse_away(text, now)
    assert isinstance(result, AwaySpan | AwayRefusal)
    if isinstance(result, AwaySpan):
        interval = result.interval()
        assert interval.end > interval.start
        assert interval.end > now
        assert (result.last - result.first).days < MAX_AWAY_DAYS


@settings(max_examples=200, deadline=None)
@given(
    ahead=st.integers(min_value=0, max_value=300),
    length=st.integers(min_value=0, max_value=20),
    hour=st.integers(min_value=0, max_value=23),
)
def test_any_day_ahead_typed_as_day_and_month_is_that_day(ahead: int, length: int, hour: int):
    now = datetime(2026, 12, 4, hour, 0, tzinfo=NAIROBI)
    first = now.date() + timedelta(days=ahead)
    last = first + timedelta(days=length)
    typed = f"AWAY {first.day} {MONTHS[first.month - 1]}-{last.day} {MONTHS[last.month - 1]}"
    assert parse_away(typed.removeprefix("AWAY "), now) == AwaySpan(first, last)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
        st.sampled_from(
            [[["09:00", "17:00"]], [["08:00", "12:00"], ["14:00", "18:00"]], [["10:00", "13:00"]]]
        ),
        min_size=1,
    )
)
def test_compact_weekly_hours_read_back_as_the_same_hours(hours: dict[str, list[list[str]]]):
    assert parse_weekly_hours(compact_weekly_hours(hours)) == hours
