"""Weekly hours and free slots: Nairobi hours, UTC storage, lead time, horizon, busy intervals."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.slots import (
    BOOKING_HORIZON_DAYS,
    DEFAULT_WEEKLY_HOURS,
    MIN_LEAD,
    NAIROBI,
    WEEKDAYS,
    Interval,
    InvalidHours,
    bookable_days,
    format_weekly_hours,
    free_slots,
    parse_weekly_hours,
    to_nairobi,
    validate_weekly_hours,
)

WEEKDAY_HOURS = {day: [["09:00", "17:00"]] for day in WEEKDAYS[:5]}
# Monday 2 March 2026, 05:00 in Nairobi (02:00 UTC): the whole working day is > 3 h away.
MONDAY = date(2026, 3, 2)
EARLY_MONDAY = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def utc(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), UTC)


# -- weekly hours -----------------------------------------------------------------------


def test_weekday_range_and_single_day_are_parsed():
    assert parse_weekly_hours("mon-fri 09:00-17:00; sat 10:00-13:00") == {
        "mon": [["09:00", "17:00"]],
        "tue": [["09:00", "17:00"]],
        "wed": [["09:00", "17:00"]],
        "thu": [["09:00", "17:00"]],
        "fri": [["09:00", "17:00"]],
        "sat": [["10:00", "13:00"]],
    }


def test_day_lists_several_ranges_per_day_and_capitals_are_accepted():
    hours = parse_weekly_hours("MON,wed 08:00-12:00; mon 14:00-18:00;")
    assert hours == {"mon": [["08:00", "12:00"], ["14:00", "18:00"]], "wed": [["08:00", "12:00"]]}


def test_parsed_hours_pass_validation_and_format_back():
    hours = parse_weekly_hours("mon-fri 09:00-17:00; sat 10:00-13:00")
    validate_weekly_hours(hours)
    assert format_weekly_hours(hours).startswith("mon 09:00-17:00; tue 09:00-17:00")
    assert format_weekly_hours(hours).endswith("sat 10:00-13:00")
    assert parse_weekly_hours(format_weekly_hours(hours)) == hours


def test_default_hours_are_monday_to_friday_nine_to_five():
    assert DEFAULT_WEEKLY_HOURS == WEEKDAY_HOURS


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ; ",
        "blah",
        "mon 9-5",
        "mon 09:00",
        "mon 17:00-09:00",  # ends before it starts
        "mon 09:00-09:00",
        "fri-mon 09:00-17:00",  # days must run forwards
        "mnd 09:00-17:00",
        "mon 25:00-26:00",
        "mon 09:60-10:00",
        "mon-fri09:00-17:00",
    ],
)
def test_unreadable_hours_raise_invalid_hours_with_an_example(text):
    with pytest.raises(InvalidHours) as error:
        parse_weekly_hours(text)
    assert "\n" not in str(error.value)


def test_invalid_hours_message_shows_the_expected_form():
    with pytest.raises(InvalidHours, match="mon-fri 09:00-17:00"):
        parse_weekly_hours("weekdays 9 to 5")


@pytest.mark.parametrize(
    "hours",
    [
        {"someday": [["09:00", "17:00"]]},
        {"mon": [["17:00", "09:00"]]},
        {"mon": [["09:00"]]},
        {"mon": [["9am", "5pm"]]},
    ],
)
def test_stored_hours_are_validated(hours):
    with pytest.raises(InvalidHours):
        validate_weekly_hours(hours)


# -- free slots ---------------------------------------------------------------------------


def test_nine_oclock_in_nairobi_is_six_oclock_utc():
    slots = free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=MONDAY, now=EARLY_MONDAY)
    assert slots[0] == utc(MONDAY, 6)
    assert to_nairobi(slots[0]).hour == 9


def test_returned_slots_are_utc_aware():
    slots = free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=MONDAY, now=EARLY_MONDAY)
    assert slots
    assert all(s.tzinfo is not None and s.utcoffset() == timedelta(0) for s in slots)


def test_the_last_slot_ends_by_closing_time():
    slots = free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=MONDAY, now=EARLY_MONDAY)
    # 09:00 .. 16:00 Nairobi every 30 minutes; 16:30 + 50 min would end after 17:00
    assert slots[-1] == utc(MONDAY, 13)
    assert len(slots) == 15
    assert all(s + timedelta(minutes=50) <= utc(MONDAY, 14) for s in slots)


def test_a_session_exactly_as_long_as_the_opening_fits_once():
    hours = {"mon": [["10:00", "11:20"]]}
    assert free_slots(hours=hours, minutes=80, busy=[], day=MONDAY, now=EARLY_MONDAY) == [utc(MONDAY, 7)]
    assert free_slots(hours=hours, minutes=81, busy=[], day=MONDAY, now=EARLY_MONDAY) == []


def test_days_without_hours_have_no_slots():
    sunday = MONDAY + timedelta(days=6)
    assert free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=sunday, now=EARLY_MONDAY) == []


def test_a_busy_interval_removes_every_overlapping_slot_and_only_those():
    busy = [Interval(utc(MONDAY, 7), utc(MONDAY, 7, 50))]  # 10:00-10:50 Nairobi
    slots = free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=busy, day=MONDAY, now=EARLY_MONDAY)
    assert utc(MONDAY, 7) not in slots
    assert utc(MONDAY, 6, 30) not in slots  # 09:30-10:20 overlaps
    assert utc(MONDAY, 7, 30) not in slots  # 10:30-11:20 overlaps
    assert utc(MONDAY, 6) in slots  # 09:00-09:50 ends before 10:00
    assert utc(MONDAY, 8) in slots  # 11:00 starts after 10:50
    assert len(slots) == 12


def test_a_slot_may_start_exactly_when_a_busy_interval_ends():
    busy = [Interval(utc(MONDAY, 6), utc(MONDAY, 7))]
    slots = free_slots(hours=WEEKDAY_HOURS, minutes=60, busy=busy, day=MONDAY, now=EARLY_MONDAY)
    assert slots[0] == utc(MONDAY, 7)


def test_slots_start_at_least_three_hours_from_now():
    now = utc(MONDAY, 7, 10)  # 10:10 Nairobi
    slots = free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=MONDAY, now=now)
    assert slots[0] == utc(MONDAY, 10, 30)  # 13:30 Nairobi: first half hour >= 13:10
    assert MIN_LEAD == timedelta(hours=3)
    exactly = free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=MONDAY, now=utc(MONDAY, 7))
    assert exactly[0] == utc(MONDAY, 10)


def test_past_days_have_no_slots():
    assert (
        free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=MONDAY - timedelta(days=7), now=EARLY_MONDAY)
        == []
    )


def test_the_booking_horizon_is_fourteen_days():
    last = MONDAY + timedelta(days=BOOKING_HORIZON_DAYS)  # a Monday, two weeks on
    assert BOOKING_HORIZON_DAYS == 14
    assert free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=last, now=EARLY_MONDAY)
    assert (
        free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=last + timedelta(days=1), now=EARLY_MONDAY)
        == []
    )
    days = bookable_days(hours=WEEKDAY_HOURS, minutes=50, busy=[], now=EARLY_MONDAY)
    assert days[0] == MONDAY and days[-1] == last
    assert all(d.weekday() < 5 for d in days)
    assert len(days) == 11  # two working weeks plus the Monday fourteen days on


def test_today_in_nairobi_not_utc_decides_the_first_day():
    # 22:30 UTC on Sunday is already 01:30 on Monday in Nairobi
    now = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)
    days = bookable_days(hours=WEEKDAY_HOURS, minutes=50, busy=[], now=now)
    assert days[0] == MONDAY


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError):
        free_slots(hours=WEEKDAY_HOURS, minutes=50, busy=[], day=MONDAY, now=datetime(2026, 3, 2, 2, 0))


def test_overlapping_ranges_do_not_offer_a_slot_twice():
    hours = parse_weekly_hours("mon 09:00-12:00; mon 10:00-13:00")
    slots = free_slots(hours=hours, minutes=60, busy=[], day=MONDAY, now=EARLY_MONDAY)
    assert len(slots) == len(set(slots))
    assert slots == sorted(slots)
    assert slots[0] == utc(MONDAY, 6) and slots[-1] == utc(MONDAY, 9)


# -- properties -----------------------------------------------------------------------------

HHMM = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@st.composite
def weekly_hours(draw: st.DrawFn) -> dict[str, list[list[str]]]:
    hours: dict[str, list[list[str]]] = {}
    for day in draw(st.lists(st.sampled_from(WEEKDAYS), unique=True, max_size=7)):
        ranges = []
        for _ in range(draw(st.integers(1, 2))):
            a, b = sorted(draw(st.lists(HHMM, min_size=2, max_size=2, unique=True)))
            ranges.append([a, b])
        hours[day] = ranges
    return hours


@st.composite
def busy_intervals(draw: st.DrawFn, around: datetime) -> list[Interval]:
    out = []
    for _ in range(draw(st.integers(0, 6))):
        start = around + timedelta(minutes=draw(st.integers(-24 * 60, 17 * 24 * 60)))
        out.append(Interval(start, start + timedelta(minutes=draw(st.integers(1, 240)))))
    return out


NOWS = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))


def inside_hours(start: datetime, end: datetime, hours) -> bool:
    local_start, local_end = start.astimezone(NAIROBI), end.astimezone(NAIROBI)
    for a, b in hours.get(WEEKDAYS[local_start.weekday()], ()):
        open_ = datetime.combine(local_start.date(), time.fromisoformat(a), NAIROBI)
        close = datetime.combine(local_start.date(), time.fromisoformat(b), NAIROBI)
        if open_ <= local_start and local_end <= close:
            return True
    return False


@settings(max_examples=200, deadline=None)
@given(hours=weekly_hours())
def test_formatted_hours_read_back_as_the_same_hours(hours):
    """The admin site's weekly-hours field shows the formatted hours; saving them unchanged keeps them."""
    if hours:
        assert parse_weekly_hours(format_weekly_hours(hours)) == hours
    else:
        assert format_weekly_hours(hours) == "no hours"


@settings(max_examples=200, deadline=None)
@given(
    hours=weekly_hours(),
    minutes=st.sampled_from([30, 45, 50, 60, 80, 90]),
    now=NOWS,
    offset=st.integers(-2, BOOKING_HORIZON_DAYS + 2),
    data=st.data(),
)
def test_no_slot_overlaps_a_busy_interval_or_falls_outside_hours(hours, minutes, now, offset, data):
    busy = data.draw(busy_intervals(now))
    today = now.astimezone(NAIROBI).date()
    day = today + timedelta(days=offset)
    slots = free_slots(hours=hours, minutes=minutes, busy=busy, day=day, now=now)
    length = timedelta(minutes=minutes)
    if not 0 <= offset <= BOOKING_HORIZON_DAYS:
        assert slots == []
    assert slots == sorted(set(slots))
    for start in slots:
        end = start + length
        assert start.utcoffset() == timedelta(0)
        assert start.astimezone(NAIROBI).date() == day
        assert start >= now + MIN_LEAD
        assert inside_hours(start, end, hours), f"{to_nairobi(start)} +{minutes} min is outside {hours}"
        assert not any(Interval(start, end).overlaps(b) for b in busy)


@settings(max_examples=100, deadline=None)
@given(minutes=st.sampled_from([30, 45, 50, 60, 80]), now=NOWS, busy=st.data())
def test_a_busy_interval_only_ever_removes_slots(minutes, now, busy):
    intervals = busy.draw(busy_intervals(now))
    day = now.astimezone(NAIROBI).date() + timedelta(days=1)
    free = free_slots(hours=WEEKDAY_HOURS, minutes=minutes, busy=[], day=day, now=now)
    with_busy = free_slots(hours=WEEKDAY_HOURS, minutes=minutes, busy=intervals, day=day, now=now)
    assert set(with_busy) <= set(free)
    length = timedelta(minutes=minutes)
    removed = set(free) - set(with_busy)
    assert all(any(Interval(s, s + length).overlaps(b) for b in intervals) for s in removed)
