"""SMS text rules: GSM-7 transliteration, segment counting, discretion."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.templates.gsm import contains_forbidden, discreet, is_gsm7, segments, septets, sms_safe, to_gsm7


def test_gsm7_keeps_its_own_letters_and_transliterates_the_rest() -> None:
    assert to_gsm7("Café Ñandù") == "Café Ñandù"
    assert to_gsm7("Ñandú") == "Ñandu"
    assert to_gsm7("Wanjikũ “Njeri” – ok…") == 'Wanjiku "Njeri" - ok...'
    assert to_gsm7("😀") == "?"


def test_extension_characters_count_twice_towards_the_segment() -> None:
    assert septets("{}") == 4
    assert segments("a" * 160) == 1
    assert segments("a" * 159 + "€") == 2
    assert segments("a" * 306) == 2
    assert segments("a" * 307) == 3


def test_words_naming_the_kind_of_care_become_neutral_words() -> None:
    assert discreet("Your Therapist and therapy, Psychologist, counselling, mental") == (
        "Your practitioner and session practitioner session session"
    )
    assert discreet("Join: https://x.example/therapy", keep=["https://x.example/therapy"]) == (
        "Join: https://x.example/therapy"
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_made_sms_safe_is_gsm7_and_discreet(text: str) -> None:
    safe = sms_safe(text)
    assert is_gsm7(safe)
    assert not contains_forbidden(safe)


PIECES = ["thera", "py", "psy", "ch", "men", "tal", "coun", "sel", " ", "x"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_forbidden_words_cannot_be_assembled_from_harmless_pieces(pieces: list[str]) -> None:
    assert not contains_forbidden(sms_safe("".join(pieces)))
