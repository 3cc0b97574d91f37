"""E-mail through SMTP (aiosmtplib): multipart text + HTML, with attachments (the .ics invite).

``SMTP_STARTTLS`` true (default) requires STARTTLS; port 465 means implicit TLS; false
sends in the clear (only for a local relay or the local-mode capture server). A 5xx answer
to the recipient or the message is a hard bounce (permanent); 4xx, connection problems
and authentication failures (an operator problem) are retried by the outbox.

Never logs or stores a recipient's address: results carry SMTP codes with any address in
the server's reply replaced by ``[address]``, and nothing here raises (so no traceback with
the address reaches the dispatcher's log).
"""

from __future__ import annotations

import logging
import re
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

import aiosmtplib

from core.config import Settings
from core.db.types import utcnow
from core.domain.email import is_valid_email
from core.services.notifications.outbox_types import RenderedMessage, SendResult

log = logging.getLogger(__name__)

IMPLICIT_TLS_PORT = 465
AUTH_CODES = frozenset({530, 534, 535, 538})  # authentication required/failed: fix the settings, then retry
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]:;,]*@[^\s<>()\[\]:;,]*")


def _domain(address: str) -> str:
    parsed = getaddresses([address])
    addr = parsed[0][1] if parsed else ""
    return addr.rpartition("@")[2] or "smilingsteps.local"


def build_email(message: RenderedMessage, *, sender: str, recipient: str) -> EmailMessage:
    """A MIME message: text/plain + text/html alternatives, then any attachments (mixed)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = message.subject or "Smiling Steps"
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = make_msgid(domain=_domain(sender))
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, rest = attachment.content_type.partition("/")
        subtype, *params = [part.strip() for part in rest.split(";")]
        extra = dict(p.split("=", 1) for p in params if "=" in p)
        mail.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename, params=extra
        )
    return mail


class SmtpSender:
    """The e-mail channel's Sender."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender_address: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        implicit_tls: bool | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.sender_address = sender_address
        self.username, self.password = username, password
        self.implicit_tls = port == IMPLICIT_TLS_PORT if implicit_tls is None else implicit_tls
        self.starttls = starttls and not self.implicit_tls
        self.timeout = timeout
        self.tls_context = tls_context

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpSender | None:
        """The configured SMTP server (SMTP_*), or None when SMTP_HOST is not set."""
        if not settings.smtp_host:
            return None
        return cls(
            host=settings.smtp_host, port=settings.smtp_port, sender_address=settings.smtp_from,
            username=settings.smtp_username, password=settings.smtp_password, starttls=settings.smtp_starttls,
        )

    @classmethod
    def for_capture(cls, port: int, *, sender_address: str, host: str = "127.0.0.1") -> SmtpSender:
        """Local mode: the in-process capture server (simulators/smtp.py), plain SMTP on loopback."""
        return cls(host=host, port=port, sender_address=sender_address, starttls=False, implicit_tls=False)

    async def send(self, recipient: str, message: RenderedMessage) -> SendResult:
        """Send one message; never raises, and no result or log line carries the address."""
        if not is_valid_email(recipient):  # rows queued before the one rule existed
            return SendResult.give_up("recipient is not a valid e-mail address")
        try:
            mail = build_email(message, sender=self.sender_address, recipient=recipient)
        except (ValueError, TypeError) as exc:  # header parsing: the text would name the address
            return SendResult.give_up(f"message could not be built: {type(exc).__name__}")
        try:
            return await self._deliver(mail)
        except Exception as exc:  # a library surprise: its text and traceback may hold the address
            log.warning("e-mail send failed unexpectedly", extra={"error": type(exc).__name__})
            return SendResult.retry(f"SMTP send failed: {type(exc).__name__}")

    async def _deliver(self, mail: EmailMessage) -> SendResult:
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.implicit_tls,
                start_tls=self.starttls,
                timeout=self.timeout,
                tls_context=self.tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [err.code for err in exc.recipients]
            text = "; ".join(f"{err.code} {redact_addresses(err.message)}" for err in exc.recipients)
            if codes and all(code >= 500 for code in codes):
                return SendResult.give_up(f"recipient refused: {text}")
            return SendResult.retry(f"recipient deferred: {text}")
        except aiosmtplib.SMTPSenderRefused as exc:  # our From address: an operator problem
            return SendResult.retry(f"sender refused: SMTP {exc.code} {redact_addresses(exc.message)}")
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500 and exc.code not in AUTH_CODES:
                return SendResult.give_up(f"SMTP {exc.code} {redact_addresses(exc.message)}")
            return SendResult.retry(f"SMTP {exc.code} {redact_addresses(exc.message)}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult.retry(f"SMTP unavailable: {type(exc).__name__}: {redact_addresses(str(exc))}")
        return SendResult.sent(str(mail["Message-ID"]))


def redact_addresses(text: str) -> str:
    """``text`` (a server's reply, an error) with anything shaped like an e-mail address removed:
    the outcome is stored and logged, and the address is personal data."""
    return _ADDRESS_LIKE.sub("[address]", text)
