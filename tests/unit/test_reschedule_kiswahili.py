"""The Kiswahili of the rescheduling keys and templates (core/dialog/messages_sw_reschedule.py,
core/templates/sw/…): every key in both languages with the same placeholders, SMS in one GSM-7
segment with realistic long values, and never a word naming the kind of care."""

from __future__ import annotations

import string

import pytest

from core.dialog.messages import EN, LABELS_EN
from core.dialog.messages_sw_reschedule import LABELS_SW_RESCHEDULE, SW_RESCHEDULE
from core.templates import _SMS_ENV, TEMPLATE_DIR, TEMPLATES
from core.templates.gsm import contains_forbidden, is_gsm7, sms_safe

RESCHEDULE_TEMPLATES = sorted(name for name in TEMPLATES if "reschedul" in name)
RESCHEDULE_SMS = [name for name in RESCHEDULE_TEMPLATES if "sms" in TEMPLATES[name].channels]
FORBIDDEN_SW = ("tiba", "ushauri nasaha", "akili")
LONG = {
    "reference": "SS1A2B3C4D5E",
    "client_name": "Wanjiru Kamau Njeri wa Mwangi",
    "therapist_name": "Dr. Amani Wanjiku Otieno",
    "session_type": "Individual",
    "old_starts_at_local": "Wed 30 Dec 2026, 16:30 EAT",
    "new_starts_at_local": "Thu 31 Dec 2026, 16:30 EAT",
    "approval_code": "7K2M9QXA",
    "meeting_url": None,
    "booking_id": 41,
    "minutes": 50,
    "paid": True,
    "test_mode": False,
}


def _fields(entry: object) -> set[str]:
    texts = [entry] if isinstance(entry, str) else list(entry.values())  # type: ignore[union-attr]
    return {name for text in texts for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_reschedule_key_exists_in_english_and_kiswahili_with_the_same_placeholders():
    english = {key for key in EN if key.startswith("move_")}
    assert set(SW_RESCHEDULE) == english
    for key, entry in SW_RESCHEDULE.items():
        assert _fields(entry) == _fields(EN[key]), key
        if not isinstance(entry, str):
            assert set(entry) == set(EN[key]), key  # type: ignore[arg-type]
    assert set(LABELS_SW_RESCHEDULE) == {"reschedule", "yes_move"} <= set(LABELS_EN)


@pytest.mark.parametrize("language", ["", "sw/"])
@pytest.mark.parametrize("template", RESCHEDULE_SMS)
def test_reschedule_sms_fits_one_gsm7_segment_in_both_languages(template: str, language: str):
    assert (TEMPLATE_DIR / f"{language}sms/{template}.txt").exists()
    raw = _SMS_ENV.get_template(f"{language}sms/{template}.txt").render(LONG)
    text = sms_safe(raw)
    assert text == raw.strip()  # nothing had to be transliterated or hidden
    assert is_gsm7(text) and len(text) <= 160, (len(text), text)
    assert not contains_forbidden(text)
    assert not any(word in text.lower() for word in FORBIDDEN_SW)


@pytest.mark.parametrize("template", RESCHEDULE_TEMPLATES)
def test_every_reschedule_template_has_its_kiswahili_files(template: str):
    spec = TEMPLATES[template]
    for channel in spec.channels:
        if channel == "email":
            for part in ("subject.txt", "txt", "html"):
                assert (TEMPLATE_DIR / f"sw/email/{template}.{part}").exists()
        else:
            suffix = "html" if channel == "telegram" else "txt"
            assert (TEMPLATE_DIR / f"sw/{channel}/{template}.{suffix}").exists()


def test_the_kiswahili_catalogue_never_names_the_kind_of_care():
    texts = [v if isinstance(v, str) else " ".join(v.values()) for v in SW_RESCHEDULE.values()]
    texts += list(LABELS_SW_RESCHEDULE.values())
    assert not any(word in text.lower() for text in texts for word in FORBIDDEN_SW)
