"""Rescheduling rules without a database: who may move what when, the settings, the states,
and the calendar invitation a moved session sends (same UID, higher SEQUENCE)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from core.config import ConfigError, load_settings
from core.domain.states import (
    RESCHEDULE_TRANSITIONS,
    BookingStatus,
    InvalidTransition,
    RescheduleEvent,
    RescheduleStatus,
    next_reschedule_status,
)
from core.services.booking.reschedule import client_reschedule_refusal
from core.templates import render

NOW = datetime(2031, 3, 10, 5, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.mark.parametrize(
    ("status", "starts_in", "window", "refusal"),
    [
        (BookingStatus.CONFIRMED, timedelta(hours=50), DAY, None),
        (BookingStatus.APPROVED, timedelta(hours=50), DAY, None),
        (BookingStatus.CONFIRMED, timedelta(hours=24), DAY, None),  # exactly at the window: still allowed
        (BookingStatus.CONFIRMED, timedelta(hours=23, minutes=59), DAY, "too_late"),
        (BookingStatus.APPROVED, timedelta(hours=1), timedelta(0), None),
        (BookingStatus.CONFIRMED, timedelta(hours=50), None, "off"),
        (BookingStatus.PENDING_APPROVAL, timedelta(hours=50), DAY, "status"),
        (BookingStatus.CANCELLED, timedelta(hours=50), DAY, "status"),
        (BookingStatus.COMPLETED, timedelta(hours=50), DAY, "status"),
    ],
)
def test_a_client_may_move_approved_and_paid_sessions_until_the_window(status, starts_in, window, refusal):
    assert client_reschedule_refusal(status, NOW + starts_in, now=NOW, window=window) == refusal


def test_the_reschedule_window_defaults_to_24_hours_and_set_empty_means_never():
    assert load_settings({}).client_reschedule_window == DAY
    assert load_settings({"CLIENT_RESCHEDULE_WINDOW_HOURS": ""}).client_reschedule_window is None
    assert load_settings({"CLIENT_RESCHEDULE_WINDOW_HOURS": " "}).client_reschedule_window is None
    assert load_settings({"CLIENT_RESCHEDULE_WINDOW_HOURS": "0"}).client_reschedule_window == timedelta(0)
    assert load_settings({"CLIENT_RESCHEDULE_WINDOW_HOURS": "720"}).client_reschedule_window_hours == 720
    assert load_settings({}).reschedule_needs_approval is False
    assert load_settings({"RESCHEDULE_NEEDS_APPROVAL": "true"}).reschedule_needs_approval is True


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CLIENT_RESCHEDULE_WINDOW_HOURS": "-1"}, "0 to 720"),
        ({"CLIENT_RESCHEDULE_WINDOW_HOURS": "721"}, "0 to 720"),
        ({"CLIENT_RESCHEDULE_WINDOW_HOURS": "24h"}, "whole number"),
        ({"CLIENT_RESCHEDULE_WINDOW_HOURS": "1.5"}, "whole number"),
        ({"RESCHEDULE_NEEDS_APPROVAL": "maybe"}, "true or false"),
    ],
)
def test_a_bad_reschedule_setting_gives_one_line_naming_the_variable(env, says):
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    line = str(error.value)
    assert "\n" not in line and line.startswith(next(iter(env))) and says in line


def test_a_pending_move_is_approved_declined_or_withdrawn_and_nothing_else():
    assert (
        next_reschedule_status(RescheduleStatus.PENDING, RescheduleEvent.APPROVE) is RescheduleStatus.APPLIED
    )
    assert (
        next_reschedule_status(RescheduleStatus.PENDING, RescheduleEvent.DECLINE) is RescheduleStatus.DECLINED
    )
    assert {src for src, _ in RESCHEDULE_TRANSITIONS} == {RescheduleStatus.PENDING}
    for done in (RescheduleStatus.APPLIED, RescheduleStatus.DECLINED, RescheduleStatus.WITHDRAWN):
        with pytest.raises(InvalidTransition):
            next_reschedule_status(done, RescheduleEvent.APPROVE)


DATA = {
    "reference": "SS1A2B3C4D5E",
    "receipt": "TJK3H2L9QZ",
    "amount_kes": 2500,
    "meeting_url": "https://meet.jit.si/SmilingSteps-abc",
    "starts_at_local": "Wed 12 Mar 2031, 10:00 EAT",
    "old_starts_at_local": "Wed 12 Mar 2031, 10:00 EAT",
    "new_starts_at_local": "Thu 13 Mar 2031, 11:00 EAT",
}


def _event(template: str, **data: object):
    message = render(template, "email", {**DATA, **data})
    [invite] = message.attachments
    [event] = Calendar.from_ical(invite.content).walk("VEVENT")
    return event


def test_each_move_sends_the_same_event_uid_with_a_higher_sequence():
    first = _event(
        "payment_confirmed_email",
        starts_at_iso="2031-03-12T07:00:00+00:00",
        ends_at_iso="2031-03-12T07:50:00+00:00",
    )
    moves = [
        _event(
            "booking_rescheduled_email",
            sequence=n,
            starts_at_iso=f"2031-03-1{2 + n}T08:00:00+00:00",
            ends_at_iso=f"2031-03-1{2 + n}T08:50:00+00:00",
        )
        for n in (1, 2)
    ]
    assert {str(e["UID"]) for e in (first, *moves)} == {"SS1A2B3C4D5E@smilingsteps"}
    assert [int(e["SEQUENCE"]) for e in (first, *moves)] == [0, 1, 2]
    assert moves[0].decoded("DTSTART") == datetime(2031, 3, 13, 8, 0, tzinfo=UTC)


def test_a_moved_unpaid_session_gets_an_invitation_without_a_join_link():
    event = _event(
        "booking_rescheduled_email",
        sequence=1,
        meeting_url=None,
        starts_at_iso="2031-03-13T08:00:00+00:00",
        ends_at_iso="2031-03-13T08:50:00+00:00",
    )
    assert "LOCATION" not in event and "Booking reference: SS1A2B3C4D5E" in str(event["DESCRIPTION"])
