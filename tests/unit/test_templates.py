"""Every message template, rendered on every channel with ordinary and hostile data."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from core.domain.meeting import new_meeting_url
from core.templates import TEMPLATES, TemplateError, check, render
from core.templates.gsm import contains_forbidden, is_gsm7, segments

MEETING = "https://meet.jit.si/SmilingSteps-AbCdEfGhIjKlMnOpQrStUv"
SAMPLE = {
    "reference": "SS1A2B3C4D5E",
    "booking_id": 41,
    "attempt_id": 7,
    "client_name": "Wanjiru Kamau",
    "therapist_name": "Dr. Amani Wanjiku",
    "session_type": "Individual",
    "minutes": 50,
    "starts_at_local": "Mon 30 Nov 2026, 10:00 EAT",
    "old_starts_at_local": "Mon 30 Nov 2026, 10:00 EAT",
    "new_starts_at_local": "Wed 02 Dec 2026, 14:30 EAT",
    "starts_at_iso": "2026-11-30T07:00:00+00:00",
    "ends_at_iso": "2026-11-30T07:50:00+00:00",
    "paid_at_local": "Sat 28 Nov 2026, 09:12 EAT",
    "approval_code": "7K2M9QXA",
    "amount_kes": 2500,
    "amount_text": "KES 2,500",
    "receipt": "TJK3H2L9QZ",
    "meeting_url": MEETING,
    "reason": "Payment cancelled. You can retry whenever you are ready.",
    "retry_seconds": 30,
    "text": "Choose a time:\n1 Mon 10:00\n2 Mon 11:00\nReply 1-2",
    "cancelled_by": "client",
    "refund_due": True,  # the longest cancellation notices
    "test_mode": False,
}
HOSTILE_NAME = "<script>alert('x')</script> & \"Therapy\" Psych-Mental counselling " + "W" * 60
LONG_NAME = "N" * 120
PAYMENT_TEMPLATES = [
    "booking_approved_client", "booking_approved_email", "payment_confirmed_client",
    "payment_confirmed_email",
    "payment_received_therapist", "payment_failed_client", "payment_delayed_client", "payment_review_client",
]
# Telegram's HTML subset (core.telegram.org/bots/api#html-style).
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler",
                 "span", "blockquote", "tg-emoji"}

VARIANTS = [(name, channel) for name, spec in TEMPLATES.items() for channel in sorted(spec.channels)]


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _TagCollector:
    parser = _TagCollector()
    parser.feed(html)
    parser.close()
    return parser


def _visible_text(html: str) -> str:
    return "".join(_parse(html).text)


LANGS = ("en", "sw")


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("template", "channel"), VARIANTS)
def test_every_template_renders_on_every_channel_it_declares(template: str, channel: str, lang: str) -> None:
    message = render(template, channel, SAMPLE, lang)
    assert message.text.strip()
    assert "None" not in message.text
    if channel == "email":
        assert message.subject and message.html
        assert SAMPLE["reference"] in message.subject or SAMPLE["receipt"] in message.subject


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("template", "channel"), [v for v in VARIANTS if v[1] == "sms"])
def test_sms_with_ordinary_data_fits_one_gsm7_segment_and_stays_discreet(
    template: str, channel: str, lang: str
) -> None:
    for test_mode in (False, True):
        text = render(template, channel, {**SAMPLE, "test_mode": test_mode}, lang).text
        assert is_gsm7(text), text
        assert not contains_forbidden(text), text
        if not TEMPLATES[template].multipart_sms and not test_mode:
            assert segments(text) == 1, (len(text), text)
        assert segments(text) <= 2, (len(text), text)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("template", "channel"), [v for v in VARIANTS if v[1] == "sms"])
def test_sms_with_hostile_and_120_character_names_stays_gsm7_discreet_and_short(
    template: str, channel: str, lang: str
) -> None:
    for name in (HOSTILE_NAME, LONG_NAME, "Wanjikũ 😀 Ψυχή “Njeri”"):
        data = {**SAMPLE, "client_name": name, "therapist_name": name, "session_type": "Family Therapy"}
        text = render(template, channel, data, lang).text
        assert is_gsm7(text), text
        assert not contains_forbidden(text), text
        assert "\n" not in text or template == "chat_reply"
        if not TEMPLATES[template].multipart_sms:
            assert segments(text) == 1, (len(text), text)


@pytest.mark.parametrize(("template", "channel"), [v for v in VARIANTS if v[1] == "telegram"])
def test_telegram_html_escapes_every_user_value_and_uses_only_telegram_tags(
    template: str, channel: str
) -> None:
    data = {k: (HOSTILE_NAME if isinstance(v, str) and k not in ("starts_at_iso", "ends_at_iso") else v)
            for k, v in SAMPLE.items()}
    message = render(template, channel, data)
    assert "<script>" not in message.text
    parsed = _parse(message.text)
    assert set(parsed.tags) <= TELEGRAM_TAGS, parsed.tags
    assert "script" not in parsed.tags
    assert len(message.text) <= 4096


@pytest.mark.parametrize(("template", "channel"), [v for v in VARIANTS if v[1] == "email"])
def test_email_html_escapes_user_values_and_the_text_part_keeps_them_readable(
    template: str, channel: str
) -> None:
    data = {**SAMPLE, "client_name": HOSTILE_NAME, "therapist_name": HOSTILE_NAME}
    message = render(template, channel, data)
    assert message.html is not None
    assert "<script>" not in message.html
    assert "&lt;script&gt;" in message.html
    assert "<script>alert('x')</script>" in message.text  # plain text is not HTML: shown as typed
    assert "\n" not in (message.subject or "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.text(min_size=0, max_size=120),
    session_type=st.text(min_size=1, max_size=60),
    reason=st.text(min_size=1, max_size=200),
    variant=st.sampled_from(VARIANTS),
    lang=st.sampled_from(LANGS),
)
def test_any_names_render_safely_on_every_channel(
    name: str, session_type: str, reason: str, variant: tuple[str, str], lang: str
) -> None:
    template, channel = variant
    data = {**SAMPLE, "client_name": name, "therapist_name": name, "session_type": session_type,
            "reason": reason}
    message = render(template, channel, data, lang)
    if channel == "sms":
        assert is_gsm7(message.text)
        assert not contains_forbidden(message.text)
        if not TEMPLATES[template].multipart_sms:
            assert segments(message.text) == 1
        else:
            assert segments(message.text) <= 3
    elif channel == "telegram":
        parsed = _parse(message.text)
        assert set(parsed.tags) <= TELEGRAM_TAGS
    else:
        assert message.html is not None
        assert set(_parse(message.html).tags) <= {
            "html", "head", "meta", "title", "body", "p", "strong", "ul", "ol", "li", "h3", "table", "tr",
            "td", "a", "br",
        }


@settings(max_examples=150, deadline=None)
@given(name=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
                   min_size=1, max_size=80))
def test_telegram_shows_any_name_exactly_as_typed_after_unescaping(name: str) -> None:
    data = {**SAMPLE, "client_name": name}
    text = render("payment_received_therapist", "telegram", data).text
    visible = _visible_text(text)
    assert name.replace("\r\n", "\n").replace("\r", "\n") in visible.replace("\r\n", "\n").replace("\r", "\n")


# Feature: mpesa-payment-integration, Property 26: Confirmed Payment Sends Email
def test_payment_confirmation_email_carries_the_receipt_the_join_link_and_a_nairobi_calendar_invite() -> None:
    message = render("payment_confirmed_email", "email", SAMPLE)
    for part in (message.text, message.html, message.subject):
        assert part is not None and "TJK3H2L9QZ" in part
    assert MEETING in message.text and MEETING in (message.html or "")
    (invite,) = message.attachments
    assert invite.filename == "session.ics" and invite.content_type.startswith("text/calendar")
    calendar = Calendar.from_ical(invite.content)
    (event,) = calendar.walk("VEVENT")
    start = event.decoded("dtstart")
    assert str(start.tzinfo) == "Africa/Nairobi" and (start.hour, start.minute) == (10, 0)
    assert event.decoded("dtend").hour == 10 and event.decoded("dtend").minute == 50
    assert MEETING in str(event.get("location")) and MEETING in str(event.get("description"))
    assert b"TZID=Africa/Nairobi" in invite.content and b"BEGIN:VTIMEZONE" in invite.content


# Feature: mpesa-payment-integration, Property 60: Approval Sends Email Notification
def test_approval_email_gives_payment_instructions_with_the_amount() -> None:
    message = render("booking_approved_email", "email", SAMPLE)
    for body in (message.text, _visible_text(message.html or "")):
        assert "Pay with M-Pesa" in body
        assert "reply PAY" in body
        assert "KES 2,500" in body
        assert "M-Pesa PIN" in body
        assert "SS1A2B3C4D5E" in body
    assert "approved" in (message.subject or "")


# Feature: mpesa-payment-integration, Property 63: Failed Payment Sends Notification With Reason
@pytest.mark.parametrize("channel", ["telegram", "sms"])
def test_failure_notice_states_the_reason_and_how_to_retry(channel: str) -> None:
    reason = "Your M-Pesa balance was not enough for this payment. Please top up M-Pesa, then retry."
    message = render("payment_failed_client", channel, {**SAMPLE, "reason": reason})
    shown = _visible_text(message.text) if channel == "telegram" else message.text
    assert reason in shown
    if channel == "telegram":
        assert [b.label for b in message.buttons] == ["Retry payment", "Use another number"]
        assert [b.callback_data for b in message.buttons] == ["v1:pay:41", "v1:chphone:41"]
    else:
        assert "Reply PAY to retry" in shown


# Feature: mpesa-payment-integration, Property 78: Sandbox Mode Indicates Test Mode
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("template", PAYMENT_TEMPLATES)
def test_every_payment_message_says_test_mode_when_not_in_production(template: str, lang: str) -> None:
    for channel in sorted(TEMPLATES[template].channels):
        marked = render(template, channel, {**SAMPLE, "test_mode": True}, lang)
        plain = render(template, channel, {**SAMPLE, "test_mode": False}, lang)
        assert "TEST MODE" in marked.text
        assert "TEST MODE" not in plain.text
        if channel == "email":
            assert "TEST MODE" in (marked.subject or "") and "TEST MODE" in (marked.html or "")
            assert "TEST MODE" not in (plain.subject or "") + (plain.html or "")


# Feature: mpesa-payment-integration, Property 2: Session Creation Triggers Therapist Notification
def test_booking_request_offers_approve_and_decline_buttons_and_sms_reply_codes() -> None:
    telegram = render("booking_requested_therapist", "telegram", SAMPLE)
    assert [(b.label, b.callback_data) for b in telegram.buttons] == [("Approve", "v1:approve:41"),
                                                                       ("Decline", "v1:decline:41")]
    sms = render("booking_requested_therapist", "sms", SAMPLE)
    assert "Reply A7K2M9QXA to approve or D7K2M9QXA to decline" in sms.text


# Feature: mpesa-payment-integration, Property 4: Approval Triggers Payment Notification
def test_approval_message_offers_pay_with_mpesa_on_telegram_and_reply_pay_by_sms() -> None:
    telegram = render("booking_approved_client", "telegram", SAMPLE)
    assert [b.label for b in telegram.buttons] == ["Pay with M-Pesa"]
    assert "reply PAY" in render("booking_approved_client", "sms", SAMPLE).text


# Feature: mpesa-payment-integration, Property 24: Confirmed Payment Shows Success Message
@pytest.mark.parametrize("channel", ["telegram", "sms"])
def test_payment_confirmation_shows_receipt_amount_time_and_join_link(channel: str) -> None:
    text = render("payment_confirmed_client", channel, SAMPLE).text
    for needed in ("TJK3H2L9QZ", "KES 2,500", "Mon 30 Nov 2026, 10:00 EAT", MEETING):
        assert needed in text


@pytest.mark.parametrize(
    ("was_approved", "under_review", "says"),
    [(False, False, "approv"), (True, False, "not paid"), (True, True, "do not pay again")],
)
def test_an_expiry_notice_says_why_in_one_discreet_segment_whatever_the_names(
    was_approved: bool, under_review: bool, says: str
) -> None:
    for name in ("Dr. Amani Wanjiku", HOSTILE_NAME, LONG_NAME):
        data = {**SAMPLE, "therapist_name": name, "was_approved": was_approved, "under_review": under_review}
        for test_mode in (False, True):
            sms = render("booking_expired_client", "sms", {**data, "test_mode": test_mode}).text
            assert says in sms.lower() and "SS1A2B3C4D5E" in sms
            assert is_gsm7(sms) and not contains_forbidden(sms) and segments(sms) == 1, (len(sms), sms)
        telegram = _visible_text(render("booking_expired_client", "telegram", data).text)
        assert says in telegram.lower() and name in telegram


@pytest.mark.parametrize(
    "template",
    ["reminder_24h_client", "reminder_1h_client", "reminder_1h_therapist", "payment_received_therapist"],
)
def test_reminders_and_the_practitioner_notice_carry_the_join_link(template: str) -> None:
    for channel in ("telegram", "sms"):
        assert MEETING in render(template, channel, SAMPLE).text


def test_a_conversation_reply_keeps_its_numbered_lines() -> None:
    text = render("chat_reply", "sms", {"text": "Pick one:\n1  Therapy  A\n2 B\n"}).text
    assert text == "Pick one:\n1 session A\n2 B"


def test_buttons_can_be_overridden_and_are_absent_without_a_booking_id() -> None:
    without = {k: v for k, v in SAMPLE.items() if k != "booking_id"}
    assert render("booking_approved_client", "telegram", without).buttons == ()
    custom = render("booking_approved_client", "telegram", {**SAMPLE, "buttons": [["Pay now", "pay:x"]]})
    assert [(b.label, b.callback_data) for b in custom.buttons] == [("Pay now", "pay:x")]


def test_unknown_templates_missing_channels_and_missing_keys_are_rejected() -> None:
    with pytest.raises(TemplateError, match="unknown template"):
        check("nope", "sms", SAMPLE)
    with pytest.raises(TemplateError, match="no email variant"):
        check("reminder_1h_client", "email", SAMPLE)
    with pytest.raises(TemplateError, match="receipt"):
        check("payment_confirmed_email", "email", {k: v for k, v in SAMPLE.items() if k != "receipt"})


def test_a_meeting_url_is_the_template_with_an_unguessable_room() -> None:
    urls = {new_meeting_url("https://meet.jit.si/{room}") for _ in range(200)}
    assert len(urls) == 200
    for url in urls:
        assert re.fullmatch(r"https://meet\.jit\.si/SmilingSteps-[A-Za-z0-9_\-]{22}", url)
    with pytest.raises(ValueError, match="room"):
        new_meeting_url("https://meet.example.org/fixed")
