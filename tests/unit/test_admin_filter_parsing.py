"""Parsing the transaction filters: any text in any parameter gives a usable filter or clear
messages, never an exception; good values are read as the admin meant them."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.states import PaymentStatus
from core.services.reporting.transactions import FILTER_KEYS, parse_filter
from core.services.reporting.transactions_csv import neutralise


# Feature: mpesa-payment-integration, Property 39: Transaction Search Filters Results
@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(FILTER_KEYS), st.text(max_size=300)))
def test_any_parameter_text_gives_a_filter_or_messages_never_an_exception(params):
    parsed = parse_filter(params, active_environment="production")
    f = parsed.filter
    assert f.environment in ("production", "sandbox", "simulator") and f.page >= 1
    assert all(isinstance(m, str) and 0 < len(m) < 200 for m in parsed.errors)
    assert f.q is None or len(f.q) <= 100


def test_good_values_are_read_as_meant():
    parsed = parse_filter(
        {
            "from": "2026-12-01",
            "to": "2026-12-31",
            "q": " NLJ7RT61SV ",
            "therapist": "7",
            "status": "paid",
            "environment": "Sandbox",
            "page": "3",
        },
        active_environment="production",
    )
    f = parsed.filter
    assert parsed.errors == ()
    assert (f.start, f.end, f.q, f.therapist_id, f.status, f.environment, f.page) == (
        date(2026, 12, 1),
        date(2026, 12, 31),
        "NLJ7RT61SV",
        7,
        PaymentStatus.PAID,
        "sandbox",
        3,
    )
    lo, hi = f.created_bounds()
    assert (lo.isoformat(), hi.isoformat()) == ("2026-11-30T21:00:00+00:00", "2026-12-31T21:00:00+00:00")


# Feature: mpesa-payment-integration, Property 81: Sandbox Transactions Isolated From Production
def test_the_environment_defaults_to_the_active_one():
    assert parse_filter({}, active_environment="production").filter.environment == "production"
    assert parse_filter({"environment": ""}, active_environment="simulator").filter.environment == "simulator"


# Feature: mpesa-payment-integration, Property 40: Report Generation Creates CSV
@given(st.text(max_size=50))
@settings(max_examples=200)
def test_no_csv_cell_starts_with_a_formula_character(text):
    assert not neutralise(text).startswith(("=", "+", "-", "@", "\t", "\r"))
    assert neutralise(text).removeprefix("'") == text or neutralise(text) == text
