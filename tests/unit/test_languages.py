"""English and Kiswahili: the catalogues match key for key and field for field, every template
exists in both, SMS stays GSM-7 and short in both, and neither names the kind of care."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import i18n
from core.config import ConfigError, load_settings
from core.dialog import messages
from core.dialog.messages_sw import REASONS_SW
from core.mpesa import result_codes
from core.services.payments import initiate
from core.templates import TEMPLATE_DIR, TEMPLATES, render
from core.templates.gsm import FORBIDDEN_STEMS, contains_forbidden, is_gsm7, segments

LANGS = ("en", "sw")
# Words naming the kind of care in Kiswahili (issue 15): never in our own wording.
FORBIDDEN_SW = ("tiba", "ushauri", "akili", "saikolojia", "kisaikolojia", "afya ya akili")
_FIELD = re.compile(r"{(\w+)}")
SATURDAY = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)  # 11:00 in Nairobi; "Jumamosi" is the longest day name
EXTENSIONS = {"telegram": (".html",), "sms": (".txt",), "email": (".subject.txt", ".txt", ".html")}


def _variants(entry: messages.Entry) -> dict[str, str]:
    return {"default": entry} if isinstance(entry, str) else dict(entry)


def _fields(text: str) -> set[str]:
    return set(_FIELD.findall(text))


def _sms_keys() -> list[str]:
    """Every catalogue key an SMS conversation can send (the tg_* texts are Telegram's alone)."""
    return [key for key in messages.EN if not key.startswith(("tg_", "ics_"))]


def _long_fields(lang: str) -> dict[str, object]:
    """Long but realistic values, formatted as the conversation formats them in ``lang``."""
    return {
        "count": 12,
        "day": messages.day_label(SATURDAY.date(), lang),
        "therapist": "Dr. Wanjiku Kamau-Otieno",
        "session_type": "Couples session",
        "minutes": 90,
        "when": messages.when(SATURDAY, lang, channel="sms"),
        "price": messages.price(12500, lang),
        "email": "wanjiku.kamau@example.co.ke",
        "reference": "SS1A2B3C4D5E",
        "status": messages.say("status_APPROVED", "sms", lang, price=messages.price(12500, lang)),
        "receipt": "TJK3H2L9QZ",
        "phone": "0712 345 678",
        "formats": messages.phone_formats(lang),
        "seconds": 30,
        "name": "Dr. Wanjiku Kamau",
        "today": 12,
        "paid": 11,
        "pending": 10,
        "client": "Achieng Odhiambo",
        "code": "7K2M9QXA",
        "mark": messages.say("mark_unpaid", "sms", lang),
        "last": "0712 345 678",
        "window": messages.say("hours", "sms", lang, count=48),
        "reason": messages.reason(result_codes.describe_result(1).message, lang),
        "url": "https://meet.jit.si/SmilingSteps-AbCdEfGhIjKlMnOpQrStUv",
        # rescheduling and the practitioner calendar (other parts' keys, same rules)
        "old": messages.when(SATURDAY, lang, channel="sms"),
        "new": messages.when(SATURDAY, lang, channel="sms"),
        "hours": "mon-fri 09:00-17:00; sat 10:00-13:00",
        "span": f"{messages.day_label(SATURDAY.date(), lang)} - {messages.day_label(SATURDAY.date(), lang)}",
        "first": messages.day_label(SATURDAY.date(), lang),
        "start": "14:00",
        "end": "17:00",
        "days": 92,
    }


# -- the catalogues ----------------------------------------------------------------------------------


def test_every_key_and_label_exists_in_both_languages() -> None:
    assert sorted(set(messages.EN) ^ set(messages.SW)) == []
    assert sorted(set(messages.LABELS_EN) ^ set(messages.LABELS_SW)) == []


@pytest.mark.parametrize("key", sorted(messages.EN))
def test_a_key_has_the_same_variants_and_fields_in_both_languages(key: str) -> None:
    english, kiswahili = _variants(messages.EN[key]), _variants(messages.SW[key])
    assert english.keys() == kiswahili.keys(), key
    for variant, text in english.items():
        assert _fields(text) == _fields(kiswahili[variant]), (key, variant)


def test_the_catalogue_test_fails_for_a_key_or_a_field_in_one_language_only() -> None:
    lonely = {**messages.SW, "only_here": "Habari"}
    assert set(lonely) ^ set(messages.EN) == {"only_here"}
    assert _fields("Lipa {price}") != _fields("Pay {price} for {reference}")


def test_every_payment_failure_sentence_has_its_kiswahili() -> None:
    sentences = {info.message for info in result_codes._ENTRIES}
    sentences |= {result_codes.describe_result("SFC_IC0003").message, initiate.UNAVAILABLE_MESSAGE,
                  initiate.REFUSED_MESSAGE}
    missing = sorted(s for s in sentences if s not in REASONS_SW)
    assert missing == []


@pytest.mark.parametrize("lang", LANGS)
def test_our_own_wording_never_names_the_kind_of_care_in_either_language(lang: str) -> None:
    texts = [v for entry in messages.LANGUAGES[lang].values() for v in _variants(entry).values()]
    texts += list(messages.LABELS[lang].values())
    if lang == "sw":
        texts += list(REASONS_SW.values())
    folder = TEMPLATE_DIR / lang if lang != "en" else TEMPLATE_DIR
    files = [p for channel in EXTENSIONS for p in (folder / channel).iterdir() if p.is_file()]
    texts += [p.read_text(encoding="utf-8") for p in files]
    for raw in texts:
        text = re.sub(r"{{.*?}}|{%.*?%}|{\w+}", "", raw)  # field names are not words anyone reads
        assert not contains_forbidden(text), text
        lowered = text.casefold()
        assert not [w for w in FORBIDDEN_SW if re.search(rf"\b{w}", lowered)], text


def test_user_data_naming_the_kind_of_care_in_kiswahili_is_rewritten_in_sms() -> None:
    data = {"reference": "SS1", "starts_at_local": "Sat 05 Dec 2026, 11:00 EAT", "meeting_url": "https://x.y/z",
            "therapist_name": "Mtaalamu wa Tiba Ushauri"}
    text = render("reminder_24h_client", "sms", data, "sw").text
    assert "tiba" not in text.casefold() and "ushauri" not in text.casefold()
    assert {"tiba", "ushauri"} <= set(FORBIDDEN_STEMS)


# -- templates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("template", "channel"), [(t, c) for t, s in TEMPLATES.items() for c in s.channels])
def test_every_template_exists_in_kiswahili(template: str, channel: str) -> None:
    for ext in EXTENSIONS[channel]:
        assert (TEMPLATE_DIR / "sw" / channel / f"{template}{ext}").is_file(), (template, channel, ext)


def test_a_kiswahili_notification_shows_kiswahili_times_labels_and_reasons() -> None:
    data = {"reference": "SS1", "starts_at_local": "Fri 04 Dec 2026, 11:00 EAT", "therapist_name": "Amani",
            "session_type": "Individual", "amount_kes": 2500, "booking_id": 4}
    approved = render("booking_approved_client", "telegram", data, "sw")
    assert "Ijumaa 04 Des 2026, 11:00 EAT" in approved.text
    sms = render("booking_approved_client", "sms", data, "sw").text
    assert "Ijumaa 04 Des, 11:00 kimekubaliwa" in sms and "KES 2,500" in approved.text
    assert [b.label for b in approved.buttons] == ["Lipa kwa M-Pesa"]
    assert render("booking_approved_client", "telegram", data).buttons[0].label == "Pay with M-Pesa"
    failed = render("payment_failed_client", "sms", {"reference": "SS1",
                    "reason": result_codes.describe_result(1032).message}, "sw")
    assert REASONS_SW[result_codes.describe_result(1032).message] in failed.text


def test_the_calendar_invitation_speaks_the_readers_language() -> None:
    data = {"reference": "SS1", "receipt": "TJK3H2L9QZ", "amount_kes": 2500, "meeting_url": "https://x.y/z",
            "starts_at_local": "Fri 04 Dec 2026, 11:00 EAT", "starts_at_iso": "2026-12-04T08:00:00+00:00",
            "ends_at_iso": "2026-12-04T08:50:00+00:00", "therapist_name": "Amani"}
    [invite] = render("payment_confirmed_email", "email", data, "sw").attachments
    ics = invite.content.decode().replace("\r\n ", "")  # unfold long lines
    assert "Kikao cha Smiling Steps na Amani" in ics and "Kumbukumbu ya miadi: SS1" in ics
    [english] = render("payment_confirmed_email", "email", data).attachments
    assert "Smiling Steps session with Amani" in english.content.decode()


# -- SMS length and encoding -----------------------------------------------------------------------


@pytest.mark.parametrize("key", _sms_keys())
def test_every_sms_dialog_message_is_gsm7_and_as_short_in_kiswahili_as_in_english(key: str) -> None:
    counts = {}
    for lang in LANGS:
        text = messages.say("test_mark", "sms", lang) + messages.say(key, "sms", lang, **_long_fields(lang))
        assert is_gsm7(text), (lang, key, [c for c in text if not is_gsm7(c)])
        counts[lang] = segments(text)
    assert counts["sw"] <= max(counts["en"], 1) or counts["sw"] <= 2, (key, counts)
    if counts["en"] == 1:
        assert counts["sw"] == 1, (key, counts)


@pytest.mark.parametrize("template", [t for t, s in TEMPLATES.items() if "sms" in s.channels])
def test_every_sms_template_fits_the_same_segments_in_both_languages_with_long_values(template: str) -> None:
    data = {
        "reference": "SS1A2B3C4D5E", "booking_id": 41, "client_name": "Achieng Odhiambo Wanjiku",
        "therapist_name": "Dr. Wanjiku Kamau-Otieno", "session_type": "Couples session", "minutes": 90,
        "starts_at_local": "Sat 05 Dec 2026, 11:00 EAT", "paid_at_local": "Sat 28 Nov 2026, 09:12 EAT",
        "approval_code": "7K2M9QXA", "amount_kes": 12500, "receipt": "TJK3H2L9QZ",
        "meeting_url": "https://meet.jit.si/SmilingSteps-AbCdEfGhIjKlMnOpQrStUv",
        "reason": result_codes.describe_result(1001).message, "retry_seconds": 30,
        "text": "Chagua saa:\n1 10:00\n2 11:00\nJibu 1-2", "cancelled_by": "practice", "refund_due": True,
        "was_approved": True, "under_review": True,
        "old_starts_at_local": "Fri 04 Dec 2026, 15:00 EAT",
        "new_starts_at_local": "Sat 05 Dec 2026, 11:00 EAT",
        "request_id": 12,
    }
    counts = {}
    for lang in LANGS:
        text = render(template, "sms", data, lang).text
        assert is_gsm7(text) and not contains_forbidden(text), (lang, text)
        counts[lang] = segments(text)
        assert counts[lang] <= 2, (lang, len(text), text)
    if counts["en"] == 1:
        assert counts["sw"] == 1, (template, counts, render(template, "sms", data, "sw").text)


# -- formatting and settings ----------------------------------------------------------------------------


def test_dates_and_amounts_read_as_a_kenyan_expects() -> None:
    friday = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    assert i18n.moment(friday, "sw") == "Ijumaa 04 Des, 11:00"
    assert i18n.moment(friday, "en") == "Fri 04 Dec, 11:00"
    assert i18n.amount(2500, "sw") == i18n.amount(2500, "en") == "KES 2,500"
    assert i18n.amount(1234567, "sw") == "KES 1,234,567"


def test_telegram_language_codes_choose_kiswahili_only_for_swahili() -> None:
    assert i18n.from_telegram("sw") == i18n.from_telegram("sw-KE") == "sw"
    assert i18n.from_telegram("en-GB") == i18n.from_telegram("fr") == "en"
    assert i18n.from_telegram(None) is None


def test_default_language_accepts_en_or_sw_and_names_the_choices_otherwise() -> None:
    assert load_settings({"DEFAULT_LANGUAGE": "sw"}).default_language == "sw"
    assert load_settings({}).default_language == "en"
    with pytest.raises(ConfigError, match="DEFAULT_LANGUAGE: must be en .English. or sw .Kiswahili."):
        load_settings({"DEFAULT_LANGUAGE": "kiswahili"})


# -- property: any key, any values, both languages ------------------------------------------------------

_VALUE = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + " .,-'{}", max_size=40),
    st.integers(min_value=0, max_value=10**7),
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(sorted(messages.EN)),
    channel=st.sampled_from(("telegram", "sms")),
    lang=st.sampled_from(LANGS),
    data=st.data(),
)
def test_any_catalogue_key_renders_in_both_languages_for_any_field_values(
    key: str, channel: str, lang: str, data: st.DataObject
) -> None:
    names = set()
    for variant in (*_variants(messages.EN[key]).values(), *_variants(messages.SW[key]).values()):
        names |= _fields(variant)
    fields = {name: data.draw(_VALUE, label=name) for name in sorted(names)}
    text = messages.say(key, channel, lang, **fields)  # a missing placeholder raises KeyError
    # Only an entry made of placeholders alone ("{reference} {when}") may render blank, and only
    # when every value drawn for it is blank.
    assert text.strip() or not any(str(value).strip() for value in fields.values())
    shown = _variants(messages.LANGUAGES[lang][key])
    used = _fields(shown.get(channel) or shown["default"])
    for name, value in fields.items():
        if name in used:
            assert str(value) in text
