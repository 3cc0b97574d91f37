"""The booking and payment-attempt state machines (DESIGN.md §2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.states import (
    BOOKING_TRANSITIONS,
    FAILED_PAYMENT_STATUSES,
    LIVE_BOOKING_STATUSES,
    LIVE_PAYMENT_STATUSES,
    PAYMENT_TRANSITIONS,
    BookingEvent,
    BookingStatus,
    InvalidTransition,
    PaymentEvent,
    PaymentStatus,
    booking_sources,
    booking_status_after_payment_event,
    booking_terminal_statuses,
    can_start_payment,
    next_booking_status,
    next_payment_status,
    payment_sources,
    payment_terminal_statuses,
)

B, BE = BookingStatus, BookingEvent
P, PE = PaymentStatus, PaymentEvent

BOOKING_FINAL = {B.DECLINED, B.COMPLETED, B.CANCELLED, B.EXPIRED}
PAYMENT_FAILURES = {P.FAILED, P.CANCELLED, P.TIMED_OUT}

booking_statuses = st.sampled_from(list(BookingStatus))
booking_events = st.lists(st.sampled_from(list(BookingEvent)), max_size=30)
payment_statuses = st.sampled_from(list(PaymentStatus))
payment_events = st.lists(st.sampled_from(list(PaymentEvent)), max_size=30)


def run_booking(start: BookingStatus, events: list[BookingEvent]) -> list[BookingStatus]:
    """Apply each event that is allowed; return the visited statuses (start first)."""
    path = [start]
    for event in events:
        try:
            path.append(next_booking_status(path[-1], event))
        except InvalidTransition:
            pass
    return path


def run_payment(
    start: PaymentStatus, events: list[PaymentEvent]
) -> list[tuple[PaymentStatus, PaymentEvent | None]]:
    """Apply each allowed event; return (status, event that led there) pairs, start first."""
    path: list[tuple[PaymentStatus, PaymentEvent | None]] = [(start, None)]
    for event in events:
        try:
            path.append((next_payment_status(path[-1][0], event), event))
        except InvalidTransition:
            pass
    return path


# -- booking -----------------------------------------------------------------------


def test_booking_happy_path_goes_pending_approved_confirmed_completed():
    path = run_booking(B.PENDING_APPROVAL, [BE.APPROVE, BE.PAY, BE.COMPLETE])
    assert path == [B.PENDING_APPROVAL, B.APPROVED, B.CONFIRMED, B.COMPLETED]


def test_booking_terminal_statuses_are_declined_completed_cancelled_expired():
    assert booking_terminal_statuses() == BOOKING_FINAL


@settings(max_examples=200)
@given(start=booking_statuses, events=booking_events)
def test_no_event_sequence_leaves_a_final_booking_status(start, events):
    path = run_booking(start, events)
    for before, after in zip(path, path[1:], strict=False):
        assert before not in BOOKING_FINAL, f"{before} changed to {after}"


@settings(max_examples=200)
@given(start=st.sampled_from(sorted(BOOKING_FINAL)), event=st.sampled_from(list(BookingEvent)))
def test_every_event_on_a_final_booking_raises_invalid_transition(start, event):
    with pytest.raises(InvalidTransition):
        next_booking_status(start, event)


@settings(max_examples=200)
@given(events=booking_events)
def test_a_booking_is_only_confirmed_after_approval(events):
    path = run_booking(B.PENDING_APPROVAL, events)
    if B.CONFIRMED in path:
        assert B.APPROVED in path[: path.index(B.CONFIRMED)]
    if B.COMPLETED in path:
        assert B.CONFIRMED in path[: path.index(B.COMPLETED)]


def test_pending_booking_cannot_be_paid_directly():
    with pytest.raises(InvalidTransition):
        next_booking_status(B.PENDING_APPROVAL, BE.PAY)


# Feature: mpesa-payment-integration, Property 5: Pending Sessions Block Payment
@settings(max_examples=200)
@given(status=booking_statuses)
def test_only_an_approved_booking_can_start_payment(status):
    assert can_start_payment(status) is (status is B.APPROVED)
    # the stored form (a plain string column) gives the same answer
    assert can_start_payment(str(status)) is (status is B.APPROVED)


# Feature: mpesa-payment-integration, Property 5: Pending Sessions Block Payment
def test_pending_approval_booking_blocks_payment():
    assert can_start_payment(B.PENDING_APPROVAL) is False
    assert can_start_payment("PENDING_APPROVAL") is False


# -- payment attempt -----------------------------------------------------------------


def test_paid_is_the_only_terminal_payment_status():
    assert payment_terminal_statuses() == {P.PAID}


@settings(max_examples=200)
@given(start=payment_statuses, events=payment_events)
def test_paid_never_changes_whatever_happens_next(start, events):
    path = run_payment(start, events)
    statuses = [s for s, _ in path]
    if P.PAID in statuses:
        assert all(s is P.PAID for s in statuses[statuses.index(P.PAID) :])


@settings(max_examples=200)
@given(start=payment_statuses, events=payment_events)
def test_failure_states_change_only_on_success_or_flag(start, events):
    path = run_payment(start, events)
    for (before, _), (after, event) in zip(path, path[1:], strict=False):
        if before in PAYMENT_FAILURES:
            assert (event, after) in {(PE.SUCCEED, P.PAID), (PE.FLAG, P.NEEDS_REVIEW)}, (
                f"{before} --{event}--> {after}"
            )


@settings(max_examples=200)
@given(start=st.sampled_from(sorted(PAYMENT_FAILURES)), event=st.sampled_from(list(PaymentEvent)))
def test_a_late_success_on_a_failed_attempt_is_paid_and_other_events_are_refused(start, event):
    if event is PE.SUCCEED:
        assert next_payment_status(start, event) is P.PAID
    elif event is PE.FLAG:
        assert next_payment_status(start, event) is P.NEEDS_REVIEW
    else:
        with pytest.raises(InvalidTransition):
            next_payment_status(start, event)


def test_payment_happy_path_goes_queued_awaiting_paid():
    assert next_payment_status(P.QUEUED, PE.SENT) is P.AWAITING_CUSTOMER
    assert next_payment_status(P.AWAITING_CUSTOMER, PE.SUCCEED) is P.PAID


def test_unanswered_attempt_becomes_unclear_and_can_still_be_settled_by_query():
    unclear = next_payment_status(P.AWAITING_CUSTOMER, PE.DEADLINE_PASSED)
    assert unclear is P.UNCLEAR
    assert next_payment_status(unclear, PE.SUCCEED) is P.PAID
    assert next_payment_status(unclear, PE.CANCEL) is P.CANCELLED
    assert next_payment_status(unclear, PE.FLAG) is P.NEEDS_REVIEW


def test_refused_push_is_failed_and_outcome_unknown_push_is_unclear():
    assert next_payment_status(P.QUEUED, PE.REFUSED) is P.FAILED
    assert next_payment_status(P.QUEUED, PE.PUSH_OUTCOME_UNKNOWN) is P.UNCLEAR


def test_a_queued_attempt_cannot_be_paid_before_it_was_sent():
    with pytest.raises(InvalidTransition):
        next_payment_status(P.QUEUED, PE.SUCCEED)


def test_live_and_failed_status_sets_match_the_design():
    assert LIVE_PAYMENT_STATUSES == {P.QUEUED, P.AWAITING_CUSTOMER, P.UNCLEAR}
    assert FAILED_PAYMENT_STATUSES == PAYMENT_FAILURES
    assert LIVE_BOOKING_STATUSES == {B.PENDING_APPROVAL, B.APPROVED, B.CONFIRMED}


# Feature: mpesa-payment-integration, Property 28: Failed Payment Maintains Approved Status
@settings(max_examples=200)
@given(events=payment_events)
def test_failed_cancelled_or_timed_out_payments_leave_the_booking_approved(events):
    booking = B.APPROVED
    for status, event in run_payment(P.QUEUED, events)[1:]:
        if event is PE.RESOLVE_PAID:  # an admin's decision after review, not a payment outcome
            break
        booking = booking_status_after_payment_event(booking, event)
        if status is P.PAID:
            assert booking is B.CONFIRMED
        else:
            assert booking is B.APPROVED, f"{event} ({status}) moved the booking to {booking}"


# Feature: mpesa-payment-integration, Property 28: Failed Payment Maintains Approved Status
@pytest.mark.parametrize("event", [PE.FAIL, PE.CANCEL, PE.TIME_OUT, PE.REFUSED, PE.DEADLINE_PASSED, PE.FLAG])
def test_a_failure_event_keeps_an_approved_booking_approved(event):
    assert booking_status_after_payment_event(B.APPROVED, event) is B.APPROVED


def test_a_success_confirms_an_approved_booking():
    assert booking_status_after_payment_event(B.APPROVED, PE.SUCCEED) is B.CONFIRMED


# Feature: mpesa-payment-integration, Property 28: Failed Payment Maintains Approved Status
@pytest.mark.parametrize("event", ["fail", "cancel", "time_out"])
def test_a_failure_keeps_a_stored_approved_booking_approved(event):
    # Booking.status is a plain string column: callers pass what the row holds.
    assert booking_status_after_payment_event("APPROVED", event) == B.APPROVED


def test_a_success_confirms_a_stored_approved_booking():
    assert booking_status_after_payment_event("APPROVED", "succeed") == B.CONFIRMED


@settings(max_examples=200)
@given(
    status=st.sampled_from([s for s in BookingStatus if s is not B.APPROVED]),
    event=st.sampled_from(list(PaymentEvent)),
)
def test_payment_events_never_change_a_booking_that_is_not_approved(status, event):
    assert booking_status_after_payment_event(status, event) is status


# -- the tables themselves -------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "events"), [(BOOKING_TRANSITIONS, BookingEvent), (PAYMENT_TRANSITIONS, PaymentEvent)]
)
def test_every_event_has_exactly_one_target_status(table, events):
    for event in events:
        targets = {to for (_src, ev), to in table.items() if ev == event}
        assert len(targets) == 1, f"{event} leads to {targets}"


@pytest.mark.parametrize("event", list(BookingEvent))
def test_booking_sources_are_exactly_the_statuses_the_table_allows(event):
    expected = {src for (src, ev) in BOOKING_TRANSITIONS if ev == event}
    assert booking_sources(event) == expected
    for status in BookingStatus:
        allowed = status in booking_sources(event)
        try:
            next_booking_status(status, event)
            assert allowed
        except InvalidTransition:
            assert not allowed


@pytest.mark.parametrize("event", list(PaymentEvent))
def test_payment_sources_are_exactly_the_statuses_the_table_allows(event):
    expected = {src for (src, ev) in PAYMENT_TRANSITIONS if ev == event}
    assert payment_sources(event) == expected
    for status in PaymentStatus:
        allowed = status in payment_sources(event)
        try:
            next_payment_status(status, event)
            assert allowed
        except InvalidTransition:
            assert not allowed


def test_no_payment_event_is_unreachable_and_no_status_is_orphaned():
    for event in PaymentEvent:
        assert payment_sources(event), f"{event} can never happen"
    reachable = {P.QUEUED} | set(PAYMENT_TRANSITIONS.values())
    assert reachable == set(PaymentStatus)
    assert {B.PENDING_APPROVAL} | set(BOOKING_TRANSITIONS.values()) == set(BookingStatus)


def test_invalid_transition_message_names_machine_status_and_event():
    with pytest.raises(InvalidTransition) as booking_error:
        next_booking_status(B.DECLINED, BE.APPROVE)
    assert str(booking_error.value) == "booking: cannot 'approve' from DECLINED"
    assert (booking_error.value.machine, booking_error.value.current, booking_error.value.event) == (
        "booking",
        "DECLINED",
        "approve",
    )
    with pytest.raises(InvalidTransition) as payment_error:
        next_payment_status(P.PAID, PE.FAIL)
    message = str(payment_error.value)
    assert "payment" in message and "PAID" in message and "fail" in message


def test_invalid_transition_is_a_value_error():
    with pytest.raises(ValueError):
        next_payment_status(P.PAID, PE.REFUSED)


def test_unknown_status_string_is_rejected():
    with pytest.raises(ValueError):
        next_booking_status("BOGUS", BE.APPROVE)
