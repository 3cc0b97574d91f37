"""Jinja filters of the admin site: Nairobi times and shillings (registered by admin_web.app)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")


def nairobi_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An aware time shown in Africa/Nairobi; empty for None."""
    if value is None:
        return ""
    return value.astimezone(NAIROBI).strftime(fmt)


def kes(value: int | None) -> str:
    """Whole shillings: ``KES 2,500``; empty for None."""
    if value is None:
        return ""
    return f"KES {value:,}"


def percent(value: float | None) -> str:
    """A ratio 0..1 as ``87.5%``; an em dash when there is nothing to divide."""
    if value is None:
        return "—"
    return f"{value * 100:.1f}%"


FILTERS = {"nairobi": nairobi_time, "kes": kes, "percent": percent}
