"""E-mail over real SMTP: aiosmtplib → an aiosmtpd server on 127.0.0.1 (simulators/smtp.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from icalendar import Calendar
from sqlalchemy import select

from core.db.models import Outbox
from core.runtime import Runtime
from core.services.notifications import notify as notifications
from core.services.notifications.notify import Dispatcher
from core.templates import render
from senders.email import SmtpSender
from simulators.smtp import Mailbox, SmtpCaptureServer, create_app
from tests.factories import make_client

FROM = "Smiling Steps <no-reply@smilingsteps.example>"
DATA = {
    "reference": "SS1A2B3C4D5E", "booking_id": 3, "client_name": "Akinyi",
    "therapist_name": "Dr. Amani Wanjiku",
    "session_type": "Individual", "minutes": 50, "starts_at_local": "Mon 30 Nov 2026, 10:00 EAT",
    "starts_at_iso": "2026-11-30T07:00:00+00:00", "ends_at_iso": "2026-11-30T07:50:00+00:00",
    "amount_kes": 2500, "receipt": "TJK3H2L9QZ", "paid_at_local": "Sat 28 Nov 2026, 09:12 EAT",
    "meeting_url": "https://meet.jit.si/SmilingSteps-AbCdEfGhIjKlMnOpQrStUv", "test_mode": False,
}


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpCaptureServer]:
    async with SmtpCaptureServer() as server:
        yield server


def _sender(server: SmtpCaptureServer) -> SmtpSender:
    return SmtpSender.for_capture(server.port, sender_address=FROM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Feature: mpesa-payment-integration, Property 26: Confirmed Payment Sends Email
async def test_the_confirmation_email_arrives_as_text_html_and_a_calendar_invite(
    smtp: SmtpCaptureServer,
) -> None:
    message = render("payment_confirmed_email", "email", DATA)
    result = await _sender(smtp).send("akinyi@example.org", message)
    assert result.ok and result.provider_message_id and result.provider_message_id.startswith("<")
    (mail,) = smtp.mailbox.messages
    assert mail.rcpt_tos == ["akinyi@example.org"] and "no-reply@smilingsteps.example" in mail.mail_from
    assert mail.message["Message-ID"] == result.provider_message_id
    assert mail.message.get_content_type() == "multipart/mixed"
    assert "TJK3H2L9QZ" in mail.subject
    assert mail.text and "M-Pesa receipt: TJK3H2L9QZ" in mail.text and DATA["meeting_url"] in mail.text
    assert mail.html and "TJK3H2L9QZ" in mail.html
    ((filename, content_type, content),) = mail.attachments
    assert (filename, content_type) == ("session.ics", "text/calendar")
    (event,) = Calendar.from_ical(content).walk("VEVENT")
    start = event.decoded("dtstart")
    assert str(start.tzinfo) == "Africa/Nairobi" and start.hour == 10
    assert DATA["meeting_url"] in str(event.get("location"))


async def test_a_hard_bounce_is_permanent_and_a_soft_one_is_retried(smtp: SmtpCaptureServer) -> None:
    smtp.mailbox.reject["gone@example.org"] = "550 5.1.1 No such user"
    smtp.mailbox.reject["busy@example.org"] = "451 4.3.0 Try again later"
    message = render("booking_approved_email", "email", DATA)
    hard = await _sender(smtp).send("gone@example.org", message)
    soft = await _sender(smtp).send("busy@example.org", message)
    assert (hard.ok, hard.permanent) == (False, True) and "550" in (hard.error or "")
    assert (soft.ok, soft.permanent) == (False, False) and "451" in (soft.error or "")
    assert smtp.mailbox.messages == []


async def test_an_unreachable_mail_server_is_retried_later() -> None:
    sender = SmtpSender(host="127.0.0.1", port=_free_port(), sender_address=FROM, starttls=False, timeout=2)
    result = await sender.send("akinyi@example.org", render("booking_approved_email", "email", DATA))
    assert (result.ok, result.permanent) == (False, False)


def _self_signed() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh certificate for 127.0.0.1, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


async def test_starttls_and_login_are_used_when_configured() -> None:
    server_tls, client_tls = _self_signed()
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)

    server = SmtpCaptureServer(tls_context=server_tls, require_starttls=True, authenticator=authenticator)
    async with server as srv:
        sender = SmtpSender(host="127.0.0.1", port=srv.port, sender_address=FROM, username="mailer",
                            password="s3cret", starttls=True, tls_context=client_tls)
        ok = await sender.send("akinyi@example.org", render("booking_approved_email", "email", DATA))
        wrong = SmtpSender(host="127.0.0.1", port=srv.port, sender_address=FROM, username="mailer",
                           password="nope", starttls=True, tls_context=client_tls)
        refused = await wrong.send("akinyi@example.org", render("booking_approved_email", "email", DATA))
        plain = SmtpSender(host="127.0.0.1", port=srv.port, sender_address=FROM, starttls=False)
        cleartext = await plain.send("akinyi@example.org", render("booking_approved_email", "email", DATA))
    assert ok.ok, ok.error
    assert logins[0] == (b"mailer", b"s3cret")
    assert (refused.ok, refused.permanent) == (False, False)  # bad credentials: fix settings, then retry
    assert "535" in (refused.error or "")
    assert not cleartext.ok  # the server insists on STARTTLS
    assert len(srv.mailbox.messages) == 1


def test_settings_choose_starttls_implicit_tls_or_none() -> None:
    from core.config import load_settings

    assert SmtpSender.from_settings(load_settings({})) is None
    starttls = SmtpSender.from_settings(load_settings({"SMTP_HOST": "smtp.example.org"}))
    assert starttls is not None
    assert (starttls.port, starttls.starttls, starttls.implicit_tls) == (587, True, False)
    implicit = SmtpSender.from_settings(load_settings({"SMTP_HOST": "smtp.example.org", "SMTP_PORT": "465"}))
    assert implicit is not None and (implicit.starttls, implicit.implicit_tls) == (False, True)
    relay = SmtpSender.from_settings(load_settings({"SMTP_HOST": "relay", "SMTP_STARTTLS": "false"}))
    assert relay is not None and (relay.starttls, relay.implicit_tls) == (False, False)


# Feature: mpesa-payment-integration, Property 61: Confirmed Payment Sends Email Within 30 Seconds
# Feature: mpesa-payment-integration, Property 60: Approval Sends Email Notification
async def test_queued_emails_reach_the_mail_server_within_seconds_of_the_commit(
    runtime: Runtime, smtp: SmtpCaptureServer
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(Dispatcher(runtime, {"email": _sender(smtp)}, poll_interval=30).run(stop))
    try:
        await asyncio.sleep(0.05)
        started = time.monotonic()
        async with runtime.uow() as uow:
            client = await make_client(uow.session, email="akinyi@example.org")
            await notifications.email_client(uow.session, client, email=client.email,
                                             template="booking_approved_email", data=DATA,
                                             dedupe_key="b:3:approved")
            await notifications.email_client(uow.session, client, email=client.email,
                                             template="payment_confirmed_email", data=DATA,
                                             dedupe_key="p:9:email")
            await uow.commit()
        runtime.wake("outbox")
        mails = await smtp.mailbox.wait_for(2, timeout=30)
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    subjects = sorted(m.subject for m in mails)
    assert subjects[0].startswith("Booking SS1A2B3C4D5E approved") and "TJK3H2L9QZ" in subjects[1]
    async with runtime.uow() as uow:
        rows = (await uow.session.scalars(select(Outbox))).all()
        assert {r.status for r in rows} == {"SENT"}
        assert all(r.provider_message_id for r in rows)


async def test_the_mail_page_lists_captured_messages_with_everything_escaped(smtp: SmtpCaptureServer) -> None:
    hostile = {**DATA, "reference": "<b>SS</b>", "client_name": "<script>alert(1)</script>"}
    await _sender(smtp).send("akinyi@example.org", render("booking_approved_email", "email", hostile))
    app = web.Application()
    app.add_subapp("/sim/mail", create_app(smtp.mailbox))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/sim/mail/") as response:
                index = await response.text()
            async with http.get(f"http://127.0.0.1:{port}/sim/mail/1") as response:
                detail = await response.text()
            async with http.get(f"http://127.0.0.1:{port}/sim/mail/messages.json") as response:
                listed = await response.json()
            async with http.get(f"http://127.0.0.1:{port}/sim/mail/99") as response:
                assert response.status == 404
    finally:
        await runner.cleanup()
    assert "&lt;b&gt;SS&lt;/b&gt;" in index and "<b>SS</b>" not in index
    assert "<script>" not in detail and "&lt;script&gt;" in detail
    assert listed[0]["to"] == ["akinyi@example.org"]


async def test_the_mailbox_keeps_a_bounded_number_of_messages() -> None:
    mailbox = Mailbox(limit=3)
    async with SmtpCaptureServer(mailbox) as server:
        for _ in range(5):
            message = render("booking_approved_email", "email", DATA)
            assert (await _sender(server).send("a@example.org", message)).ok
    assert [m.id for m in mailbox.messages] == [3, 4, 5]
