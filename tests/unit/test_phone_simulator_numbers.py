"""The phone simulator reads the numbers people type the way Kenyans write them."""

from __future__ import annotations

import pytest

from simulators.phone.sms import BadNumber, kenyan_number


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("0712 345 678", "254712345678"),
        ("+254712345678", "254712345678"),
        ("254712345678", "254712345678"),
        ("0110-123-456", "254110123456"),
        ("(0708) 374149", "254708374149"),
        ("712345678", "254712345678"),
    ],
)
def test_kenyan_mobile_numbers_in_their_usual_spellings_are_read(typed: str, number: str) -> None:
    assert kenyan_number(typed) == number


@pytest.mark.parametrize(
    "typed",
    [
        "",
        None,
        "12345",
        "+12025550100",
        "0812345678",
        "07123456789",
        "0712 345 67x",
        "０712345678",
        "07１2345678",
    ],
)
def test_anything_else_is_refused_with_a_hint(typed: object) -> None:
    with pytest.raises(BadNumber, match="Kenyan mobile number"):
        kenyan_number(typed)
