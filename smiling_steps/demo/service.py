"""The running service as the demo sees it: only its HTTP interfaces (driver, control, captures, hooks)."""

from __future__ import annotations

import time
from typing import Any

import httpx

TELEGRAM = "/sim/telegram/driver"
DARAJA = "/sim/daraja/control"


class ServiceError(RuntimeError):
    """The service answered something the demo cannot use; the message says what."""


class Service:
    """A local-mode service at ``base_url``: the Telegram stand-in, Daraja control, SMS, e-mail."""

    def __init__(self, base_url: str, sms_secret: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.sms_secret = sms_secret
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    # -- plumbing --------------------------------------------------------------------------------
    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServiceError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise ServiceError(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def is_local_mode(self) -> bool:
        """Whether the stand-ins the scenarios drive are mounted (they are only in local mode)."""
        try:
            return self._http.get(f"{TELEGRAM}/users").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            time.sleep(0.2)
        return False

    # -- Telegram stand-in -----------------------------------------------------------------------
    def add_chat_user(self, user_id: int, first_name: str, phone: str) -> None:
        body = {"id": user_id, "first_name": first_name, "phone_number": phone, "started": True}
        self._json("POST", f"{TELEGRAM}/users", body)

    def command(self, user_id: int, command: str) -> None:
        self._json("POST", f"{TELEGRAM}/users/{user_id}/command", {"command": command})

    def text(self, user_id: int, text: str) -> None:
        self._json("POST", f"{TELEGRAM}/users/{user_id}/text", {"text": text})

    def press(self, user_id: int, label: str, message_id: int | None = None) -> None:
        self._json("POST", f"{TELEGRAM}/users/{user_id}/press", {"label": label, "message_id": message_id})

    def tap(self, user_id: int, label: str) -> None:
        """A reply-keyboard button (e.g. "Share my phone number")."""
        self._json("POST", f"{TELEGRAM}/users/{user_id}/tap", {"label": label})

    def chat(self, user_id: int) -> list[dict[str, Any]]:
        return list(self._json("GET", f"{TELEGRAM}/chats/{user_id}/messages")["messages"])

    # -- Daraja simulator ------------------------------------------------------------------------
    def next_outcome(self, outcome: str, delay: float | None = None) -> None:
        body: dict[str, Any] = {"outcome": outcome}
        if delay is not None:
            body["delay"] = delay
        self._json("POST", f"{DARAJA}/next-outcome", body)

    def daraja_faults(self, **switches: bool | float) -> None:
        self._json("POST", f"{DARAJA}/faults", dict(switches))

    def daraja_log(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self._json("GET", f"{DARAJA}/log?since={since}")["entries"])

    # -- SMS and e-mail --------------------------------------------------------------------------
    def sms_in(self, sender: str, text: str, message_id: str) -> None:
        """An inbound SMS: POSTed to the SMS hook as Africa's Talking does when its secret is known,
        else through the phone page's SMS route, which forwards it to the same hook (local mode)."""
        if not self.sms_secret:
            answer = self._json("POST", "/sim/phone/api/sms", {"from": sender, "text": text})
            if answer.get("hook_status") != 200:
                raise ServiceError(f"SMS hook answered HTTP {answer.get('hook_status')}")
            return
        form = {"from": sender, "to": "12345", "text": text, "id": message_id, "date": "2030-01-01"}
        try:
            response = self._http.post(f"/hooks/sms/{self.sms_secret}/inbound", data=form)
        except httpx.HTTPError as exc:
            raise ServiceError(f"SMS hook: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ServiceError(f"SMS hook: HTTP {response.status_code} {response.text[:200]}")

    def sms_out(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/sim/at/messages.json"))

    def mails(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/sim/mail/messages.json"))

    def home_redirect(self) -> str | None:
        return self._http.get("/").headers.get("location")
