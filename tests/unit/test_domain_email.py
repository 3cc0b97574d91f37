"""The one e-mail rule (core.domain.email): syntax by email-validator, no DNS, normalised result."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.email import InvalidEmail, email_or_none, is_valid_email, normalise_email

PROBES = [
    "xss.probe+<b>@example.org",  # a mailer read this as To: b
    '"><script>alert(1)</script>@example.org',
    '"><script>@example.org',
]


@pytest.mark.parametrize(
    "refused",
    [
        *PROBES,
        "Jane <jane@example.org>",  # a display name: the address is the part in brackets
        '"jane doe"@example.org',  # quoted local part
        "jane@[192.0.2.1]",  # domain literal
        "jane@localhost",  # no dot in the domain
        "jane doe@example.org",
        "jane@example.org\r\nBcc: all@example.org",
        "jane@@example.org",
        "josé@example.org",  # non-ASCII before the @ needs SMTPUTF8 from every relay
        "a" * 250 + "@example.org",
        "",
        "   ",
        "not an address",
    ],
)
def test_addresses_a_mailer_could_read_differently_are_refused_without_being_quoted(refused):
    with pytest.raises(InvalidEmail) as error:
        normalise_email(refused)
    assert str(error.value) == "not an e-mail address"
    assert not is_valid_email(refused) and email_or_none(refused) is None


@pytest.mark.parametrize(
    ("given_text", "stored"),
    [
        ("wanjiru@example.org", "wanjiru@example.org"),
        ("  Wanjiru.K@Example.ORG \n", "Wanjiru.K@example.org"),  # the domain is case-insensitive
        ("a.b+tag@mail.example.co.ke", "a.b+tag@mail.example.co.ke"),
        ("jose@exämple.org", "jose@xn--exmple-cua.org"),  # IDNA: any relay can route it
    ],
)
def test_an_accepted_address_is_stored_normalised(given_text, stored):
    assert normalise_email(given_text) == stored
    assert normalise_email(stored) == stored  # normalising twice changes nothing


_ATEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.+-_", min_size=1, max_size=20)


@settings(max_examples=200)
@given(
    before=_ATEXT,
    after=_ATEXT,
    bad=st.sampled_from(list('<>"()[]\\,;: \r\n\t') + ["\x00", "@"]),
)
def test_an_address_with_markup_quotes_or_control_characters_in_it_is_never_accepted(before, after, bad):
    assert not is_valid_email(f"{before}{bad}{after}@example.org")
