"""Money is whole Kenyan shillings held in ``int``; this module converts provider values."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

Kes = int


class InvalidAmount(ValueError):
    """An amount that is not a whole, positive number of shillings."""


def to_whole_kes(value: object) -> Kes:
    """Convert 1, 1.0, "1", "1.00" to 1; reject fractions, booleans, negatives and junk (0 is allowed)."""
    if isinstance(value, bool) or value is None:
        raise InvalidAmount(f"not an amount: {value!r}")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidAmount(f"not an amount: {value!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise InvalidAmount(f"not a whole number of shillings: {value!r}")
    if number < 0:
        raise InvalidAmount(f"negative amount: {value!r}")
    return int(number)


def format_kes(amount: Kes) -> str:
    """Format shillings the Kenyan way: ``KES 2,500``."""
    return f"KES {amount:,}"
