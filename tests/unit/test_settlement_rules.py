"""The one success decision (core/domain/settlement_rules.py), driven by Hypothesis.

Both settlement paths ask ``judge_success``; these tests state its rules independently of
it: a success pays only a payable attempt of an APPROVED booking whose amount and receipt
check out, anything doubtful is flagged with every reason, a PAID attempt is a duplicate and
a QUEUED one is not ready.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.settlement_rules import (
    AttemptFacts,
    BookingFacts,
    Duplicate,
    Flag,
    NotReady,
    Paid,
    StkResult,
    judge_success,
    paid_reason,
)
from core.domain.states import BookingStatus, PaymentStatus

ATTEMPT_ID = 7
PRICE = 2500

attempts = st.builds(
    AttemptFacts,
    id=st.just(ATTEMPT_ID),
    status=st.sampled_from([s.value for s in PaymentStatus]),
    amount_kes=st.sampled_from([PRICE, 1, 100_000]),
)
bookings = st.builds(BookingFacts, status=st.sampled_from([s.value for s in BookingStatus]))
results = st.builds(
    StkResult,
    checkout_request_id=st.just("ws_CO_000007"),
    result_code=st.just(0),
    result_desc=st.just("The service request is processed successfully."),
    source=st.sampled_from(["callback", "query"]),
    amount=st.one_of(st.none(), st.sampled_from([PRICE, PRICE - 1, PRICE + 1, 1])),
    amount_raw=st.sampled_from([None, "2500.50"]),
    receipt=st.one_of(st.none(), st.just(""), st.sampled_from(["RCPT000007", "RCPTOLD001"])),
    transaction_time=st.just(datetime(2026, 11, 26, 6, 15, tzinfo=UTC)),
    phone=st.just("254708000007"),
    query_disagrees=st.booleans(),
)
owners = st.sampled_from([None, ATTEMPT_ID, 21])

PAYABLE = {"AWAITING_CUSTOMER", "UNCLEAR", "FAILED", "CANCELLED", "TIMED_OUT", "NEEDS_REVIEW"}


def _doubts(attempt: AttemptFacts, booking: BookingFacts, result: StkResult, owner: int | None) -> bool:
    """Anything that must keep a success from being marked PAID, stated from the rules."""
    wrong_amount = result.amount != attempt.amount_kes
    callback_doubt = result.source == "callback" and (wrong_amount or not result.receipt)
    receipt_reused = bool(result.receipt) and owner is not None and owner != attempt.id
    return callback_doubt or receipt_reused or result.query_disagrees or booking.status != "APPROVED"


# Feature: mpesa-payment-integration, Property 75: Duplicate Callback Detection
@settings(max_examples=300, deadline=None)
@given(attempts, bookings, results, owners)
def test_a_success_is_paid_exactly_when_nothing_is_doubtful_and_flagged_with_reasons_otherwise(
    attempt: AttemptFacts, booking: BookingFacts, result: StkResult, owner: int | None
) -> None:
    verdict = judge_success(attempt, booking, result, owner)

    if attempt.status == "QUEUED":
        assert isinstance(verdict, NotReady)
    elif attempt.status == "PAID":
        assert isinstance(verdict, Duplicate)  # a second success never pays twice
    elif _doubts(attempt, booking, result, owner):
        assert isinstance(verdict, Flag)
        assert verdict.reasons and all(verdict.reasons)
        assert verdict.reason == "; ".join(verdict.reasons)
    else:
        assert isinstance(verdict, Paid)
        assert verdict.previous == attempt.status
        assert verdict.late == (attempt.status not in {"AWAITING_CUSTOMER", "UNCLEAR"})
        assert attempt.status in PAYABLE


@settings(max_examples=200, deadline=None)
@given(attempts, bookings, results, owners)
def test_a_flag_names_each_doubt_and_keeps_a_receipt_only_when_no_other_attempt_has_it(
    attempt: AttemptFacts, booking: BookingFacts, result: StkResult, owner: int | None
) -> None:
    verdict = judge_success(attempt, booking, result, owner)
    if not isinstance(verdict, Flag):
        return
    reason = verdict.reason
    reused = bool(result.receipt) and owner is not None and owner != attempt.id
    assert ("already recorded on attempt 21" in reason) == reused
    assert ("STK Query does not confirm" in reason) == result.query_disagrees
    assert ("booking already paid" in reason) == (booking.status in {"CONFIRMED", "COMPLETED"})
    if result.source == "callback":
        assert ("receipt missing" in reason) == (not result.receipt)
        assert ("differs from the expected" in reason) == (
            result.amount is not None and result.amount != attempt.amount_kes
        )
        assert ("without a whole Amount" in reason) == (result.amount is None)
    else:  # an STK Query carries no amount or receipt to check
        assert "receipt missing" not in reason and "Amount" not in reason
    missing = result.source == "callback" and not result.receipt
    assert verdict.receipt_is_free == (not missing and not reused)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(PAYABLE)), st.sampled_from(["callback", "query"]))
def test_a_late_success_names_the_status_it_left_in_its_audit_reason(previous: str, source: str) -> None:
    result = StkResult("ws_CO_1", 0, None, source)  # type: ignore[arg-type]
    reason = paid_reason(result, previous)
    assert reason.startswith(f"{source} ResultCode 0")
    assert (f"late success after {previous}" in reason) == (previous not in {"AWAITING_CUSTOMER", "UNCLEAR"})
