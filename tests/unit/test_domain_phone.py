"""Kenyan mobile numbers: what clients type, what we store (Properties 7 and 9)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.domain.phone import (
    InvalidPhoneNumber,
    is_probably_safaricom,
    is_valid_phone,
    mask_phone,
    normalise_phone,
)

SEPARATORS = st.sampled_from([" ", "-", "  ", " - "])


@st.composite
def subscriber_numbers(draw: st.DrawFn) -> str:
    """The 9 digits after 254: 7XXXXXXXX or 1XXXXXXXX."""
    return draw(st.sampled_from("17")) + draw(st.text("0123456789", min_size=8, max_size=8))


@st.composite
def spelled(draw: st.DrawFn, digits: str) -> str:
    """``digits`` with spaces/dashes inserted at random places between the digits."""
    out = [digits[0]]
    for ch in digits[1:]:
        if draw(st.booleans()):
            out.append(draw(SEPARATORS))
        out.append(ch)
    return "".join(out)


PREFIXES = ["0", "", "254", "+254"]


@st.composite
def typed_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(what a person types, the normalised number it means)."""
    subscriber = draw(subscriber_numbers())
    prefix = draw(st.sampled_from(PREFIXES))
    if prefix.startswith("+"):
        typed = "+" + draw(spelled(prefix[1:] + subscriber))
    else:
        typed = draw(spelled(prefix + subscriber))
    padding = draw(st.sampled_from(["", " ", "\t", "  "]))
    return padding + typed + padding, "254" + subscriber


# Feature: mpesa-payment-integration, Property 7: Phone Number Validation
@settings(max_examples=300)
@given(case=typed_numbers())
def test_every_accepted_spelling_normalises_to_254_and_nine_digits(case):
    typed, expected = case
    assert normalise_phone(typed) == expected
    assert is_valid_phone(typed)


# Feature: mpesa-payment-integration, Property 7: Phone Number Validation
@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("0712345678", "254712345678"),
        ("0110345678", "254110345678"),
        ("712345678", "254712345678"),
        ("110345678", "254110345678"),
        ("254712345678", "254712345678"),
        ("254110345678", "254110345678"),
        ("+254712345678", "254712345678"),
        ("+254 712 345 678", "254712345678"),
        ("0712-345-678", "254712345678"),
        (" 0712 345678 ", "254712345678"),
    ],
)
def test_documented_spellings_are_accepted(typed, expected):
    assert normalise_phone(typed) == expected


# Feature: mpesa-payment-integration, Property 7: Phone Number Validation
@settings(max_examples=200)
@given(case=typed_numbers())
def test_normalising_is_idempotent(case):
    typed, _ = case
    once = normalise_phone(typed)
    assert normalise_phone(once) == once
    assert len(once) == 12 and once.isascii() and once.isdigit()
    assert once[3] in "17"


INVALID = [
    "",
    "   ",
    "0812345678",  # 08 is not a mobile prefix
    "0212345678",  # 02 is a landline
    "254812345678",
    "+254212345678",
    "071234567",  # too short
    "07123456789",  # too long
    "2547123456789",
    "25471234567",
    "+0712345678",
    "00254712345678",
    "2540712345678",  # 254 followed by the local 0
    "07123456ab",
    "0712 345 67x",
    "phone: 0712345678",
    "07１2345678",  # a full-width digit
    "٠٧١٢٣٤٥٦٧٨",  # Arabic-Indic digits
    "0712.345.678",
    "0712_345_678",
    "+1 202 555 0123",
]


# Feature: mpesa-payment-integration, Property 9: Invalid Phone Number Shows Error
@pytest.mark.parametrize("typed", INVALID)
def test_invalid_numbers_raise_an_error_naming_the_accepted_formats(typed):
    with pytest.raises(InvalidPhoneNumber) as error:
        normalise_phone(typed)
    message = str(error.value)
    assert "07XXXXXXXX" in message and "2547XXXXXXXX" in message
    assert not is_valid_phone(typed)


# Feature: mpesa-payment-integration, Property 9: Invalid Phone Number Shows Error
@settings(max_examples=300)
@given(text=st.text(max_size=20))
def test_arbitrary_text_is_either_a_kenyan_mobile_number_or_a_clear_error(text):
    try:
        result = normalise_phone(text)
    except InvalidPhoneNumber as error:
        assert "07XXXXXXXX" in str(error) and "2547XXXXXXXX" in str(error)
        assert "\n" not in str(error)
    else:
        assert len(result) == 12 and result.isascii() and result.isdigit()
        assert result.startswith(("2547", "2541"))
        # only separators were dropped: the typed digits end with the subscriber digits
        assert "".join(ch for ch in text if ch.isdigit()).endswith(result[3:])


# Feature: mpesa-payment-integration, Property 9: Invalid Phone Number Shows Error
@settings(max_examples=200)
@given(
    prefix=st.sampled_from(["0", "", "254", "+254"]),
    first=st.sampled_from("02345689"),
    rest=st.text("0123456789", min_size=8, max_size=8),
)
def test_numbers_with_a_wrong_network_digit_are_rejected(prefix, first, rest):
    with pytest.raises(InvalidPhoneNumber):
        normalise_phone(prefix + first + rest)


# Feature: mpesa-payment-integration, Property 9: Invalid Phone Number Shows Error
@settings(max_examples=200)
@given(
    prefix=st.sampled_from(["0", "", "254", "+254"]),
    subscriber=subscriber_numbers(),
    length=st.integers(0, 14),
)
def test_numbers_of_the_wrong_length_are_rejected(prefix, subscriber, length):
    assume(length != 9)
    digits = (subscriber * 2)[:length]
    assume(not (prefix == "" and digits.startswith(("0", "254"))))
    with pytest.raises(InvalidPhoneNumber):
        normalise_phone(prefix + digits)


# Feature: mpesa-payment-integration, Property 9: Invalid Phone Number Shows Error
@settings(max_examples=200)
@given(
    subscriber=subscriber_numbers(),
    position=st.integers(0, 9),
    digit=st.sampled_from("٠١٢٣٤٥٦٧٨٩０１２３４５６７８９०१२३४५६७८९"),
)
def test_non_ascii_digits_are_rejected(subscriber, position, digit):
    typed = "0" + subscriber
    typed = typed[:position] + digit + typed[position + 1 :]
    with pytest.raises(InvalidPhoneNumber):
        normalise_phone(typed)


@pytest.mark.parametrize("value", [None, 712345678, 254712345678, b"0712345678"])
def test_non_strings_are_invalid_phone_numbers(value):
    with pytest.raises(InvalidPhoneNumber):
        normalise_phone(value)


def test_the_error_keeps_what_was_typed():
    with pytest.raises(InvalidPhoneNumber) as error:
        normalise_phone("0812 345 678")
    assert error.value.raw == "0812 345 678"


# -- masking and network hint ----------------------------------------------------------


@settings(max_examples=200)
@given(subscriber=subscriber_numbers())
def test_mask_phone_shows_only_the_last_four_digits(subscriber):
    msisdn = "254" + subscriber
    masked = mask_phone(msisdn)
    assert masked == "********" + msisdn[-4:]
    assert msisdn[:-4] not in masked


def test_mask_phone_of_a_short_value_hides_everything():
    assert mask_phone("1234") == "****"
    assert mask_phone("") == ""


@pytest.mark.parametrize("typed", ["0712345678", "0722000111", "0110123456", "0115123456", "0798765432"])
def test_safaricom_prefixes_are_recognised(typed):
    assert is_probably_safaricom(normalise_phone(typed))


@pytest.mark.parametrize("typed", ["0733123456", "0738123456", "0750123456", "0100123456", "0770123456"])
def test_other_networks_are_not_taken_for_safaricom(typed):
    # 073x / 075x are Airtel, 0770 Telkom, 0100 Airtel
    assert not is_probably_safaricom(normalise_phone(typed))


def test_sandbox_test_number_is_a_valid_safaricom_number():
    assert normalise_phone("254708374149") == "254708374149"
    assert is_probably_safaricom("254708374149")
