"""The SMS conversation through the real webhook: form posts over HTTP to 127.0.0.1, replies read
from the outbox as the SMS that would be sent (numbered choices, keywords, A<code>/D<code>).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import func, select

from core.db.models import CallbackInbox, Outbox, PaymentAttempt, SessionType
from core.db.types import utcnow
from core.dialog.engine import DialogEngine
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.templates import render
from core.templates.gsm import contains_forbidden, is_gsm7
from tests.integration.test_dialog_support import SMS_THERAPIST_PHONE, World, build_world
from tests.support.payments import payment_stack
from webhooks.sms import setup_sms_routes

SECRET = "at-webhook-secret-1"
CLIENT = "254711082300"
SAMPLES = Path("/work/shared/samples/real-world-callbacks")


@asynccontextmanager
async def sms_webhook(runtime: Runtime, engine: DialogEngine) -> AsyncIterator[str]:
    """Our SMS routes on a free 127.0.0.1 port; yields the base URL."""
    app = web.Application()
    setup_sms_routes(app, runtime, engine, SECRET)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class Phone:
    """A handset texting our shortcode through Africa's Talking."""

    def __init__(self, base_url: str, runtime: Runtime, msisdn: str) -> None:
        self.base_url, self.runtime, self.msisdn = base_url, runtime, msisdn
        self.last = ""

    async def post(
        self, fields: dict[str, str], *, path: str = "inbound", secret: str = SECRET
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            return await http.post(f"/hooks/sms/{secret}/{path}", data=fields)

    async def text(self, body: str, *, message_id: str | None = None) -> str:
        """Send an SMS and return our reply as it would be delivered."""
        message_id = message_id or f"at-{uuid.uuid4()}"
        response = await self.post(
            {
                "from": "+" + self.msisdn,
                "to": "22384",
                "text": body,
                "id": message_id,
                "date": "2024-03-12 10:15:42",
                "linkId": "",
            }
        )
        assert response.status_code == 200, response.text
        self.last = await reply_to(self.runtime, message_id)
        return self.last


async def reply_to(runtime: Runtime, message_id: str, within: float = 5.0) -> str:
    """Our answer to ``message_id`` as the SMS text that would go out (polls the outbox)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        async with runtime.uow() as uow:
            row = await uow.session.scalar(
                select(Outbox).where(Outbox.dedupe_key == f"sms:{message_id}:reply")
            )
        if row is not None:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no reply to {message_id} within {within}s")
        await asyncio.sleep(0.02)
    assert row.channel == "sms" and row.template == "chat_reply"
    return render(row.template, row.channel, row.data).text


@pytest.fixture
async def sms(runtime: Runtime) -> AsyncIterator[tuple[World, Phone]]:
    world = await build_world(runtime)
    async with sms_webhook(runtime, world.engine) as base_url:
        yield world, Phone(base_url, runtime, CLIENT)


def _sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / "at_inbound_sms" / f"{name}.json").read_text())


async def _count(runtime: Runtime, model: Any) -> int:
    async with runtime.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model)) or 0)


# -- the HTTP contract -----------------------------------------------------------------------------


async def test_a_wrong_secret_is_not_found_and_stores_nothing(sms: tuple[World, Phone]) -> None:
    world, phone = sms
    response = await phone.post(
        {"from": "+254711082300", "text": "BOOK", "id": "x1"}, secret="wrong-secret-1"
    )
    assert response.status_code == 404
    response = await phone.post({"id": "x1", "status": "Success"}, path="delivery", secret="wrong-secret-1")
    assert response.status_code == 404
    assert await _count(world.runtime, CallbackInbox) == 0


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b'{"from": "+254711082300", "text": "BOOK", "id": "j1"}', "application/json", "form"),
        (b"text=BOOK&id=m1", "application/x-www-form-urlencoded", "from"),
        (b"from=%2B254711082300&text=BOOK", "application/x-www-form-urlencoded", "id"),
        (b"from=%2B254711082300&id=" + b"9" * 200, "application/x-www-form-urlencoded", "id"),
        (
            b"from=%2B254711082300&id=big&text=" + b"a" * 20000,
            "application/x-www-form-urlencoded",
            "too large",
        ),
        (b"\xff\xfe\x00garbage", "multipart/form-data; boundary=zzz", "form"),
    ],
)
async def test_bad_form_input_gets_a_400_with_a_reason_never_a_500(
    sms: tuple[World, Phone], content: bytes, content_type: str, reason: str
) -> None:
    _, phone = sms
    async with httpx.AsyncClient(base_url=phone.base_url) as http:
        response = await http.post(
            f"/hooks/sms/{SECRET}/inbound", content=content, headers={"Content-Type": content_type}
        )
    assert response.status_code == 400 and reason in response.text


async def test_a_non_kenyan_sender_is_ignored_politely(sms: tuple[World, Phone]) -> None:
    world, phone = sms
    response = await phone.post({"from": "+12025550100", "text": "BOOK", "id": "us-1", "to": "22384"})
    assert response.status_code == 200 and "ignored" in response.text
    assert await world.outbox() == []


async def test_a_repeated_message_id_is_answered_once(sms: tuple[World, Phone]) -> None:
    world, phone = sms
    await phone.text("BOOK", message_id="dup-1")
    again = await phone.post({"from": "+" + CLIENT, "text": "BOOK", "id": "dup-1"})
    assert again.status_code == 200 and "duplicate" in again.text
    assert len(await world.outbox(channel="sms")) == 1
    assert await _count(world.runtime, CallbackInbox) == 1


async def test_a_message_received_but_never_answered_is_handled_when_it_arrives_again(
    sms: tuple[World, Phone],
) -> None:
    world, phone = sms
    async with world.runtime.uow() as uow:  # stored, then the process died before answering
        uow.session.add(
            CallbackInbox(
                provider="at_sms",
                provider_id="lost-1",
                raw_body="{}",
                received_at=utcnow() - timedelta(minutes=5),
                attempts=0,
            )
        )
        await uow.commit()
    reply = await phone.text("BOOK", message_id="lost-1")
    assert "Who would you like to see?" in reply


@pytest.mark.parametrize(
    "name", ["two_way_basic", "no_network_code_padded_text", "premium_with_linkid_keyword"]
)
async def test_real_world_inbound_shapes_start_a_booking(sms: tuple[World, Phone], name: str) -> None:
    world, phone = sms
    fields = _sample(name)
    response = await phone.post(fields)
    assert response.status_code == 200
    reply = await reply_to(world.runtime, fields["id"])
    assert reply.splitlines()[0] == "Who would you like to see?"
    assert "1 Brian Otieno" in reply and "2 Dr. Amani Wanjiku" in reply and reply.endswith("Reply 1-2")
    if fields["linkId"]:
        [row] = await world.outbox(channel="sms")
        assert row.data["_route"]["link_id"] == fields["linkId"]


# -- the conversation -------------------------------------------------------------------------------


async def test_a_first_message_of_any_kind_starts_booking_and_help_lists_the_keywords(
    sms: tuple[World, Phone],
) -> None:
    _, phone = sms
    assert "Who would you like to see?" in await phone.text("Hello")
    reply = await phone.text("help")
    assert "BOOK" in reply and "MY" in reply and "PAY" in reply and "STOP" in reply
    assert "Stopped" in await phone.text("  Stop ")
    reply = await phone.text("hello again")
    assert "BOOK" in reply and "1 Book a session" in reply
    assert "no upcoming sessions" in await phone.text("MY")


async def test_sms_replies_are_discreet_gsm7_and_mostly_one_segment(sms: tuple[World, Phone]) -> None:
    world, phone = sms
    async with world.runtime.uow() as uow:
        (await uow.session.get_one(SessionType, world.session_type_id)).name = "Couples therapy"
        await uow.commit()
    replies = [await phone.text("BOOK"), await phone.text("2"), await phone.text("1"), await phone.text("1")]
    for reply in replies:
        assert not contains_forbidden(reply) and is_gsm7(reply)
    assert "Couples session" in replies[1]
    assert all(len(r) <= 160 for r in replies[:2])


async def test_an_out_of_range_number_asks_again_and_a_typed_label_works(sms: tuple[World, Phone]) -> None:
    world, phone = sms
    await phone.text("BOOK")
    assert await phone.text("7") == "Please reply with a number from 1 to 2."
    reply = await phone.text("dr. amani wanjiku")
    assert "Which kind of session?" in reply and "1 Individual 50min KES 2,500" in reply


# Feature: mpesa-payment-integration, Property 1: Session Creation Sets Pending Status
# Feature: mpesa-payment-integration, Property 2: Session Creation Triggers Therapist Notification
# Feature: mpesa-payment-integration, Property 3: Therapist Approval Updates Session Status
# Feature: mpesa-payment-integration, Property 4: Approval Triggers Payment Notification
# Feature: mpesa-payment-integration, Property 11: STK Push Shows Check Phone Message
# Feature: mpesa-payment-integration, Property 78: Sandbox Mode Indicates Test Mode
# Feature: mpesa-payment-integration, Property 79: Sandbox Mode Uses Test Phone Numbers
async def test_a_whole_booking_over_sms_approved_by_code_and_paid_with_m_pesa(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        world = await build_world(stack.runtime, stack.services.payments)
        async with sms_webhook(stack.runtime, world.engine) as base_url:
            client = Phone(base_url, stack.runtime, CLIENT)
            therapist = Phone(base_url, stack.runtime, SMS_THERAPIST_PHONE)
            await client.text("  Book \n")
            assert "1 Brian Otieno" in client.last
            await client.text("1")  # Brian Otieno, who uses SMS
            await client.text("1")  # Individual
            assert client.last.startswith("Pick a day:")
            await client.text("1")  # the first day
            assert client.last.startswith("Pick a start time on")
            await client.text("1")  # the first time
            assert "e-mail" in client.last and "1 Skip" in client.last
            await client.text("wanjiru@example.org")
            assert "Confirm?" in client.last and "1 Confirm\n2 Cancel" in client.last
            await client.text("1")
            [booking] = await world.bookings()
            assert booking.status == BookingStatus.PENDING_APPROVAL and booking.channel == "sms"
            assert booking.reference in client.last

            [request] = await world.outbox(template="booking_requested_therapist")
            assert request.channel == "sms" and request.recipient == SMS_THERAPIST_PHONE
            sms_text = render(request.template, "sms", request.data).text
            assert f"A{booking.approval_code}" in sms_text
            await therapist.text(f"A{booking.approval_code}")
            assert f"Approved {booking.reference}" in therapist.last
            [approved] = await world.outbox(template="booking_approved_client")
            assert approved.channel == "sms" and approved.recipient == CLIENT
            assert "reply PAY" in render(approved.template, "sms", approved.data).text

            await client.text("PAY")
            assert client.last.startswith("[TEST MODE]")
            assert f"1 {CLIENT}" in client.last and "2 254708374149" in client.last
            await client.text("2")  # Safaricom's test number
            assert "Check your phone" in client.last and "[TEST MODE]" in client.last
            async with stack.runtime.uow() as uow:
                attempt_id = int(await uow.session.scalar(select(func.max(PaymentAttempt.id))) or 0)
            await stack.wait_status(attempt_id, PaymentStatus.PAID)
            assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED
            assert "Paid and confirmed" in await client.text("my")
            for row in await world.outbox(channel="sms"):
                body = render(row.template, "sms", row.data).text
                assert not contains_forbidden(body), body


async def test_delivery_reports_update_the_sms_they_are_about(sms: tuple[World, Phone]) -> None:
    world, phone = sms
    await phone.text("BOOK", message_id="m-77")
    async with world.runtime.uow() as uow:
        row = await uow.session.scalar(select(Outbox).where(Outbox.dedupe_key == "sms:m-77:reply"))
        assert row is not None
        row.status, row.provider_message_id = "SENT", "ATXid_abc"
        await uow.commit()
    report = json.loads((SAMPLES / "at_delivery_reports" / "failed_blacklisted.json").read_text())
    response = await phone.post({**report, "id": "ATXid_abc"}, path="delivery")
    assert response.status_code == 200
    async with world.runtime.uow() as uow:
        row = await uow.session.scalar(select(Outbox).where(Outbox.provider_message_id == "ATXid_abc"))
        assert row is not None and row.status == "FAILED" and "UserInBlackList" in (row.last_error or "")
    unknown = json.loads((SAMPLES / "at_delivery_reports" / "rejected_unknown_message_id.json").read_text())
    assert (await phone.post(unknown, path="delivery")).status_code == 200
    assert (await phone.post({"id": "ATXid_abc"}, path="delivery")).status_code == 400


async def test_the_engine_can_be_set_after_the_routes_and_until_then_at_is_asked_to_retry(
    runtime: Runtime,
) -> None:
    world = await build_world(runtime)
    app = web.Application()
    hook = setup_sms_routes(app, runtime, None, SECRET)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        phone = Phone(f"http://127.0.0.1:{runner.addresses[0][1]}", runtime, CLIENT)
        early = await phone.post({"from": "+" + CLIENT, "text": "BOOK", "id": "early-1"})
        assert early.status_code == 503 and await _count(runtime, CallbackInbox) == 0
        hook.engine = world.engine
        assert "Who would you like to see?" in await phone.text("BOOK", message_id="early-1")
    finally:
        await runner.cleanup()
