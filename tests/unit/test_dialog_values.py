"""Option values, the message catalogue, SMS rendering and command parsing (no I/O)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.dialog import messages, values
from core.dialog.engine import _WORDS, _command
from core.dialog.sms import numbered_choices, render_sms
from core.dialog.types import OPTION_VALUE_MAX_BYTES, Option, Reply
from core.templates.gsm import contains_forbidden, is_gsm7


def test_action_and_menu_values_are_short_and_versioned() -> None:
    assert values.action(values.PAY, 123) == "v1:pay:123"
    assert values.action(values.BOOK) == "v1:book"
    token = values.new_token()
    value = values.menu(values.TIME, token, "202606030700")
    assert value == f"v1:tm:{token}:202606030700"
    assert len(value.encode()) <= OPTION_VALUE_MAX_BYTES
    with pytest.raises(ValueError):
        values.menu(values.TIME, token, "x" * 60)
    with pytest.raises(ValueError):
        values.action("launch-missiles")


def test_values_parse_back_to_what_they_mean() -> None:
    assert values.parse("v1:pay:12") == values.Choice("pay", "12")
    assert values.parse("v1:pay:12").int_arg() == 12  # type: ignore[union-attr]
    assert values.parse("v1:book") == values.Choice("book")
    assert values.parse("v1:th:abCD:7") == values.Choice("th", "7", "abCD")
    assert values.parse("approve:5") == values.Choice("approve", "5")  # the templates' default buttons
    assert values.parse("pay:x") is None
    for junk in (
        "",
        "v1",
        "v1:",
        "v1::",
        "v2:book",
        "v1:th:abcd",
        "v1:pay:1:2",
        "v1:nope",
        "v1:pay:<script>",
        42,
    ):
        assert values.parse(junk) is None


@given(st.text(max_size=100))
def test_parsing_any_text_never_raises(text: str) -> None:
    choice = values.parse(text)
    if choice is not None:
        assert choice.kind in values.ACTIONS | values.MENU_KINDS


@given(
    st.sampled_from(sorted(values.MENU_KINDS)),
    st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=20),
)
def test_menu_values_round_trip(kind: str, arg: str) -> None:
    token = values.new_token()
    assert values.parse(values.menu(kind, token, arg)) == values.Choice(kind, arg, token)


def test_button_labels_are_exactly_what_the_other_parts_expect() -> None:
    expected = {
        "approve": "Approve",
        "decline": "Decline",
        "pay": "Pay with M-Pesa",
        "retry": "Retry payment",
        "skip": "Skip",
        "confirm": "Confirm",
        "cancel": "Cancel",
        "share_phone": "Share my phone number",
    }
    assert {key: messages.label(key) for key in expected} == expected


def _sample_fields() -> dict[str, object]:
    return {
        "count": 8,
        "day": "Mon 03 Jun",
        "therapist": "Dr. Amani Wanjiku",
        "session_type": "Individual",
        "minutes": 50,
        "when": "Mon 03 Jun, 10:00",
        "price": "KES 2,500",
        "email": "a@b.co",
        "reference": "SS-7K3Q9X",
        "status": "Waiting for approval.",
        "receipt": "QKX1ABC234",
        "phone": "0708 374 149",
        "formats": messages.PHONE_FORMATS,
        "seconds": 30,
        "name": "Dr. Amani",
        "today": 2,
        "paid": 1,
        "pending": 1,
        "client": "Wanjiru",
        "code": "7K3Q9",
        "mark": "[PAID]",
        "last": 4,
        "minutes_left": 5,
        "window": "24 hours",
        "reason": "You cancelled the M-Pesa prompt.",
        "url": "https://meet.jit.si/SmilingSteps-AbCdEf",
        "old": "Wed 12 Mar, 10:00 EAT",  # rescheduling: the session's time before and after a move
        "new": "Thu 13 Mar, 11:00 EAT",
        # practitioner calendar
        "hours": "mon-fri 09:00-17:00; sat 10:00-13:00",
        "span": "Wed 24 Dec to Fri 26 Dec",
        "first": "Wed 24 Dec",
        "start": "14:00",
        "end": "17:00",
        "days": 92,
    }


@pytest.mark.parametrize("lang", ["en", "sw"])
def test_every_catalogue_entry_formats_and_never_names_the_kind_of_care(lang: str) -> None:
    fields = _sample_fields()
    for key, entry in messages.LANGUAGES[lang].items():
        variants = [entry] if isinstance(entry, str) else list(entry.values())
        for variant in variants:
            text = variant.format(**fields)
            assert not contains_forbidden(text), key
    for label in messages.LABELS[lang].values():
        assert not contains_forbidden(label)


def test_sms_wording_fits_one_segment_for_the_everyday_messages() -> None:
    fields = _sample_fields()
    for key in (
        "help",
        "check_phone",
        "booking_sent",
        "ask_phone",
        "summary",
        "stopped",
        "my_none",
        "invalid_phone",
        "pay_queued",
        "request_card",
        "dashboard",
        "expired",
    ):
        text = messages.say("test_mark", "sms") + messages.say(key, "sms", **fields)
        assert is_gsm7(text) and len(text) <= 160, (key, len(text))


def test_a_translation_is_data_and_falls_back_to_english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(messages.LANGUAGES, "xx", {"menu": "Ungependa kufanya nini?"})
    monkeypatch.setitem(messages.LABELS, "xx", {"confirm": "Thibitisha"})
    assert messages.say("menu", lang="xx") == "Ungependa kufanya nini?"
    assert messages.say("stopped", lang="xx") == messages.say("stopped")
    assert messages.label("confirm", "xx") == "Thibitisha" and messages.label("skip", "xx") == "Skip"


def test_days_and_amounts_are_formatted_per_language_by_babel() -> None:
    from datetime import UTC, date, datetime

    assert messages.day_label(date(2024, 6, 3)) == "Mon 03 Jun"
    assert messages.day_label(date(2024, 6, 3), "sw") == "Jumatatu 03 Jun"
    friday = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)  # 11:00 in Nairobi
    assert messages.when(friday, "sw", channel="sms") == "Ijumaa 04 Des, 11:00"
    assert messages.when(friday, "en") == "Fri 04 Dec, 11:00 EAT"
    assert messages.price(2500, "sw") == messages.price(2500) == "KES 2,500"


def test_sms_numbers_every_choice_across_replies_in_the_order_the_engine_reads_them() -> None:
    replies = [
        Reply(
            "SS-AAA: Approved, not paid yet.",
            options=(Option("Pay with M-Pesa", "v1:pay:1"), Option("Cancel booking", "v1:cxl:1")),
        ),
        Reply("Which M-Pesa number?", ask_phone=True, phone_suggestions=("254711082300", "254708374149")),
    ]
    text = render_sms(replies)
    assert text.splitlines() == [
        "SS-AAA: Approved, not paid yet.",
        "1 Pay with M-Pesa",
        "2 Cancel booking",
        "Which M-Pesa number?",
        "3 254711082300",
        "4 254708374149",
        "Reply 1-4",
    ]
    assert [value for value, _ in numbered_choices(replies)] == [
        "v1:pay:1",
        "v1:cxl:1",
        "tel:254711082300",
        "tel:254708374149",
    ]
    assert render_sms([Reply("Only text")]) == "Only text"
    assert render_sms([Reply("One", options=(Option("Skip", "v1:em:a:skip"),))]).endswith("1 Skip\nReply 1")


def test_sms_rendering_is_gsm7_and_discreet() -> None:
    text = render_sms(
        [Reply("Chaguo “bora” — Ũmbũ ✓ Couples therapy", options=(Option("Ngũgĩ", "v1:th:a:1"),))]
    )
    assert is_gsm7(text) and not contains_forbidden(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/start", ("start", "")),
        ("/start@SmilingStepsBot abc123", ("start", "abc123")),
        ("/BOOK", ("book", "")),
        ("/whatever", ("help", "")),
        ("Book", ("book", "")),
        ("BOOK!", ("book", "")),
        ("my sessions", ("my", "")),
        ("Stop", ("stop", "")),
        ("cancel", ("stop", "")),
        ("book a session for me", None),
        ("2", None),
    ],
)
def test_keywords_and_commands_are_recognised_case_insensitively(
    text: str, expected: tuple[str, str] | None
) -> None:
    found = _command(text)
    if expected is None:
        assert found is None
    else:
        word, argument = expected
        assert found == (_WORDS[word].run, argument)
