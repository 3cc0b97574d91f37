"""What the person holding the phone does: write, share a contact, tap and press buttons, block."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from simulators.telegram_api.html_parser import utf16_len
from simulators.telegram_api.methods import call as call_method
from simulators.telegram_api.models import CallbackRecord, SimChat, SimMessage, SimUser
from simulators.telegram_api.protocol import DriverError
from simulators.telegram_api.state import SimulatorState


class TelegramApiSimulator(SimulatorState):
    """The simulated Telegram: its state, the phone side (these methods) and :meth:`call` for the bot."""

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Run one Bot API method as the bot would; returns the ``result`` or raises ApiError."""
        return await call_method(self, method, params)

    # -- the people ----------------------------------------------------------------------
    def add_user(
        self,
        user_id: int,
        first_name: str = "User",
        *,
        last_name: str | None = None,
        username: str | None = None,
        phone_number: str | None = None,
        language_code: str = "en",
        started: bool = False,
    ) -> SimUser:
        """Create (or update) a Telegram user with a private chat with the bot."""
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = SimUser(user_id, first_name)
            self.chats[user_id] = SimChat(user)
        user.first_name, user.last_name, user.username = first_name, last_name, username
        user.language_code = language_code
        if phone_number is not None:
            user.phone_number = phone_number
        user.started = user.started or started
        self.bump()
        return user

    def _user(self, user_id: int) -> SimUser:
        try:
            return self.users[user_id]
        except KeyError:
            raise DriverError(f"no user {user_id}; add_user() first") from None

    def send_text(self, user_id: int, text: str) -> SimMessage:
        """The user types ``text`` (a command if it starts with "/")."""
        entities = []
        command = re.match(r"/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?", text)
        if command:
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group(0))})
        return self._user_message(user_id, text=text, entities=entities)

    def send_command(self, user_id: int, command: str, args: str = "") -> SimMessage:
        """The user sends ``/command args``."""
        return self.send_text(user_id, f"/{command.lstrip('/')}" + (f" {args}" if args else ""))

    def share_contact(
        self,
        user_id: int,
        phone_number: str | None = None,
        *,
        contact_user_id: int | None | str = "self",
        first_name: str | None = None,
    ) -> SimMessage:
        """The user shares a contact card: their own by default (``contact_user_id="self"``).

        ``contact_user_id`` another id or None shares someone else's contact (as from the
        address book); ``phone_number`` defaults to the user's own number.
        """
        user = self._user(user_id)
        phone = phone_number or user.phone_number
        if not phone:
            raise DriverError(f"user {user_id} has no phone_number to share")
        contact: dict[str, Any] = {"phone_number": phone, "first_name": first_name or user.first_name}
        owner = user_id if contact_user_id == "self" else contact_user_id
        if owner is not None:
            contact["user_id"] = int(owner)
        return self._user_message(user_id, contact=contact)

    def send_sticker(self, user_id: int) -> SimMessage:
        """The user sends something that is not text (a sticker)."""
        return self._user_message(user_id, other="sticker")

    def tap(self, user_id: int, label: str) -> SimMessage:
        """The user taps a button of the reply keyboard they currently see."""
        chat = self.chats[self._user(user_id).id]
        keyboard = chat.reply_keyboard
        buttons = [b for row in (keyboard or {}).get("keyboard", []) for b in row]
        button = next((b for b in buttons if (b if isinstance(b, str) else b.get("text")) == label), None)
        if button is None:
            raise DriverError(f"no reply-keyboard button {label!r}; visible: {self.keyboard_labels(user_id)}")
        if keyboard and keyboard.get("one_time_keyboard"):
            chat.reply_keyboard = None
        if isinstance(button, dict) and button.get("request_contact"):
            return self.share_contact(user_id)
        return self.send_text(user_id, label)

    def keyboard_labels(self, user_id: int) -> list[str]:
        """Labels of the reply keyboard the user currently sees (empty if none)."""
        keyboard = self.chats[self._user(user_id).id].reply_keyboard or {}
        return [b if isinstance(b, str) else b["text"] for row in keyboard.get("keyboard", []) for b in row]

    def press(
        self,
        user_id: int,
        message_id: int | None = None,
        *,
        label: str | None = None,
        data: str | None = None,
        forge: bool = False,
    ) -> CallbackRecord:
        """The user presses an inline button (by label or data) of a bot message.

        Without ``message_id`` the newest bot message offering that button is used. The
        button must be on the message as it is now, unless ``forge`` (any data at all).
        """
        user = self._user(user_id)
        chat = self.chats[user.id]
        if label is None and data is None:
            raise DriverError("press() needs a label or data")
        candidates = [m for m in reversed(chat.messages) if m.from_bot and not m.deleted]
        if message_id is not None:
            candidates = [m for m in candidates if m.message_id == message_id]
            if not candidates:
                raise DriverError(f"no bot message {message_id} in chat {user_id}")
        for message in candidates:
            for button in message.buttons():
                if "callback_data" not in button:
                    continue
                if (label is None or button["text"] == label) and (
                    data is None or button["callback_data"] == data
                ):
                    return self._callback(user, message, button["callback_data"])
        if forge and data is not None and candidates:
            return self._callback(user, candidates[0], data)
        raise DriverError(f"no inline button label={label!r} data={data!r} in chat {user_id}")

    def block(self, user_id: int) -> None:
        """The user blocks the bot: sends now fail with 403; the bot gets my_chat_member."""
        user = self._user(user_id)
        if not user.blocked:
            user.blocked = True
            self._member_update(user, "member", "kicked")

    def unblock(self, user_id: int) -> None:
        """The user restarts the bot; the bot gets my_chat_member."""
        user = self._user(user_id)
        if user.blocked:
            user.blocked = False
            self._member_update(user, "kicked", "member")

    def _user_message(self, user_id: int, **fields: Any) -> SimMessage:
        user = self._user(user_id)
        if user.blocked:  # writing to a blocked bot restarts it, like the "Restart" button
            self.unblock(user_id)
        user.started = True
        chat = self.chats[user.id]
        message = SimMessage(
            chat.next_message_id, user.id, False, int(time.time()), time.monotonic(), **fields
        )
        chat.next_message_id += 1
        chat.messages.append(message)
        self.enqueue("message", message.to_api(self.bot_user, user))
        return message

    def _callback(self, user: SimUser, message: SimMessage, data: str) -> CallbackRecord:
        query_id = str(secrets.randbelow(9 * 10**18) + 10**18)
        record = CallbackRecord(
            query_id, user.id, message.chat_id, message.message_id, data, time.monotonic()
        )
        self.callbacks[query_id] = record
        self.enqueue(
            "callback_query",
            {
                "id": query_id,
                "from": user.to_api(),
                "message": message.to_api(self.bot_user, user),
                "chat_instance": str(-(user.id * 7919 % 10**18)),
                "data": data,
            },
        )
        return record

    def _member_update(self, user: SimUser, old: str, new: str) -> None:
        member: dict[str, Any] = {
            "user": {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")}
        }
        self.enqueue(
            "my_chat_member",
            {
                "chat": user.chat(),
                "from": user.to_api(),
                "date": int(time.time()),
                "old_chat_member": {
                    **member,
                    "status": old,
                    **({"until_date": 0} if old == "kicked" else {}),
                },
                "new_chat_member": {
                    **member,
                    "status": new,
                    **({"until_date": 0} if new == "kicked" else {}),
                },
            },
        )
