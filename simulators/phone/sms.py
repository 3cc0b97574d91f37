"""The SMS thread of a simulated phone: what it typed (forwarded like Africa's Talking) and what it got.

Inbound: the phone page's message becomes AT's inbound form (``from``, ``to``, ``text``, ``date``,
``id``, ``linkId``) POSTed to the service's SMS hook, whose secret URL only the server knows.
Outbound: whatever the Africa's Talking stand-in accepted for that number.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from simulators.africastalking import AfricasTalkingSimulator

_KENYAN = re.compile(r"(?:\+?254|0)?([17]\d{8})", re.ASCII)
MAX_SMS_CHARS = 1000
_TIMEOUT = aiohttp.ClientTimeout(total=15)


class BadNumber(ValueError):
    """Not a Kenyan mobile number."""


def kenyan_number(raw: object) -> str:
    """``0712 345 678``, ``+254712345678``, ``254712345678`` → ``254712345678`` (else BadNumber)."""
    text = re.sub(r"[\s\-()]", "", str(raw or ""))
    match = _KENYAN.fullmatch(text)
    if match is None:
        raise BadNumber("type a Kenyan mobile number, like 0712 345 678 or +254712345678")
    return "254" + match.group(1)


@dataclass
class SmsThreads:
    """Messages typed on the page (the service's answers are read from the AT stand-in)."""

    at: AfricasTalkingSimulator | None
    inbound_url: str | None  # the service's AT inbound hook, secret included; None: SMS not wired
    shortcode: str
    typed: list[dict[str, Any]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    @property
    def version(self) -> int:
        """Changes whenever a message is typed or sent (for the live updates)."""
        return len(self.typed) + (len(self.at.messages) if self.at else 0)

    async def send(self, number: str, text: str) -> int:
        """Forward ``text`` from ``number`` (2547…) as AT would; returns the hook's HTTP status."""
        if self.inbound_url is None:
            raise RuntimeError("SMS is not available here (no Africa's Talking hook configured)")
        now = datetime.now(UTC)
        form = {
            "from": f"+{number}",
            "to": self.shortcode,
            "text": text,
            "date": now.strftime("%Y-%m-%d %H:%M:%S"),
            "id": secrets.token_hex(16),
            "linkId": secrets.token_hex(8),
        }
        self.typed.append({"number": number, "text": text, "at": now.isoformat()})
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        async with self._session.post(self.inbound_url, data=form) as response:
            return response.status

    def thread(self, number: str) -> list[dict[str, Any]]:
        """Both directions for ``number``, oldest first: ``{"from_phone", "text", "at", "status"}``."""
        items = [
            {"from_phone": True, "text": m["text"], "at": m["at"], "status": "sent"}
            for m in self.typed
            if m["number"] == number
        ]
        if self.at is not None:
            items += [
                {"from_phone": False, "text": m.message, "at": m.received_at, "status": m.status}
                for m in self.at.messages
                if m.to == f"+{number}"
            ]
        return sorted(items, key=lambda item: item["at"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
