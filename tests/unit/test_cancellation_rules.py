"""Who may cancel what, and the wording of cancellations (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.dialog import messages
from core.domain.states import BookingStatus
from core.services.booking.lifecycle import client_cancel_refusal
from core.templates import render
from core.templates.gsm import contains_forbidden, is_gsm7, segments
from tests.unit.test_templates import HOSTILE_NAME, LONG_NAME, SAMPLE

NOW = datetime(2031, 3, 10, 5, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize("status", [BookingStatus.PENDING_APPROVAL, BookingStatus.APPROVED])
@pytest.mark.parametrize("window", [None, timedelta(0), timedelta(hours=24)])
def test_an_unpaid_booking_may_always_be_cancelled_by_its_client(
    status: BookingStatus, window: timedelta | None
) -> None:
    assert client_cancel_refusal(status, NOW + timedelta(hours=4), now=NOW, window=window) is None


def test_a_paid_booking_needs_a_window_and_enough_time_before_its_start() -> None:
    confirmed = BookingStatus.CONFIRMED
    assert client_cancel_refusal(confirmed, NOW + 10 * DAY, now=NOW, window=None) == "paid"
    window = timedelta(hours=24)
    assert client_cancel_refusal(confirmed, NOW + window, now=NOW, window=window) is None  # exactly on it
    assert client_cancel_refusal(confirmed, NOW + timedelta(hours=25), now=NOW, window=window) is None
    assert client_cancel_refusal(confirmed, NOW + timedelta(hours=23), now=NOW, window=window) == "too_late"
    assert client_cancel_refusal(confirmed, NOW - timedelta(minutes=1), now=NOW, window=timedelta(0)) == (
        "too_late"
    )


@pytest.mark.parametrize(
    "status",
    [BookingStatus.DECLINED, BookingStatus.COMPLETED, BookingStatus.CANCELLED, BookingStatus.EXPIRED],
)
def test_a_booking_that_is_over_cannot_be_cancelled_whatever_the_window(status: BookingStatus) -> None:
    assert client_cancel_refusal(status, NOW + DAY, now=NOW, window=timedelta(0)) == "status"


@given(
    lead=st.integers(min_value=-48 * 60, max_value=15 * 24 * 60),
    window_hours=st.integers(min_value=0, max_value=720),
)
def test_a_paid_booking_is_cancellable_exactly_when_its_start_is_at_least_the_window_away(
    lead: int, window_hours: int
) -> None:
    starts_at = NOW + timedelta(minutes=lead)
    window = timedelta(hours=window_hours)
    refusal = client_cancel_refusal(BookingStatus.CONFIRMED, starts_at, now=NOW, window=window)
    assert (refusal is None) == (starts_at - NOW >= window)
    assert refusal in (None, "too_late")


# -- notices -------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["booking_cancelled_therapist", "booking_cancelled_client"])
@pytest.mark.parametrize("channel", ["telegram", "sms"])
def test_a_cancellation_notice_mentions_a_refund_only_when_one_is_due(template: str, channel: str) -> None:
    paid = render(template, channel, {**SAMPLE, "refund_due": True}).text
    unpaid = render(template, channel, {**SAMPLE, "refund_due": False}).text
    assert "refund" in paid and "refund" not in unpaid
    assert SAMPLE["reference"] in paid and SAMPLE["starts_at_local"] in paid


@pytest.mark.parametrize("cancelled_by", ["client", "practice"])
def test_the_practitioner_is_told_who_cancelled(cancelled_by: str) -> None:
    for channel in ("telegram", "sms"):
        text = render("booking_cancelled_therapist", channel, {**SAMPLE, "cancelled_by": cancelled_by}).text
        assert f"ancelled by the {cancelled_by}" in text


@pytest.mark.parametrize("template", ["booking_cancelled_therapist", "booking_cancelled_client"])
def test_cancellation_sms_fit_one_discreet_segment_even_in_test_mode_with_any_name(template: str) -> None:
    for name in ("Wanjiru Kamau", HOSTILE_NAME, LONG_NAME, "Wanjikũ 😀 “Njeri”"):
        for refund_due in (True, False):
            for test_mode in (True, False):
                data = {
                    **SAMPLE,
                    "client_name": name,
                    "therapist_name": name,
                    "session_type": "Family Therapy",
                    "refund_due": refund_due,
                    "test_mode": test_mode,
                }
                text = render(template, "sms", data).text
                assert is_gsm7(text) and not contains_forbidden(text), text
                assert segments(text) == 1, (len(text), text)


# -- chat replies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["cancel_confirm_paid", "cancel_done_refund", "cancel_paid_not_allowed", "cancel_too_late"],
)
def test_cancellation_replies_fit_one_sms_with_the_test_mode_mark_and_stay_discreet(key: str) -> None:
    fields = {
        "reference": "SS-7K3Q9X",
        "when": "Mon 03 Jun, 10:00",
        "price": "KES 12,500",
        "receipt": "QKX1ABC234",
        "window": messages.say("hours", "sms", count=720),
    }
    text = messages.say("test_mark", "sms") + messages.say(key, "sms", **fields)
    assert is_gsm7(text) and len(text) <= 160, (len(text), text)
    assert not contains_forbidden(messages.say(key, "telegram", **fields))
    assert "practice" in text or "refund" in text
