"""A local mail catcher: a real SMTP server (aiosmtpd) on loopback that keeps messages in memory.

In local mode ``serve`` starts :class:`SmtpCaptureServer` on the running event loop and
sends e-mail to it (plain SMTP, no TLS); the captured messages are listed at ``/sim/mail``
by :func:`create_app`. Tests use the same server to read what really arrived over SMTP.

Fault switches on :class:`Mailbox`: ``reject`` (address → SMTP reply, e.g. ``"550 5.1.1
No such user"`` for a hard bounce or ``"451 4.3.0 Try later"``).

Imports nothing from the product: it is an outside system.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import logging
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class CapturedMail:
    id: int
    mail_from: str
    rcpt_tos: list[str]
    received_at: datetime
    raw: bytes
    message: EmailMessage = field(repr=False)

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def _part(self, content_type: str) -> str | None:
        for part in self.message.walk():
            if part.get_content_type() == content_type and part.get_content_disposition() != "attachment":
                return str(part.get_content())
        return None

    @property
    def text(self) -> str | None:
        return self._part("text/plain")

    @property
    def html(self) -> str | None:
        return self._part("text/html")

    @property
    def attachments(self) -> list[tuple[str, str, bytes]]:
        """(filename, content type, content) of every attachment."""
        found = []
        for part in self.message.iter_attachments():
            payload = part.get_payload(decode=True)
            found.append((part.get_filename() or "", part.get_content_type(), bytes(payload or b"")))
        return found


class Mailbox:
    """Captured messages, newest last, plus the fault switches."""

    def __init__(self, *, limit: int = 500) -> None:
        self.messages: list[CapturedMail] = []
        self.reject: dict[str, str] = {}
        self.limit = limit
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()

    async def add(self, envelope: Envelope) -> CapturedMail:
        raw = envelope.original_content or envelope.content or b""
        raw = raw if isinstance(raw, bytes) else raw.encode()
        parsed = message_from_bytes(raw, policy=policy.default)
        mail = CapturedMail(
            id=next(self._ids), mail_from=str(envelope.mail_from), rcpt_tos=list(envelope.rcpt_tos),
            received_at=datetime.now(UTC), raw=raw, message=parsed,
        )
        async with self._changed:
            self.messages.append(mail)
            del self.messages[: max(len(self.messages) - self.limit, 0)]
            self._changed.notify_all()
        return mail

    def to(self, address: str) -> list[CapturedMail]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]

    def get(self, mail_id: int) -> CapturedMail | None:
        return next((m for m in self.messages if m.id == mail_id), None)

    async def wait_for(self, count: int, *, timeout: float = 5.0) -> list[CapturedMail]:  # noqa: ASYNC109
        """Wait until at least ``count`` messages arrived (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.messages) >= count)
        return list(self.messages)


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = {k.lower(): v for k, v in self.mailbox.reject.items()}.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        await self.mailbox.add(envelope)
        return "250 Message accepted for delivery"


class SmtpCaptureServer:
    """aiosmtpd on the current event loop, bound to loopback (port 0 = any free port)."""

    def __init__(
        self,
        mailbox: Mailbox | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        authenticator: Any = None,
    ) -> None:
        self.mailbox = mailbox or Mailbox()
        self.host, self.port = host, port
        self._tls_context, self._require_starttls = tls_context, require_starttls
        self._authenticator = authenticator
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        kwargs: dict[str, Any] = {"hostname": "smtp.sim.local", "tls_context": self._tls_context,
                                  "require_starttls": self._require_starttls}
        if self._authenticator is not None:
            kwargs.update(authenticator=self._authenticator, auth_required=True)
        return SMTP(_Handler(self.mailbox), **kwargs)

    async def start(self) -> SmtpCaptureServer:
        # aiosmtpd logs every envelope address at INFO ("recip: …"); in local mode this server
        # runs inside the service, whose log must hold no e-mail address.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpCaptureServer:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


def create_app(mailbox: Mailbox) -> web.Application:
    """The /sim/mail pages: ``GET /`` list, ``GET /{id}`` one message, ``GET /messages.json``."""
    app = web.Application()

    async def index(_request: web.Request) -> web.Response:
        rows = "".join(
            f"<tr><td>{m.id}</td><td>{_e(m.received_at.isoformat(timespec='seconds'))}</td>"
            f"<td>{_e(', '.join(m.rcpt_tos))}</td>"
            f"<td><a href='{m.id}'>{_e(m.subject or '(no subject)')}</a></td>"
            f"<td>{len(m.attachments)}</td></tr>"
            for m in reversed(mailbox.messages)
        )
        body = (
            "<h1>Captured e-mail</h1><p>Messages the service sent in local mode (not delivered).</p>"
            "<table border='1' cellpadding='4'><tr><th>#</th><th>received</th><th>to</th><th>subject</th>"
            f"<th>attachments</th></tr>{rows}</table>"
        )
        return _html("Captured e-mail", body)

    async def show(request: web.Request) -> web.Response:
        try:
            mail = mailbox.get(int(request.match_info["mail_id"]))
        except ValueError:
            mail = None
        if mail is None:
            raise web.HTTPNotFound(text="no such message")
        files = "".join(
            f"<li>{_e(name)} ({_e(ctype)}, {len(data)} bytes)</li>" for name, ctype, data in mail.attachments
        )
        body = (
            f"<p><a href='./'>all messages</a></p><h1>{_e(mail.subject)}</h1>"
            f"<p>From: {_e(str(mail.message.get('From', '')))}<br>To: {_e(', '.join(mail.rcpt_tos))}</p>"
            f"<h2>Text</h2><pre>{_e(mail.text or '')}</pre>"
            f"<h2>HTML source</h2><pre>{_e(mail.html or '')}</pre>"
            f"<h2>Attachments</h2><ul>{files}</ul>"
        )
        return _html(mail.subject, body)

    async def as_json(_request: web.Request) -> web.Response:
        return web.json_response([
            {"id": m.id, "from": m.mail_from, "to": m.rcpt_tos, "subject": m.subject, "text": m.text,
             "html": m.html, "attachments": [name for name, _t, _d in m.attachments],
             "received_at": m.received_at.isoformat()}
            for m in mailbox.messages
        ])

    app.router.add_get("/", index)
    app.router.add_get("/messages.json", as_json)
    app.router.add_get("/{mail_id}", show)
    return app


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html(title: str, body: str) -> web.Response:
    head = f"<head><meta charset='utf-8'><title>{_e(title)}</title></head>"
    page = f"<!DOCTYPE html><html>{head}<body>{body}</body></html>"
    return web.Response(text=page, content_type="text/html")
