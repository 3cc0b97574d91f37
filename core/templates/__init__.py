"""Message templates: one name, a variant per channel, rendered from a small data mapping.

Layout: ``telegram/<name>.html`` (Telegram HTML, autoescaped), ``sms/<name>.txt`` (plain,
GSM-7, discreet), ``email/<name>.subject.txt`` + ``email/<name>.txt`` + ``email/<name>.html``
(autoescaped); the same in Kiswahili under ``sw/`` (``sw/sms/<name>.txt`` …). ``render``
takes the reader's language: it picks the variant and puts the times (``starts_at_local``,
``paid_at_local``), the payment-failure sentence (``reason``), the button labels and the
``.ics`` text into that language. :data:`TEMPLATES` lists every template, its channels and its data keys;
docs/notifications.md describes them for the services that enqueue messages.

Rules applied here, whatever the template says:
- every value from ``data`` is HTML-escaped in Telegram and e-mail HTML (Jinja2 autoescape);
- SMS text is transliterated to GSM-7 and never names the kind of care (:mod:`.gsm`);
- ``test_mode`` true puts a "TEST MODE" marker on every variant (Property 78);
- ``payment_confirmed_email`` carries an ``.ics`` calendar invitation in Africa/Nairobi time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from core import i18n
from core.dialog import messages
from core.templates.gsm import sms_safe

TEMPLATE_DIR = Path(__file__).resolve().parent
NAIROBI = ZoneInfo("Africa/Nairobi")
CHANNELS = ("telegram", "sms", "email")
TEST_MODE_MARK = "TEST MODE"
META_KEYS = ("_route", "buttons")  # routing data stored with a row, never shown
CALLBACK_VERSION = "v1"  # button callback data: v1:<action>:<booking id> (core/dialog/values.py)


class TemplateError(ValueError):
    """Unknown template, a channel it has no variant for, or missing data keys."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "text/calendar; method=PUBLISH"
    content: bytes


@dataclass(frozen=True)
class Button:
    """A Telegram inline button; ``callback_data`` is read by the bot (docs/notifications.md)."""

    label: str
    callback_data: str


@dataclass(frozen=True)
class RenderedMessage:
    """What a sender sends: text for chat channels; subject, text and HTML for e-mail."""

    channel: str
    template: str
    text: str
    subject: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class TemplateSpec:
    channels: frozenset[str]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    buttons: tuple[tuple[str, str], ...] = ()  # (label, action) → "v1:<action>:<booking_id>"
    multipart_sms: bool = False  # the SMS may need two segments (e.g. a long failure reason)
    ics: bool = False
    description: str = ""


CHAT = frozenset({"telegram", "sms"})
EMAIL = frozenset({"email"})
_COMMON_OPTIONAL = ("test_mode", "booking_id", "attempt_id")

TEMPLATES: dict[str, TemplateSpec] = {
    "booking_requested_therapist": TemplateSpec(
        CHAT,
        ("reference", "client_name", "session_type", "starts_at_local", "approval_code"),
        ("amount_kes", "minutes"),
        buttons=(("Approve", "approve"), ("Decline", "decline")),
        description="P2: a new request; Telegram buttons or SMS 'Reply A<code> / D<code>'",
    ),
    "booking_approved_client": TemplateSpec(
        CHAT,
        ("reference", "therapist_name", "session_type", "starts_at_local", "amount_kes"),
        ("minutes",),
        buttons=(("Pay with M-Pesa", "pay"),),
        description="P4: approved, please pay (Telegram button / SMS 'reply PAY')",
    ),
    "booking_approved_email": TemplateSpec(
        EMAIL,
        ("reference", "therapist_name", "session_type", "starts_at_local", "amount_kes"),
        ("client_name", "minutes"),
        description="P60: approval e-mail with payment instructions",
    ),
    "booking_declined_client": TemplateSpec(
        CHAT,
        ("reference", "starts_at_local"),
        ("therapist_name", "session_type", "reason"),
        description="the practitioner declined the request",
    ),
    "booking_expired_client": TemplateSpec(
        CHAT,
        ("reference", "starts_at_local"),
        ("therapist_name", "session_type", "was_approved", "under_review"),
        description="housekeeping: the start passed before approval (or, was_approved, before payment)",
    ),
    "booking_cancelled_therapist": TemplateSpec(
        CHAT,
        ("reference", "client_name", "starts_at_local"),
        ("session_type", "minutes", "amount_kes", "receipt", "cancelled_by", "refund_due"),
        description="a booking was cancelled by the client or the practice; a paid one: refund due",
    ),
    "booking_cancelled_client": TemplateSpec(
        CHAT,
        ("reference", "starts_at_local"),
        ("therapist_name", "session_type", "amount_kes", "receipt", "refund_due"),
        description="the practice cancelled the client's booking; a paid one: the refund is arranged",
    ),
    "payment_confirmed_client": TemplateSpec(
        CHAT,
        ("reference", "receipt", "amount_kes", "starts_at_local", "meeting_url"),
        ("therapist_name", "session_type", "paid_at_local", "amount_text", "minutes",
         "client_name", "starts_at_iso", "ends_at_iso"),
        description="P24: receipt, amount, time and join link",
    ),
    "payment_confirmed_email": TemplateSpec(
        EMAIL,
        ("reference", "receipt", "amount_kes", "starts_at_local", "meeting_url", "starts_at_iso",
         "ends_at_iso"),
        ("client_name", "therapist_name", "session_type", "paid_at_local", "amount_text", "minutes"),
        ics=True,
        description="P26/P61: receipt, join link and an .ics invitation",
    ),
    "payment_received_therapist": TemplateSpec(
        CHAT,
        ("reference", "client_name", "starts_at_local", "amount_kes", "receipt", "meeting_url"),
        ("session_type", "paid_at_local", "amount_text", "therapist_name", "minutes", "starts_at_iso",
         "ends_at_iso"),
        description="P25/P32/P62: a booking was paid",
    ),
    "payment_failed_client": TemplateSpec(
        CHAT,
        ("reference", "reason"),
        ("amount_kes",),
        buttons=(("Retry payment", "pay"), ("Use another number", "chphone")),
        multipart_sms=True,
        description="P27/P31/P63: why the payment failed; retry, or pay from another number",
    ),
    "payment_delayed_client": TemplateSpec(
        CHAT,
        ("reference",),
        ("amount_kes", "retry_seconds"),
        description="P55: M-Pesa unavailable, we retry in 30 s",
    ),
    "payment_review_client": TemplateSpec(
        CHAT,
        ("reference",),
        ("amount_kes", "receipt"),
        description="a payment needs a human check; do not pay again",
    ),
    "reminder_24h_client": TemplateSpec(
        CHAT,
        ("reference", "starts_at_local", "meeting_url"),
        ("therapist_name", "session_type"),
        description="P64: the session is in 24 hours",
    ),
    "reminder_1h_client": TemplateSpec(
        CHAT,
        ("reference", "starts_at_local", "meeting_url"),
        ("therapist_name", "session_type"),
        description="P65: the session starts in an hour",
    ),
    "chat_reply": TemplateSpec(
        frozenset({"sms"}),
        ("text",),
        multipart_sms=True,
        description="an SMS conversation reply: the dialog engine's text, line by line (core/dialog/sms.py)",
    ),
    # -- reschedule --
    "booking_rescheduled_client": TemplateSpec(
        CHAT,
        ("reference", "old_starts_at_local", "new_starts_at_local"),
        ("therapist_name", "session_type", "meeting_url", "minutes", "paid"),
        description="the session was moved (by the practice, or the practitioner approved the client's move)",
    ),
    "booking_rescheduled_therapist": TemplateSpec(
        CHAT,
        ("reference", "client_name", "old_starts_at_local", "new_starts_at_local"),
        ("session_type", "minutes", "paid"),
        description="a session of the practitioner was moved to another time",
    ),
    "booking_rescheduled_email": TemplateSpec(
        EMAIL,
        ("reference", "old_starts_at_local", "new_starts_at_local", "starts_at_iso", "ends_at_iso"),
        ("client_name", "therapist_name", "session_type", "meeting_url", "minutes", "sequence", "paid"),
        ics=True,
        description="the new time with an .ics: same UID, a higher SEQUENCE (calendars move the event)",
    ),
    "reschedule_requested_therapist": TemplateSpec(
        CHAT,
        ("reference", "client_name", "old_starts_at_local", "new_starts_at_local", "approval_code"),
        ("session_type", "minutes", "paid"),
        description="a client asks to move a session; Telegram buttons or SMS 'Reply A<code> / D<code>'",
    ),
    "reschedule_declined_client": TemplateSpec(
        CHAT,
        ("reference", "old_starts_at_local", "new_starts_at_local"),
        ("therapist_name", "session_type", "paid"),
        description="the practitioner declined the move: the session keeps its time",
    ),
    "reminder_1h_therapist": TemplateSpec(
        CHAT,
        ("reference", "starts_at_local", "meeting_url"),
        ("client_name", "session_type"),
        description="P65: the session starts in an hour (practitioner)",
    ),
}


def _short(value: Any, limit: int) -> str:
    text = " ".join(str(value if value is not None else "").split())
    return text if len(text) <= limit else text[: max(limit - 3, 1)].rstrip() + "..."


def _kes(value: Any) -> str:
    try:
        return f"KES {int(value):,}"
    except (TypeError, ValueError):
        return f"KES {value}"


def _tidy(value: Any) -> Any:
    """SMS: every inserted value on one line (names cannot inject extra lines)."""
    return " ".join(value.split()) if isinstance(value, str) else ("" if value is None else value)


def _environment(*, sms: bool) -> Environment:
    env = Environment(  # noqa: S701 - autoescape is on for .html; .txt is plain text by design
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=_tidy if sms else None,
    )
    env.filters["short"] = _short
    env.filters["kes"] = _kes
    return env


_ENV = _environment(sms=False)
_SMS_ENV = _environment(sms=True)


def spec(template: str) -> TemplateSpec:
    """The registry entry for ``template`` or TemplateError."""
    try:
        return TEMPLATES[template]
    except KeyError:
        raise TemplateError(f"unknown template '{template}'") from None


def check(template: str, channel: str, data: Mapping[str, Any]) -> None:
    """Raise TemplateError unless ``template`` has a ``channel`` variant and ``data`` has its keys."""
    entry = spec(template)
    if channel not in entry.channels:
        raise TemplateError(f"template '{template}' has no {channel} variant")
    missing = [key for key in entry.required if key not in data]
    if missing:
        raise TemplateError(f"template '{template}' needs data keys: {', '.join(missing)}")


# How the services write a time into the data (core/domain/slots.py format_nairobi); put into
# the reader's language here (English stays exactly as written).
_LOCAL_TIME_FORMAT = "%a %d %b %Y, %H:%M EAT"
_LOCAL_TIME_KEYS = ("starts_at_local", "paid_at_local", "old_starts_at_local", "new_starts_at_local")


def _localised_time(value: Any, lang: str, *, sms: bool) -> Any:
    """``Sat 05 Dec 2026, 11:00 EAT`` in ``lang``; a Kiswahili SMS says ``Jumamosi 05 Des, 11:00``
    (bookings are at most 14 days ahead and everyone reading is in Kenya: the year and the
    zone would only cost characters of a 160-character SMS)."""
    if lang == i18n.ENGLISH or not isinstance(value, str) or not value:
        return value
    try:
        moment = datetime.strptime(value, _LOCAL_TIME_FORMAT).replace(tzinfo=NAIROBI)
    except ValueError:
        return value  # not a time we wrote: shown as it is
    return i18n.moment(moment, lang, year=not sms, zone=not sms)


def _localise(context: dict[str, Any], lang: str, channel: str) -> None:
    for key in _LOCAL_TIME_KEYS:
        context[key] = _localised_time(context.get(key), lang, sms=channel == "sms")
    if isinstance(context.get("reason"), str):  # a typed decline reason is not in the table: kept
        context["reason"] = messages.reason(context["reason"], lang)


def _path(lang: str, channel: str, name: str) -> str:
    """``sw/sms/x.txt`` when that language has the variant, else the English ``sms/x.txt``."""
    if lang != i18n.ENGLISH and (TEMPLATE_DIR / lang / channel / name).is_file():
        return f"{lang}/{channel}/{name}"
    return f"{channel}/{name}"


def render(
    template: str, channel: str, data: Mapping[str, Any], lang: str = i18n.ENGLISH
) -> RenderedMessage:
    """Render the ``channel`` variant of ``template`` with ``data``, in ``lang``."""
    check(template, channel, data)
    lang = i18n.supported(lang)
    entry = TEMPLATES[template]
    context: dict[str, Any] = {key: None for key in (*entry.optional, *_COMMON_OPTIONAL)}
    context.update({k: v for k, v in data.items() if k not in META_KEYS})
    context["test_mode"] = bool(context.get("test_mode"))
    _localise(context, lang, channel)
    test_mode = context["test_mode"]
    if channel == "telegram":
        text = _ENV.get_template(_path(lang, "telegram", f"{template}.html")).render(context).strip()
        if test_mode:
            text = f"<b>[{TEST_MODE_MARK}]</b>\n{text}"
        return RenderedMessage(channel, template, text, buttons=_buttons(entry, data, lang))
    if channel == "sms":
        raw = _SMS_ENV.get_template(_path(lang, "sms", f"{template}.txt")).render(context)
        if test_mode:
            raw = f"[{TEST_MODE_MARK}] {raw}"
        keep = [str(v) for k, v in data.items() if k.endswith("_url") and v]
        return RenderedMessage(channel, template, sms_safe(raw, keep=keep))
    subject = " ".join(
        _ENV.get_template(_path(lang, "email", f"{template}.subject.txt")).render(context).split()
    )
    text = _ENV.get_template(_path(lang, "email", f"{template}.txt")).render(context).strip() + "\n"
    html = _ENV.get_template(_path(lang, "email", f"{template}.html")).render(context)
    if test_mode:
        subject = f"[{TEST_MODE_MARK}] {subject}"
    attachments = (calendar_invite(data, lang),) if entry.ics else ()
    return RenderedMessage(channel, template, text, subject=subject, html=html, attachments=attachments)


def _buttons(entry: TemplateSpec, data: Mapping[str, Any], lang: str) -> tuple[Button, ...]:
    custom = data.get("buttons")
    if custom is not None:
        # Queued with the catalogue's English labels: shown in the reader's language.
        return tuple(Button(_label(str(label), lang), str(cb)) for label, cb in custom)
    booking_id = data.get("booking_id")
    if booking_id is None:
        return ()
    return tuple(
        Button(_label(label, lang), f"{CALLBACK_VERSION}:{action}:{booking_id}")
        for label, action in entry.buttons
    )


def _label(english: str, lang: str) -> str:
    """A registry button label (the catalogue's English label) in ``lang``."""
    key = next((k for k, v in messages.LABELS_EN.items() if v == english), None)
    return messages.label(key, lang) if key is not None else english


def parse_time(value: Any) -> datetime:
    """An aware datetime from a datetime or an ISO-8601 string (naive means UTC)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def calendar_invite(data: Mapping[str, Any], lang: str = i18n.ENGLISH) -> Attachment:
    """An iCalendar (.ics) event for the session, in Africa/Nairobi time, with the join link;
    its summary and description in ``lang``."""
    from icalendar import Calendar, Event

    start = parse_time(data["starts_at_iso"]).astimezone(NAIROBI)
    end = parse_time(data["ends_at_iso"]).astimezone(NAIROBI)
    url = str(data.get("meeting_url") or "")  # an unpaid, moved session has no link yet
    reference = str(data["reference"])
    cal = Calendar()
    cal.add("prodid", "-//Smiling Steps//Bookings//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = Event()
    event.add("uid", f"{_safe_uid(reference)}@smilingsteps")
    # RFC 5545: the same UID with a higher SEQUENCE replaces the event (a moved session).
    event.add("sequence", max(int(data.get("sequence") or 0), 0))
    event.add("dtstamp", datetime.now(UTC))
    event.add("dtstart", start)
    event.add("dtend", end)
    who = data.get("therapist_name")
    if who:
        summary = messages.say("ics_summary_with", lang=lang, name=who)
    else:
        summary = messages.say("ics_summary", lang=lang)
    event.add("summary", summary)
    if url:
        about = messages.say("ics_description", lang=lang, url=url, reference=reference)
    else:
        about = messages.say("ics_reference", lang=lang, reference=reference)
    event.add("description", about)
    if url:
        event.add("location", url)
        event.add("url", url)
    cal.add_component(event)
    cal.add_missing_timezones()
    return Attachment("session.ics", "text/calendar; method=PUBLISH", cal.to_ical())


def _safe_uid(reference: str) -> str:
    return re.sub(r"[^A-Za-z0-9\-]", "-", reference)[:40] or "booking"
