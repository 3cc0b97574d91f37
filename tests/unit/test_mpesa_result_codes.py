"""The STK result-code catalogue: categories, payment outcomes and client wording."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.mpesa.result_codes import (
    KNOWN_CODES,
    STILL_PROCESSING,
    describe_result,
    normalise_result_code,
)

FORBIDDEN = re.compile(r"therap|counsel|mental|psych", re.IGNORECASE)


@pytest.mark.parametrize(
    ("code", "category", "outcome"),
    [
        (0, "paid", "paid"),
        (1, "user_can_retry", "failed"),
        (1032, "user_can_retry", "cancelled"),
        (1037, "user_can_retry", "timed_out"),
        (1019, "user_can_retry", "timed_out"),
        (2001, "user_can_retry", "failed"),
        (1001, "user_can_retry", "failed"),
        (17, "system_retry_later", "failed"),
        (26, "system_retry_later", "failed"),
        (1025, "system_retry_later", "failed"),
        (1036, "system_retry_later", "failed"),
        (9999, "system_retry_later", "failed"),
    ],
)
def test_each_known_code_has_its_category_and_outcome(code, category, outcome):
    info = describe_result(code)
    assert (info.category, info.outcome, info.known) == (category, outcome, True)
    assert info.code == code


def test_only_code_zero_is_a_success():
    assert describe_result(0).is_success
    assert not any(describe_result(code).is_success for code in KNOWN_CODES - {0})


@pytest.mark.parametrize("code", [1031, "SFC_IC0003", 4, -1, "", "abc", 10**12])
def test_unknown_codes_are_a_generic_failure_flagged_for_review(code):
    info = describe_result(code)
    assert info.outcome == "failed"
    assert info.category == "user_can_retry"
    assert info.known is False
    assert "retry" in info.message


def test_codes_as_strings_mean_the_same_as_codes_as_integers():
    for code in KNOWN_CODES:
        assert describe_result(str(code)) == describe_result(code)
    assert describe_result(" 1032 ").outcome == "cancelled"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        (0, 0),
        ("1032", 1032),
        (1032.0, 1032),
        ("SFC_IC0003", "SFC_IC0003"),
        (" SFC_IC0003 ", "SFC_IC0003"),
        (None, None),
        (True, "True"),
    ],
)
def test_normalise_turns_numeric_strings_into_integers_and_keeps_the_rest(raw, expected):
    assert normalise_result_code(raw) == expected


def test_still_processing_is_not_in_the_catalogue():
    # 4999 means "no result yet": the client reports it as pending, never as a failure.
    assert STILL_PROCESSING not in KNOWN_CODES


def test_client_messages_say_what_to_do():
    assert "top up" in describe_result(1).message.lower()
    assert "retry" in describe_result(1).message.lower()
    assert "right pin" in describe_result(2001).message.lower()
    assert describe_result(1032).message.startswith("Payment cancelled")
    assert "retry" in describe_result(1032).message
    for code in (1037, 1019):
        message = describe_result(code).message.lower()
        assert "check your m-pesa messages" in message
        assert "if no money left your account, retry" in message


def test_no_message_names_the_kind_of_care_and_all_fit_one_sms():
    messages = [describe_result(code).message for code in KNOWN_CODES]
    messages.append(describe_result("SFC_IC0003").message)
    for message in messages:
        assert not FORBIDDEN.search(message), message
        assert 0 < len(message) <= 160, message


@settings(max_examples=200)
@given(st.one_of(st.integers(), st.text(max_size=30)))
def test_describe_result_never_raises_and_always_has_a_message(code):
    info = describe_result(code)
    assert info.message and info.outcome in ("paid", "cancelled", "timed_out", "failed")
    assert (info.outcome == "paid") == (normalise_result_code(code) == 0)
