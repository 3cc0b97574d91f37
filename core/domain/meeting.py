"""Join links for confirmed sessions: an unguessable room name in MEETING_URL_TEMPLATE."""

from __future__ import annotations

import secrets

ROOM_PREFIX = "SmilingSteps-"
ROOM_TOKEN_BYTES = 16  # token_urlsafe(16) gives 22 characters, 128 bits of randomness


def new_room_name() -> str:
    """``SmilingSteps-`` followed by 22 URL-safe random characters (A-Z, a-z, 0-9, ``-``, ``_``)."""
    return ROOM_PREFIX + secrets.token_urlsafe(ROOM_TOKEN_BYTES)


def new_meeting_url(template: str) -> str:
    """Replace ``{room}`` in ``template`` (e.g. ``https://meet.jit.si/{room}``) with a fresh room name."""
    if "{room}" not in template:
        raise ValueError("a meeting URL template must contain {room}")
    return template.replace("{room}", new_room_name())
