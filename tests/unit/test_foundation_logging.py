"""Phone numbers never reach the logs in full (Property 47)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.logging import configure_logging, mask_phones

SEPARATORS = st.sampled_from([" ", "-", "  ", " - "])
# Text around the number: no digits (they would make it a different, longer number) and no "+".
SURROUNDING = st.text(
    alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="+"), max_size=30
)
BOUNDARY = st.sampled_from([" ", "\n", "\t", ":", "=", "(", ")", ",", "'", '"', "/", "[", "]", "<", ">"])


@st.composite
def kenyan_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(a number as somebody might write it, its 9 subscriber digits)."""
    subscriber = draw(st.sampled_from("17")) + draw(st.text("0123456789", min_size=8, max_size=8))
    prefix = draw(st.sampled_from(["0", "", "254", "+254"]))
    digits = prefix.lstrip("+") + subscriber
    out = ["+"] if prefix.startswith("+") else []
    out.append(digits[0])
    for ch in digits[1:]:
        if draw(st.integers(0, 3)) == 0:
            out.append(draw(SEPARATORS))
        out.append(ch)
    return "".join(out), subscriber


def visible_digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


# Feature: mpesa-payment-integration, Property 47: Phone Numbers Masked in Logs
@settings(max_examples=300)
@given(number=kenyan_numbers(), before=SURROUNDING, after=SURROUNDING, left=BOUNDARY, right=BOUNDARY)
def test_any_kenyan_number_in_any_spelling_is_masked_in_text(number, before, after, left, right):
    written, subscriber = number
    masked = mask_phones(before + left + written + right + after)
    assert masked.startswith(before + left) and masked.endswith(right + after)
    replacement = masked[len(before + left) : len(masked) - len(right + after)]
    assert visible_digits(replacement) == subscriber[-4:]
    assert set(replacement.replace(subscriber[-4:], "")) == {"*"}


# Feature: mpesa-payment-integration, Property 47: Phone Numbers Masked in Logs
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("paying from 254708374149 now", "paying from ********4149 now"),
        ("phone=+254712345678", "phone=********5678"),
        ("tel0712345678", "tel******5678"),
        ("msisdn_254712345678_x", "msisdn_********5678_x"),
        ("0712 34 56 78", "******5678"),
        ("call 0712 345 678.", "call ******5678."),
        ("msisdn:0110-123-456", "msisdn:******3456"),
        ("typed '712345678'", "typed '*****5678'"),
        ('{"PhoneNumber": 254708374149}', '{"PhoneNumber": ********4149}'),
    ],
)
def test_common_log_spellings_keep_only_the_last_four_digits(text, expected):
    assert mask_phones(text) == expected


def test_other_international_numbers_are_masked_too():
    assert mask_phones("from +14155550123") == "from *******0123"


@pytest.mark.parametrize(
    "text",
    [
        "amount 2500 KES",
        "receipt NLJ7RT61SV",
        "CheckoutRequestID ws_CO_191220191020363925",
        "MerchantRequestID 29115-34620561-1",
        "at 2026-03-02T10:00:00+03:00",
        "booking 42 of therapist 7",
    ],
)
def test_ordinary_numbers_are_left_alone(text):
    assert mask_phones(text) == text


# -- a real logger ------------------------------------------------------------------------------


def configure_into(stream: io.StringIO, level: str = "DEBUG") -> None:
    """configure_logging() with its handler writing to ``stream`` (it binds sys.stderr)."""
    real = sys.stderr
    sys.stderr = stream
    try:
        configure_logging(level)
    finally:
        sys.stderr = real


@contextlib.contextmanager
def restored_root_logger():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def log_stream():
    """configure_logging() writing to a string; the root logger is restored afterwards."""
    stream = io.StringIO()
    with restored_root_logger():
        configure_into(stream)
        yield stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# Feature: mpesa-payment-integration, Property 47: Phone Numbers Masked in Logs
@settings(max_examples=100)
@given(number=kenyan_numbers())
def test_a_configured_logger_never_emits_a_raw_number(number):
    written, subscriber = number
    stream = io.StringIO()
    with restored_root_logger():
        configure_into(stream, "INFO")
        log = logging.getLogger("test.payments")
        log.info("STK push to %s for booking %s", written, "SS1234")
        log.info("phone given: " + written)
        log.warning("callback", extra={"phone": written, "msisdn": int("254" + subscriber)})
        log.info("result", extra={"body": {"PhoneNumber": int("254" + subscriber)}})
        try:
            raise ValueError(f"bad number {written}")
        except ValueError:
            log.exception("failed")
    output = stream.getvalue()
    assert output.count("\n") == 5
    for line in output.splitlines():
        json.loads(line)
        assert subscriber[:5] not in line, line
        assert written not in line, line


def test_log_lines_are_json_with_message_level_logger_and_extras(log_stream):
    logging.getLogger("test.json").info("booking %s approved", "SS42", extra={"booking_id": 42})
    (entry,) = lines(log_stream)
    assert entry["message"] == "booking SS42 approved"
    assert entry["level"] == "INFO" and entry["logger"] == "test.json"
    assert entry["booking_id"] == 42
    assert entry["time"].endswith("+00:00")


def test_configure_logging_twice_does_not_duplicate_lines(log_stream):
    configure_into(log_stream, "INFO")
    logging.getLogger("test.twice").warning("once")
    assert len(lines(log_stream)) == 1


def test_exceptions_are_logged_with_numbers_masked(log_stream):
    try:
        raise RuntimeError("Daraja refused 254712345678")
    except RuntimeError:
        logging.getLogger("test.exc").exception("push failed for 0712 345 678")
    (entry,) = lines(log_stream)
    assert "254712345678" not in json.dumps(entry)
    assert entry["message"] == "push failed for ******5678"
    assert "RuntimeError" in entry["exception"] and "********5678" in entry["exception"]
