"""SMS with the real africastalking SDK over HTTP to the local AT simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from africastalking.SMS import SMSService
from aiohttp import web
from sqlalchemy import select

from core.config import load_settings
from core.db.models import Outbox
from core.runtime import Runtime
from core.services.notifications import notify as notifications
from core.services.notifications.notify import Dispatcher
from senders.sms import AfricasTalkingGateway, SmsSender, at_base_url, build_sms_gateway
from simulators.africastalking import AfricasTalkingSimulator
from tests.factories import make_client

SAMPLES = Path("/work/shared/samples/real-world-callbacks/at_delivery_reports")
API_KEY = "test-at-key"
PHONE = "254711082300"


@dataclass
class AtStack:
    simulator: AfricasTalkingSimulator
    base_url: str  # what AT_API_BASE_URL would be
    reports: list[dict[str, str]]  # delivery reports our test endpoint received
    report_url: str

    def gateway(self, **overrides: str) -> AfricasTalkingGateway:
        values = {"username": "smilingsteps", "api_key": API_KEY, "sender_id": "22384",
                  "base_url": self.base_url}
        values.update(overrides)
        return AfricasTalkingGateway(**values)


@pytest.fixture
async def at() -> AsyncIterator[AtStack]:
    simulator = AfricasTalkingSimulator(username="smilingsteps", api_key=API_KEY, sender_ids={"22384"})
    reports: list[dict[str, str]] = []
    handlers: list = []

    async def delivery(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        reports.append(form)
        for handler in handlers:
            await handler(form)
        return web.Response(text="ok")

    app = web.Application()
    app.add_subapp("/sim/at", simulator.app())
    app.router.add_post("/hooks/sms/secret/delivery", delivery)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    simulator.delivery_report_url = f"http://127.0.0.1:{port}/hooks/sms/secret/delivery"
    stack = AtStack(simulator, f"http://127.0.0.1:{port}/sim/at", reports, simulator.delivery_report_url)
    stack.handlers = handlers  # type: ignore[attr-defined]
    try:
        yield stack
    finally:
        await runner.cleanup()


async def test_an_sms_goes_through_the_sdk_to_version1_messaging_with_our_shortcode(at: AtStack) -> None:
    result = await at.gateway().send_sms(PHONE, "Your session starts soon.")
    assert result.ok and result.provider_message_id and result.provider_message_id.startswith("ATXid_")
    (sms,) = at.simulator.messages
    assert (sms.to, sms.message, sms.sender, sms.username) == (
        "+254711082300", "Your session starts soon.", "22384", "smilingsteps")
    assert sms.message_id == result.provider_message_id


def test_the_base_url_replaces_both_sdk_hosts_and_defaults_to_the_sdks_own() -> None:
    custom = AfricasTalkingGateway(username="u", api_key="k", base_url="https://at.example.org/proxy/")
    assert custom.messaging_url == "https://at.example.org/proxy/version1/messaging"
    assert custom._service._contentUrl == "https://at.example.org/proxy/version1"
    live = AfricasTalkingGateway(username="smilingsteps", api_key="k")
    assert live.messaging_url == "https://api.africastalking.com/version1/messaging"
    sandbox = AfricasTalkingGateway(username="sandbox", api_key="k")
    assert sandbox.messaging_url == "https://api.sandbox.africastalking.com/version1/messaging"


def test_settings_pick_real_credentials_or_the_local_simulator() -> None:
    local = load_settings({"PORT": "8099"})
    assert at_base_url(local) == "http://127.0.0.1:8099/sim/at"
    gateway = build_sms_gateway(local)
    assert gateway is not None and gateway.messaging_url == "http://127.0.0.1:8099/sim/at/version1/messaging"
    real = load_settings({"MPESA_ENVIRONMENT": "sandbox", "MPESA_CONSUMER_KEY": "a",
                          "MPESA_CONSUMER_SECRET": "b",
                          "AT_USERNAME": "smilingsteps", "AT_API_KEY": "k", "AT_SHORTCODE": "22384",
                          "AT_API_BASE_URL": "https://at.example.org/"})
    configured = build_sms_gateway(real)
    assert configured is not None and configured.sender_id == "22384"
    assert configured.messaging_url == "https://at.example.org/version1/messaging"
    unconfigured = load_settings({"MPESA_ENVIRONMENT": "sandbox", "MPESA_CONSUMER_KEY": "a",
                                  "MPESA_CONSUMER_SECRET": "b"})
    assert build_sms_gateway(unconfigured) is None


@pytest.mark.parametrize(
    ("status", "permanent", "operator_wait"),
    [(401, True, False), (402, True, False), (403, True, False), (404, True, False), (406, True, False),
     (407, True, False), (405, False, True), (409, False, True), (500, False, False), (502, False, False)],
)
async def test_per_recipient_status_codes_decide_between_giving_up_and_retrying(
    at: AtStack, status: int, permanent: bool, operator_wait: bool
) -> None:
    at.simulator.set_recipient_status(PHONE, status)
    result = await at.gateway().send_sms(PHONE, "hello")
    assert (result.ok, result.permanent) == (False, permanent)
    assert f"AT status {status}" in (result.error or "") and "254711082300" not in (result.error or "")
    assert (result.retry_after == 900.0) is operator_wait


@pytest.mark.parametrize("code", [100, 101, 102])
async def test_processed_sent_and_queued_all_count_as_sent(at: AtStack, code: int) -> None:
    at.simulator.set_recipient_status(PHONE, code)
    assert (await at.gateway().send_sms(PHONE, "hello")).ok


async def test_http_errors_are_retried_except_bad_requests(at: AtStack) -> None:
    at.simulator.fail_next(503)
    unavailable = await at.gateway().send_sms(PHONE, "hello")
    assert (unavailable.ok, unavailable.permanent) == (False, False) and "503" in (unavailable.error or "")
    wrong_key = await at.gateway(api_key="wrong").send_sms(PHONE, "hello")
    assert (wrong_key.ok, wrong_key.permanent, wrong_key.retry_after) == (False, False, 900.0)
    at.simulator.fail_next(400)
    bad = await at.gateway().send_sms(PHONE, "hello")
    assert (bad.ok, bad.permanent) == (False, True)
    assert (await at.gateway().send_sms(PHONE, "hello")).ok  # faults were one-shot


async def test_a_sender_id_the_account_does_not_own_is_permanent(at: AtStack) -> None:
    result = await at.gateway(sender_id="99999").send_sms(PHONE, "hello")
    assert result.permanent and "402" in (result.error or "")


async def test_an_unreachable_gateway_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gateway = AfricasTalkingGateway(username="u", api_key="k", base_url=f"http://127.0.0.1:{port}")
    result = await gateway.send_sms(PHONE, "hello")
    assert (result.ok, result.permanent) == (False, False) and "unreachable" in (result.error or "")


async def test_the_simulator_answers_json_the_unmodified_sdk_can_parse(at: AtStack) -> None:
    stock = SMSService("smilingsteps", API_KEY)
    stock._baseUrl = at.base_url + "/version1"
    body = await asyncio.to_thread(stock.send, "hello", ["+254711082300"], sender_id="22384")
    assert isinstance(body, dict)  # the SDK parses only an exact "application/json"
    (recipient,) = body["SMSMessageData"]["Recipients"]
    assert recipient["statusCode"] == 101 and recipient["status"] == "Success"
    assert body["SMSMessageData"]["Message"].startswith("Sent to 1/1 Total Cost: KES")


async def test_sms_notifications_are_sent_and_delivery_reports_recorded_end_to_end(
    runtime: Runtime, at: AtStack
) -> None:
    async def record(form: dict[str, str]) -> None:
        async with runtime.uow() as uow:
            await notifications.record_delivery_report(
                uow.session, provider_message_id=form["id"], status=form["status"],
                failure_reason=form.get("failureReason"))
            await uow.commit()

    at.handlers.append(record)  # type: ignore[attr-defined]
    async with runtime.uow() as uow:
        ok = await make_client(uow.session, phone=PHONE, telegram_user_id=None)
        blocked = await make_client(uow.session, phone="254711082301", telegram_user_id=None)
        for client in (ok, blocked):
            await notifications.notify_client(uow.session, client, template="payment_delayed_client",
                                              data={"reference": "SS1", "test_mode": True},
                                              dedupe_key=f"delayed:{client.id}")
        await uow.commit()
    await Dispatcher(runtime, {"sms": SmsSender(at.gateway())}).dispatch_once()
    assert len(at.simulator.messages) == 2
    by_number = {m.to.lstrip("+"): m for m in at.simulator.messages}  # sent concurrently: any order
    first, second = by_number[PHONE], by_number["254711082301"]
    assert first.message.startswith("[TEST MODE] M-Pesa is not answering")

    success = json.loads((SAMPLES / "success.json").read_text())
    failed = json.loads((SAMPLES / "failed_blacklisted.json").read_text())
    unknown = json.loads((SAMPLES / "rejected_unknown_message_id.json").read_text())
    assert await at.simulator.send_delivery_report(first.message_id, status=success["status"]) == 200
    assert await at.simulator.send_delivery_report(second.message_id, status=failed["status"],
                                                   failure_reason=failed["failureReason"]) == 200
    assert await at.simulator.send_delivery_report(unknown["id"], status=unknown["status"],
                                                   failure_reason=unknown["failureReason"]) == 200
    assert [r["status"] for r in at.reports] == ["Success", "Failed", "Rejected"]
    async with runtime.uow() as uow:
        rows = {r.recipient: r for r in (await uow.session.scalars(select(Outbox))).all()}
    assert rows[PHONE].status == "DELIVERED"
    assert rows["254711082301"].status == "FAILED"
    assert rows["254711082301"].last_error == "delivery report: Failed (UserInBlackList)"


async def test_the_simulator_page_lists_messages_escaped_and_can_post_delivery_reports(at: AtStack) -> None:
    await at.gateway().send_sms(PHONE, "<script>alert(1)</script>")
    message_id = at.simulator.messages[0].message_id
    async with aiohttp.ClientSession() as http:
        async with http.get(at.base_url + "/") as response:
            page = await response.text()
        async with http.post(at.base_url + "/control/delivery-report",
                             data={"id": message_id, "status": "Success"}, allow_redirects=False) as response:
            assert response.status == 303
        async with http.get(at.base_url + "/messages.json") as response:
            log = await response.json()
    assert "&lt;script&gt;" in page and "<script>alert" not in page
    assert at.reports == [{"id": message_id, "status": "Success", "phoneNumber": "+254711082300",
                           "networkCode": "63902", "retryCount": "0"}]
    assert log[0]["delivery_reports"][0]["answered"] == "200"
