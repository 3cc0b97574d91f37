"""Whole Kenyan shillings from whatever a provider sends (DESIGN.md §4: amounts compare numerically)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.money import InvalidAmount, format_kes, to_whole_kes


@pytest.mark.parametrize("value", [1, 1.0, "1", "1.00", " 1 ", Decimal("1.0"), "1.000000"])
def test_one_shilling_in_every_spelling_is_1(value):
    assert to_whole_kes(value) == 1
    assert type(to_whole_kes(value)) is int


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        "1.5",
        "0.01",
        "abc",
        "",
        "1,000",
        "KES 100",
        True,
        False,
        None,
        -1,
        "-1",
        -0.5,
        float("nan"),
        "NaN",
        float("inf"),
        "-inf",
        "Infinity",
        [1],
        {"Amount": 1},
        object(),
    ],
)
def test_fractions_booleans_negatives_and_junk_are_invalid_amounts(value):
    with pytest.raises(InvalidAmount):
        to_whole_kes(value)


def test_invalid_amount_is_a_value_error_naming_the_value():
    with pytest.raises(ValueError, match="abc"):
        to_whole_kes("abc")


@settings(max_examples=200)
@given(amount=st.integers(min_value=0, max_value=10**9))
def test_whole_amounts_round_trip_through_every_provider_spelling(amount):
    for spelling in (amount, float(amount), str(amount), f"{amount}.00", Decimal(amount)):
        assert to_whole_kes(spelling) == amount


@settings(max_examples=200)
@given(
    value=st.one_of(
        st.floats(min_value=-1e12, max_value=1e12),  # far beyond any fee; exact in binary
        st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0.5, 2499.999]),
    )
)
def test_a_float_is_accepted_only_when_it_is_a_finite_whole_non_negative_number(value):
    whole = value == value and abs(value) != float("inf") and value.is_integer() and value >= 0
    if whole:
        assert to_whole_kes(value) == int(value)
    else:
        with pytest.raises(InvalidAmount):
            to_whole_kes(value)


@settings(max_examples=200)
@given(text=st.text(max_size=12))
def test_arbitrary_text_is_a_whole_number_or_an_invalid_amount(text):
    try:
        result = to_whole_kes(text)
    except InvalidAmount:
        return
    assert isinstance(result, int) and result >= 0
    assert Decimal(text.strip()) == result


def test_amounts_are_formatted_the_kenyan_way():
    assert format_kes(2500) == "KES 2,500"
    assert format_kes(1) == "KES 1"
    assert format_kes(1234567) == "KES 1,234,567"
