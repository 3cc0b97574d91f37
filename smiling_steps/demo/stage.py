"""What the demo watches while it acts: chats, the Daraja log, sent SMS and e-mail, printed as they change."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from smiling_steps.demo.service import Service
from smiling_steps.demo.transcript import StepFailed, Transcript

T = TypeVar("T")
POLL_S = 0.25
Message = dict[str, Any]


def buttons(message: Message) -> list[str]:
    """The labels of a message's inline buttons."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [str(b.get("text")) for row in rows for b in row]


def masked(phone: str) -> str:
    return f"{phone[:4]}*****{phone[-3:]}" if len(phone) > 7 else "***"


class Stage:
    """Polls every source, prints what is new once, and waits for what a step expects."""

    def __init__(self, service: Service, transcript: Transcript) -> None:
        self.service = service
        self.say = transcript.line
        self.chats: dict[int, str] = {}  # Telegram user id -> who, for the transcript
        self.messages: dict[int, list[Message]] = {}
        self._shown: dict[tuple[int, int], str] = {}
        self.sms_numbers: dict[str, str] = {}
        self.sms: list[dict[str, Any]] = []
        self.mails: list[dict[str, Any]] = []
        # A shared serve may have run other scenarios: start after what is already there.
        self._daraja_seq = max((e["seq"] for e in service.daraja_log()), default=0)
        self._pending_daraja: set[int] = set()
        self.daraja_seen: list[str] = []  # the transcript lines of this scenario's Daraja traffic
        self._sms_seen = len(service.sms_out())
        self._mail_seen = len(service.mails())

    def watch_chat(self, user_id: int, who: str) -> None:
        self.chats[user_id] = who
        self.messages[user_id] = []

    def watch_sms(self, phone: str, who: str) -> None:
        self.sms_numbers[phone] = who

    # -- waiting -----------------------------------------------------------------------------------
    def wait(self, what: str, check: Callable[[], T | None], within: float = 15.0) -> T:
        """Refresh until ``check`` gives something; StepFailed naming ``what`` after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            self.refresh()
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise StepFailed(f"no {what} within {within:.0f} s")
            time.sleep(POLL_S)

    def snapshot(self, user_id: int) -> set[tuple[int, str]]:
        """The bot messages of a chat as they are now; ``find`` can then ask for new or changed ones."""
        self.refresh()
        return {(m["message_id"], m.get("text") or "") for m in self.messages[user_id] if m["from_bot"]}

    def find(self, user_id: int, needle: str, since: set[tuple[int, str]] | None = None) -> Message | None:
        """The newest bot message containing ``needle`` (new or changed after ``since`` if given)."""
        for message in reversed(self.messages[user_id]):
            key = (message["message_id"], message.get("text") or "")
            if message["from_bot"] and needle in key[1] and (since is None or key not in since):
                return message
        return None

    def count(self, user_id: int, needle: str) -> int:
        return sum(1 for m in self.messages[user_id] if m["from_bot"] and needle in (m.get("text") or ""))

    # -- refreshing --------------------------------------------------------------------------------
    def refresh(self) -> None:
        for user_id in self.chats:
            self._refresh_chat(user_id)
        self._refresh_daraja()
        self._refresh_sms()
        self._refresh_mail()

    def _refresh_chat(self, user_id: int) -> None:
        self.messages[user_id] = self.service.chat(user_id)
        for message in self.messages[user_id]:
            if not message["from_bot"]:
                continue
            key, text = (user_id, message["message_id"]), message.get("text") or ""
            shown = f"{text}\n[{' | '.join(buttons(message))}]" if buttons(message) else text
            if self._shown.get(key) == shown:
                continue
            if _digits_only_change(self._shown.get(key), shown):
                self._shown[key] = shown  # a progress counter ticking: not worth a line
                continue
            edited = " (edited)" if key in self._shown else ""
            self._shown[key] = shown
            self.say(f"bot -> {self.chats[user_id]}{edited}", shown)

    def _refresh_daraja(self) -> None:
        since = min(self._pending_daraja, default=self._daraja_seq + 1) - 1
        for entry in self.service.daraja_log(min(since, self._daraja_seq)):
            seq = entry["seq"]
            if seq <= self._daraja_seq and seq not in self._pending_daraja:
                continue
            if entry["kind"] == "request" and entry.get("status") is None:
                self._pending_daraja.add(seq)  # answered later: print it then
                continue
            self._pending_daraja.discard(seq)
            self._daraja_seq = max(self._daraja_seq, seq)
            line = describe_daraja(entry)
            if line:
                self.daraja_seen.append(line)
                self.say("Daraja", line)

    def _refresh_sms(self) -> None:
        sent = self.service.sms_out()
        for sms in sent[self._sms_seen:]:
            self.sms.append(sms)
            who = self.sms_numbers.get(str(sms.get("to", "")).lstrip("+"), masked(str(sms.get("to", ""))))
            self.say(f"SMS -> {who}", str(sms.get("message", "")))
        self._sms_seen = len(sent)

    def _refresh_mail(self) -> None:
        mails = self.service.mails()
        for mail in mails[self._mail_seen:]:
            self.mails.append(mail)
            attachments = ", ".join(mail.get("attachments") or []) or "none"
            self.say("e-mail", f"to {', '.join(mail.get('to') or [])}: {mail.get('subject')}"
                     f" (attachments: {attachments})")
        self._mail_seen = len(mails)


def _digits_only_change(before: str | None, after: str) -> bool:
    return before is not None and re.sub(r"\d+", "#", before) == re.sub(r"\d+", "#", after)


def describe_daraja(entry: dict[str, Any]) -> str | None:
    """One transcript line for a Daraja log entry (OAuth token requests are left out)."""
    if entry["kind"] == "callback":
        callback = ((entry.get("body") or {}).get("Body") or {}).get("stkCallback") or {}
        return (f"callback ResultCode {callback.get('ResultCode')} ({callback.get('ResultDesc')}) "
                f"-> our answer HTTP {entry.get('status')}")
    endpoint, body, status = entry.get("endpoint"), entry.get("body") or {}, entry.get("status")
    if endpoint == "stk_push":
        phone = masked(str(body.get("PhoneNumber", "")))
        if status == 200:
            return (f"STK Push accepted (HTTP 200). M-Pesa prompt on {phone}: "
                    f"\"Pay KES {body.get('Amount')} to {body.get('AccountReference')}. Enter M-PESA PIN\"")
        return f"STK Push for {phone} answered HTTP {status}"
    if endpoint == "stk_query":
        answer = entry.get("response") or {}
        return f"STK Query -> HTTP {status}, ResultCode {answer.get('ResultCode', answer.get('errorCode'))}"
    return None
