"""Rules about free text people type (names, searches): pure, shared by every input path."""

from __future__ import annotations

import unicodedata


def has_control_characters(text: str) -> bool:
    """True when ``text`` holds a control character (NUL, escape, …): never part of a name or address.

    PostgreSQL refuses NUL in text columns, so such input is refused with a message up front.
    """
    return any(unicodedata.category(ch) == "Cc" for ch in text)
