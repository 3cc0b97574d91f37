"""Pure rules of the notification machinery: back-off, dedupe keys, AT answers, e-mail MIME."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.services.notifications.dispatcher import backoff
from core.services.notifications.outbox_store import DEDUPE_KEY_MAX, fit_dedupe_key
from core.templates import render
from senders.email import build_email
from senders.sms import _interpret

DATA = {
    "reference": "SS1", "receipt": "TJK3H2L9QZ", "amount_kes": 2500,
    "starts_at_local": "Mon 30 Nov 2026, 10:00 EAT",
    "meeting_url": "https://meet.jit.si/SmilingSteps-x", "starts_at_iso": "2026-11-30T07:00:00+00:00",
    "ends_at_iso": "2026-11-30T07:50:00+00:00",
}


@settings(max_examples=200)
@given(st.integers(min_value=1, max_value=10_000))
def test_back_off_doubles_from_five_seconds_and_never_exceeds_half_an_hour(attempts: int) -> None:
    wait = backoff(attempts)
    assert timedelta(seconds=5) <= wait <= timedelta(minutes=30)
    assert backoff(attempts + 1) >= wait
    if attempts <= 9:
        assert wait == timedelta(seconds=5 * 2 ** (attempts - 1))


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=400), st.text(min_size=1, max_size=400))
def test_dedupe_keys_fit_the_column_and_stay_distinct(a: str, b: str) -> None:
    assert len(fit_dedupe_key(a)) <= DEDUPE_KEY_MAX
    if len(a) <= DEDUPE_KEY_MAX:
        assert fit_dedupe_key(a) == a
    if a != b:
        assert fit_dedupe_key(a) != fit_dedupe_key(b)


def test_at_answers_without_recipients_or_json_are_classified() -> None:
    refused = _interpret({"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}}, "254711000001")
    assert refused.permanent
    odd = _interpret({"SMSMessageData": {"Message": "Something else", "Recipients": []}}, "254711000001")
    assert not odd.ok and not odd.permanent
    as_text = _interpret('{"SMSMessageData": {"Message": "Sent to 1/1", "Recipients": [{"statusCode": 101, '
                         '"number": "+254711000001", "status": "Success", "messageId": "ATXid_1"}]}}',
                         "254711000001")
    assert as_text.ok and as_text.provider_message_id == "ATXid_1"
    assert not _interpret("<html>gateway error</html>", "254711000001").permanent
    assert not _interpret({"unexpected": True}, "254711000001").permanent


def test_an_email_is_mixed_with_text_html_alternatives_and_the_invite() -> None:
    mail = build_email(render("payment_confirmed_email", "email", DATA), sender="Smiling Steps <a@b.example>",
                       recipient="c@d.example")
    assert mail.get_content_type() == "multipart/mixed"
    alternative, invite = mail.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert invite.get_content_type() == "text/calendar" and invite.get_param("method") == "PUBLISH"
    assert invite.get_filename() == "session.ics"
    assert mail["Message-ID"].endswith("@b.example>")
