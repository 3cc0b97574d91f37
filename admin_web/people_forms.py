"""Form and query-string values of the people pages (notifications, practitioners, clients).

Each parser returns a clean value or raises ``ValueError`` with a message fit for the page.
"""

from __future__ import annotations

PAGE_MAX = 100_000


def text(value: object, *, limit: int = 1000) -> str:
    """A form field as text ('' when absent or not text), cut to ``limit`` characters."""
    return value[:limit] if isinstance(value, str) else ""


def parse_page(value: str | None) -> int:
    """The ``page`` parameter: a whole number from 1 (absent means 1)."""
    if value is None or value == "":
        return 1
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= PAGE_MAX:
        raise ValueError(f"page must be a whole number from 1 to {PAGE_MAX:,}")
    return int(value)


def parse_choice(value: str | None, choices: tuple[str, ...], name: str) -> str:
    """One of ``choices``, or '' for all."""
    if not value:
        return ""
    if value not in choices:
        raise ValueError(f"{name} must be one of: {', '.join(choices)}")
    return value
