"""What the simulated Telegram holds: users, messages, chats, button presses, faults, the webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimUser:
    """A Telegram user (the person holding the phone)."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    phone_number: str | None = None
    language_code: str = "en"
    started: bool = False  # a bot may message a user only after the user wrote to it
    blocked: bool = False

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        out["language_code"] = self.language_code
        return out

    def chat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "first_name": self.first_name, "type": "private"}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        return out


@dataclass
class SimMessage:
    """One message in a private chat, from the user or from the bot."""

    message_id: int
    chat_id: int
    from_bot: bool
    date: int
    at: float  # time.monotonic() when sent
    text: str | None = None  # what the user sees (entities applied, markup removed)
    entities: list[dict[str, Any]] = field(default_factory=list)
    source: str | None = None  # exactly what the bot sent (HTML before parsing)
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None  # any markup the bot sent (inline or reply keyboard)
    contact: dict[str, Any] | None = None
    other: str | None = None  # e.g. "sticker" for a non-text message
    edit_date: int | None = None
    edited_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier versions, oldest first
    deleted: bool = False

    @property
    def inline_keyboard(self) -> list[list[dict[str, Any]]]:
        return list((self.reply_markup or {}).get("inline_keyboard") or [])

    def buttons(self) -> list[dict[str, Any]]:
        """The inline buttons, row by row, flattened."""
        return [button for row in self.inline_keyboard for button in row]

    def button_labels(self) -> list[str]:
        return [button["text"] for button in self.buttons()]

    def to_api(self, bot: dict[str, Any], user: SimUser) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "from": bot if self.from_bot else user.to_api(),
            "chat": user.chat(),
            "date": self.date,
        }
        if self.edit_date:
            out["edit_date"] = self.edit_date
        if self.text is not None:
            out["text"] = self.text
        if self.entities:
            out["entities"] = self.entities
        if self.contact:
            out["contact"] = self.contact
        if self.other == "sticker":
            out["sticker"] = {
                "file_id": "CAACAgIAAxkBAAEBsimulator",
                "file_unique_id": "AgADsim",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
        if self.reply_markup and "inline_keyboard" in self.reply_markup:  # Telegram echoes inline only
            out["reply_markup"] = {"inline_keyboard": self.reply_markup["inline_keyboard"]}
        return out

    def to_driver(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "chat_id": self.chat_id,
            "from_bot": self.from_bot,
            "date": self.date,
            "text": self.text,
            "entities": self.entities,
            "source": self.source,
            "parse_mode": self.parse_mode,
            "reply_markup": self.reply_markup,
            "contact": self.contact,
            "other": self.other,
            "edit_date": self.edit_date,
            "history": self.history,
            "deleted": self.deleted,
        }


@dataclass
class SimChat:
    """The private chat of one user with the bot."""

    user: SimUser
    messages: list[SimMessage] = field(default_factory=list)
    next_message_id: int = 1
    reply_keyboard: dict[str, Any] | None = None  # the ReplyKeyboardMarkup the user currently sees

    def message(self, message_id: int) -> SimMessage | None:
        for message in self.messages:
            if message.message_id == message_id and not message.deleted:
                return message
        return None


@dataclass
class CallbackRecord:
    """A button press and how the bot answered it."""

    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    at: float  # monotonic time of the press
    answered_at: float | None = None
    answer: dict[str, Any] | None = None

    def to_driver(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "data": self.data,
            "answered": self.answered_at is not None,
            "answer_delay": None if self.answered_at is None else round(self.answered_at - self.at, 4),
            "answer": self.answer,
        }


@dataclass
class Fault:
    """An armed failure: the next ``remaining`` calls of a method answer ``status``."""

    status: int
    description: str
    remaining: int
    retry_after: int | None = None


@dataclass
class Webhook:
    """The webhook set with setWebhook, and its last delivery error."""

    url: str
    secret_token: str | None
    allowed_updates: frozenset[str] | None
    max_connections: int
    last_error_date: int | None = None
    last_error_message: str | None = None
