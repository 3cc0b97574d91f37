"""The phone simulator's routes (/sim/phone): M-Pesa prompt decisions, live events, SMS thread, mailbox.

The Daraja stand-in and the phone app are mounted as local mode mounts them and spoken to over
real HTTP; the SMS thread test runs the whole application in local mode, so the message goes
through the real SMS hook, conversation engine, outbox and Africa's Talking stand-in.
"""

from __future__ import annotations

import asyncio
import base64
import json
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from core.runtime import build_runtime
from simulators import phone
from simulators.daraja import (
    SANDBOX_PASSKEY,
    SIMULATOR_CONSUMER_KEY,
    SIMULATOR_CONSUMER_SECRET,
    simulator_state,
)
from simulators.daraja import create_app as daraja_app
from simulators.smtp import Mailbox, SmtpCaptureServer
from smiling_steps.app import create_app
from tests.conftest import make_settings
from tests.integration.test_health import free_port, wait_healthy
from tests.support.daraja import CallbackListener, callback_listener

PERSON = "254708374149"  # would succeed by the last-digit rule: any other result is the person's choice
TIMESTAMP = "20240101120000"
PASSWORD = base64.b64encode(f"174379{SANDBOX_PASSKEY}{TIMESTAMP}".encode()).decode()
BASIC = "Basic " + base64.b64encode(f"{SIMULATOR_CONSUMER_KEY}:{SIMULATOR_CONSUMER_SECRET}".encode()).decode()


@dataclass
class Stage:
    http: httpx.AsyncClient  # base URL: the server root
    listener: CallbackListener
    mailbox: Mailbox

    async def push(self, phone_number: str = PERSON, amount: int = 2500) -> str:
        token = (
            await self.http.get(
                "/sim/daraja/oauth/v1/generate",
                params={"grant_type": "client_credentials"},
                headers={"Authorization": BASIC},
            )
        ).json()["access_token"]
        body = {
            "BusinessShortCode": "174379",
            "Password": PASSWORD,
            "Timestamp": TIMESTAMP,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": amount,
            "PartyA": phone_number,
            "PartyB": "174379",
            "PhoneNumber": phone_number,
            "CallBackURL": self.listener.url(),
            "AccountReference": "SmilingSteps",
            "TransactionDesc": "BK1",
        }
        answer = await self.http.post(
            "/sim/daraja/mpesa/stkpush/v1/processrequest",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["CheckoutRequestID"]

    async def prompts(self) -> list[dict]:
        return (await self.http.get("/sim/phone/api/prompts")).json()["prompts"]

    async def result_code(self) -> int:
        [received] = await self.listener.wait_for(1, within=5)
        return json.loads(received.body)["Body"]["stkCallback"]["ResultCode"]


@asynccontextmanager
async def stage(prompt_timeout: float = 60.0) -> AsyncIterator[Stage]:
    """Daraja stand-in at /sim/daraja and the phone app at /sim/phone (as local mode mounts them)."""
    daraja = daraja_app(callback_delay=0.05, prompt_timeout=prompt_timeout)
    mailbox = Mailbox()
    root = web.Application()
    root.add_subapp("/sim/daraja", daraja)
    sources = phone.PhoneSources(None, simulator_state(daraja), None, mailbox, None)
    root.add_subapp("/sim/phone", phone.create_app(sources))
    root.router.add_get("/sim/", phone.page)
    runner = web.AppRunner(root, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with callback_listener() as listener, httpx.AsyncClient(base_url=base, trust_env=False) as http:
            yield Stage(http, listener, mailbox)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def page_open(
    http: httpx.AsyncClient, handle: str = PERSON
) -> AsyncIterator[asyncio.Queue[tuple[str, dict]]]:
    """The page's event stream, open (so ``handle`` is answered by a person); yields its events."""
    events: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()

    async def read() -> None:
        async with http.stream(
            "GET", "/sim/phone/api/events", params={"handle": handle}, timeout=None
        ) as stream:
            name = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    await events.put((name, json.loads(line.removeprefix("data: "))))

    reader = asyncio.create_task(read())
    try:
        name, data = await asyncio.wait_for(events.get(), 5)
        assert (name, data) == ("hello", {"handled": [handle]})
        yield events
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def next_change(events: asyncio.Queue[tuple[str, dict]], source: str) -> None:
    while True:
        name, data = await asyncio.wait_for(events.get(), 5)
        if name == "change" and source in data["sources"]:
            return


@pytest.mark.parametrize(
    ("choice", "result_code"), [("pay", 0), ("cancel", 1032), ("wrong_pin", 2001), ("insufficient", 1)]
)
async def test_the_choice_on_the_m_pesa_card_decides_the_callback(choice: str, result_code: int):
    async with stage() as s, page_open(s.http) as events:
        checkout = await s.push()
        await next_change(events, "prompts")
        [prompt] = await s.prompts()
        assert prompt == {
            "checkout_request_id": checkout,
            "phone": PERSON,
            "amount": 2500,
            "account_reference": "SmilingSteps",
            "merchant_name": "SMILING STEPS",
        }
        await asyncio.sleep(0.2)
        assert s.listener.received == []  # waiting for the person, not for the last digit
        answer = await s.http.post(f"/sim/phone/api/prompts/{checkout}", json={"choice": choice})
        assert answer.status_code == 200, answer.text
        assert await s.result_code() == result_code
        assert await s.prompts() == []
        again = await s.http.post(f"/sim/phone/api/prompts/{checkout}", json={"choice": "pay"})
        assert again.status_code == 409


async def test_an_ignored_prompt_times_out_with_1037_after_the_bounded_wait():
    async with stage(prompt_timeout=0.5) as s, page_open(s.http):
        await s.push()
        await asyncio.sleep(0.2)
        assert s.listener.received == [] and len(await s.prompts()) == 1
        assert await s.result_code() == 1037
        assert await s.prompts() == []


# Feature: mpesa-payment-integration, Property 48: PIN never handled
async def test_the_decision_route_takes_the_choice_and_nothing_else():
    async with stage() as s, page_open(s.http):
        checkout = await s.push()
        for body in ({"choice": "pay", "pin": "1234"}, {"pin": "1234"}, {"choice": "1234"}, ["pay"]):
            refused = await s.http.post(f"/sim/phone/api/prompts/{checkout}", json=body)
            assert refused.status_code == 400
            assert "1234" not in refused.text
        assert len(await s.prompts()) == 1  # still waiting: nothing was decided


async def test_a_page_can_hold_more_handsets_and_answers_their_prompts_too():
    async with stage() as s:
        async with s.http.stream(
            "GET", "/sim/phone/api/events", params={"handle": "0708374149,+254711000222,not-a-number"}
        ) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "event: hello"
            assert json.loads((await anext(lines)).removeprefix("data: ")) == {
                "handled": ["254708374149", "254711000222"]
            }
            checkout = await s.push("254711000222")  # 2: cancelled, were it not for the person
            [prompt] = await s.prompts()
            assert prompt["phone"] == "254711000222"
            await s.http.post(f"/sim/phone/api/prompts/{checkout}", json={"choice": "pay"})
            assert await s.result_code() == 0


async def test_numbers_no_page_handles_keep_the_last_digit_rule():
    async with stage() as s:
        async with page_open(s.http):
            pass  # the page closed again: its number is no longer handled by a person
        await s.push("254708374142")  # 2: cancelled by the last-digit rule
        assert await s.result_code() == 1032
        assert await s.prompts() == []


async def test_the_event_stream_reports_daraja_and_mail_changes():
    async with stage() as s, page_open(s.http) as events:
        await s.push()
        await next_change(events, "daraja")
        server = SmtpCaptureServer(s.mailbox)
        async with server:
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.org", "Hello"
            message.set_content("plain")
            message.add_alternative("<p>html</p>", subtype="html")
            await asyncio.to_thread(_send, server.port, message)
            await next_change(events, "mail")


def _send(port: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.send_message(message)


async def test_the_mailbox_serves_html_e_mail_sandboxed_with_its_own_csp():
    async with stage() as s, SmtpCaptureServer(s.mailbox) as server:
        message = EmailMessage()
        message["From"], message["To"] = "a@example.org", "b@example.org"
        message["Subject"] = "<script>alert(1)</script>"
        message.set_content("plain text")
        message.add_alternative("<p>Hi</p><script>alert(2)</script>", subtype="html")
        message.add_attachment(
            b"BEGIN:VCALENDAR", maintype="text", subtype="calendar", filename="session.ics"
        )
        await asyncio.to_thread(_send, server.port, message)
        [listed] = (await s.http.get("/sim/phone/api/mail")).json()["messages"]
        assert listed["subject"] == "<script>alert(1)</script>"  # JSON: the page shows it as text
        assert listed["attachments"] == [{"name": "session.ics", "type": "text/calendar", "size": 15}]
        body = await s.http.get(f"/sim/phone/api/mail/{listed['id']}/html")
        csp = body.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
        page = await s.http.get("/sim/")
        assert page.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self';")
        assert "<script>" not in page.text.replace(
            '<script type="module" src="phone/static/main.js"></script>', ""
        )
        assert 'sandbox=""' in page.text


async def test_an_sms_typed_on_the_page_goes_through_the_real_sms_hook(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)  # local mode keeps its generated secret in the working directory
    runtime = build_runtime(make_settings(database_url, PORT=str(free_port())))
    runner = web.AppRunner(create_app(runtime.settings, runtime, with_bot=False), shutdown_timeout=1.0)
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", runtime.settings.port).start()
        base = f"http://127.0.0.1:{runtime.settings.port}"
        assert (await wait_healthy(base)).status_code == 200
        async with (
            httpx.AsyncClient(base_url=base, trust_env=False) as http,
            page_open(http, "254712345678") as events,
        ):
            sent = await http.post("/sim/phone/api/sms", json={"from": "0712 345 678", "text": "HELP"})
            assert sent.status_code == 200, sent.text
            assert sent.json() == {"number": "254712345678", "hook_status": 200}
            await next_change(events, "sms")  # the page hears of it without asking

            async def thread() -> list[dict]:
                answer = await http.get("/sim/phone/api/sms", params={"number": "+254712345678"})
                return answer.json()["messages"]

            for _ in range(100):
                if any(not m["from_phone"] for m in await thread()):
                    break
                await asyncio.sleep(0.1)
            messages = await thread()
            assert messages[0] == {**messages[0], "from_phone": True, "text": "HELP"}
            assert any(not m["from_phone"] and m["text"] for m in messages[1:]), messages
            bad = await http.post("/sim/phone/api/sms", json={"from": "12345", "text": "hi"})
            assert bad.status_code == 400 and "Kenyan mobile number" in bad.json()["error"]
            # the real hook still wants its secret
            assert (
                await http.post("/hooks/sms/wrong/inbound", data={"from": "+254712345678"})
            ).status_code == 404
    finally:
        await runner.cleanup()
        await runtime.close()
