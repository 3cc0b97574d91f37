"""What the outbox dispatcher and its senders agree on: a rendered message in, a result out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.templates import Attachment, Button, RenderedMessage

__all__ = ["Attachment", "Button", "RenderedMessage", "SendResult", "Sender"]


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send.

    ``ok``: the provider accepted the message. Otherwise ``permanent`` says whether trying
    again can help (blocked bot, invalid number, hard bounce) or not; ``retry_after`` (seconds)
    is the provider's own wait (Telegram 429); ``unreachable`` marks a Telegram user who
    blocked the bot, so later messages go by SMS.
    """

    ok: bool
    permanent: bool = False
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    unreachable: bool = False

    @classmethod
    def sent(cls, provider_message_id: str | None = None) -> SendResult:
        return cls(ok=True, provider_message_id=provider_message_id)

    @classmethod
    def retry(cls, error: str, *, retry_after: float | None = None) -> SendResult:
        return cls(ok=False, permanent=False, error=error, retry_after=retry_after)

    @classmethod
    def give_up(cls, error: str, *, unreachable: bool = False) -> SendResult:
        return cls(ok=False, permanent=True, error=error, unreachable=unreachable)


@runtime_checkable
class Sender(Protocol):
    """One channel's delivery: Telegram, SMS or e-mail. Must not raise for provider errors."""

    async def send(self, recipient: str, message: RenderedMessage) -> SendResult: ...
