"""The wire protocol's fixed parts: the stand-in's token, limits, and Telegram's error wording."""

from __future__ import annotations

from typing import Any

# A token shaped like a real one (<bot id>:<35 characters>); the stand-in's own, not a secret.
SIMULATOR_TOKEN = "7000000001:AAsimulatorLocalBotTokenNotSecret0"
SIMULATOR_BOT_USERNAME = "SmilingStepsSimBot"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
MAX_LONG_POLL = 50.0
DEFAULT_ALLOWED = frozenset({"message", "edited_message", "callback_query", "my_chat_member"})
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
BLOCKED = "Forbidden: bot was blocked by the user"


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


class DriverError(ValueError):
    """A driver request that a real phone could not make (no such user, no such button...)."""


def bad(description: str) -> ApiError:
    """A 400 answer: "Bad Request: <description>"."""
    return ApiError(400, f"Bad Request: {description}")
