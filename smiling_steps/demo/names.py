"""The scenario names (kept apart so the command line can list them without importing the scenarios)."""

from __future__ import annotations

SCENARIO_NAMES: tuple[str, ...] = (
    "happy", "cancelled", "insufficient", "timeout", "duplicate", "outage", "sms",
)
