"""The practitioner calendar's wording: every English key has its Kiswahili with the same
placeholders, nothing names the kind of care, and the SMS texts are plain GSM-7 in one or two
segments with long realistic values."""

from __future__ import annotations

import string

from core.dialog import messages
from core.dialog.messages_sw_calendar import LABELS_SW_CALENDAR, SW_CALENDAR
from core.templates.gsm import contains_forbidden, is_gsm7, segments

CALENDAR_LABELS = {"away_keep", "away_dont", "away_rest_of_week", "away_next_week"}
FIELDS = {
    "hours": "mon-fri 08:00-12:00; mon-fri 13:00-18:00; sat 09:00-13:00",
    "span": "Wed 24 Dec 2027 to Fri 26 Dec 2027",
    "first": "Wed 24 Dec 2027",
    "last": "Fri 26 Dec 2027",
    "day": "Wed 24 Dec",
    "start": "14:00",
    "end": "17:00",
    "days": 92,
    "count": 12,
    "reference": "SS-7K3Q9X",
    "when": "Wed 24 Dec, 14:00",
}


def _calendar_keys() -> set[str]:
    extra = {"tg_command_hours", "tg_command_away", "therapist_help_calendar"}
    return {k for k in messages.EN if k.startswith(("away_", "hours_"))} | extra


def _variants(entry: messages.Entry) -> dict[str, str]:
    return {"default": entry} if isinstance(entry, str) else dict(entry)


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_calendar_key_exists_in_english_and_kiswahili_with_the_same_placeholders():
    assert set(SW_CALENDAR) == _calendar_keys()
    assert set(LABELS_SW_CALENDAR) == CALENDAR_LABELS <= set(messages.LABELS_EN)
    for key, entry in SW_CALENDAR.items():
        english, kiswahili = _variants(messages.EN[key]), _variants(entry)
        assert set(english) == set(kiswahili), key
        for channel, text in english.items():
            assert _placeholders(kiswahili[channel]) == _placeholders(text), key


def test_no_calendar_text_names_the_kind_of_care_and_sms_texts_fit_two_segments():
    for table in (messages.EN, SW_CALENDAR):
        for key in _calendar_keys():
            for channel, text in _variants(table[key]).items():
                rendered = text.format(**FIELDS)
                assert not contains_forbidden(rendered), key
                if channel == "sms" or isinstance(table[key], str):
                    assert is_gsm7(rendered), key
                    assert segments(rendered) <= 2, key
    for label in (*LABELS_SW_CALENDAR.values(), *(messages.LABELS_EN[k] for k in CALENDAR_LABELS)):
        assert not contains_forbidden(label) and is_gsm7(label)
