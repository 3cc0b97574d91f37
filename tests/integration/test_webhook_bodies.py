"""Every webhook reads the whole request body, however it arrives on the socket (issue 9, defect 1).

Bodies are sent over a real TCP connection in several writes with pauses between them (as
segments arrive on real networks) and in chunked transfer-encoding; the routes must wait for
the end of the body, not answer on the first segment.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from sqlalchemy import select

from core.db.models import Outbox
from core.domain.states import PaymentStatus
from core.runtime import Runtime
from tests.integration.test_dialog_support import build_world
from tests.integration.test_payments_callbacks import _body, _held_attempt
from tests.integration.test_sms_conversation import CLIENT, reply_to, sms_webhook
from tests.integration.test_sms_conversation import SECRET as SMS_SECRET
from tests.support.payments import payment_stack
from tests.support.raw_http import send_in_pieces
from tests.support.telegram import serving
from webhooks.telegram import SECRET_HEADER, WEBHOOK_PATH, setup_telegram_webhook

TELEGRAM_SECRET = "webhook-secret_0123456789"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _halves(body: bytes) -> list[bytes]:
    middle = len(body) // 2
    return [body[:middle], body[middle:]]


# -- M-Pesa STK result -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["two-writes", "chunked"])
async def test_an_stk_callback_that_arrives_in_two_pieces_is_accepted_and_settled(
    database_url: str, chunked: bool
) -> None:
    async with payment_stack(database_url) as stack:
        _booking, attempt, secret = await _held_attempt(stack)
        body = json.dumps(
            _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt="SPLT000001")
        ).encode()
        answer = await send_in_pieces(
            stack.base_url, f"/hooks/lnm/{secret}", _halves(body), headers=JSON, chunked=chunked
        )
        assert answer.status == 200, answer.text
        assert json.loads(answer.body) == {"ResultCode": 0, "ResultDesc": "Accepted"}
        paid = await stack.wait_status(attempt.id, PaymentStatus.PAID)
        assert paid.mpesa_receipt == "SPLT000001"


async def test_an_stk_callback_in_many_small_chunks_is_read_whole(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        _booking, attempt, secret = await _held_attempt(stack)
        body = json.dumps(
            _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt="SPLT000002")
        ).encode()
        pieces = [body[i : i + 40] for i in range(0, len(body), 40)]
        answer = await send_in_pieces(
            stack.base_url, f"/hooks/lnm/{secret}", pieces, headers=JSON, chunked=True, gap_s=0.01
        )
        assert answer.status == 200, answer.text
        await stack.wait_status(attempt.id, PaymentStatus.PAID)


async def test_an_oversized_chunked_stk_callback_is_refused_with_400_not_5xx(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        _booking, _attempt, secret = await _held_attempt(stack)
        pieces = [b"[" + b" " * 30_000] + [b" " * 30_000] * 3 + [b"]"]
        answer = await send_in_pieces(
            stack.base_url, f"/hooks/lnm/{secret}", pieces, headers=JSON, chunked=True, gap_s=0.01
        )
        assert answer.status in (400, 413)
        assert "too large" in answer.text
        assert await stack.inbox_count() == 0


# -- Africa's Talking inbound SMS and delivery reports ------------------------------------------------


@asynccontextmanager
async def _sms_routes(runtime: Runtime) -> AsyncIterator[str]:
    world = await build_world(runtime)
    async with sms_webhook(runtime, world.engine) as base_url:
        yield base_url


def _inbound_form(message_id: str, text: str) -> bytes:
    fields = {"from": "+" + CLIENT, "to": "22384", "id": message_id, "date": "2024-03-12 10:15:42",
              "linkId": "", "text": text}
    return urlencode(fields).encode()  # `text` last: the split below cuts inside it


@pytest.mark.parametrize("chunked", [False, True], ids=["two-writes", "chunked"])
async def test_an_inbound_help_split_before_its_last_two_bytes_is_handled_as_help(
    runtime: Runtime, chunked: bool
) -> None:
    async with _sms_routes(runtime) as base_url:
        body = _inbound_form("at-split-1", "HELP")
        answer = await send_in_pieces(
            base_url, f"/hooks/sms/{SMS_SECRET}/inbound", [body[:-2], body[-2:]], headers=FORM,
            chunked=chunked,
        )
        assert answer.status == 200, answer.text
        reply = await reply_to(runtime, "at-split-1")
    assert "BOOK" in reply and "MY" in reply and "PAY" in reply and "STOP" in reply


def _multipart(fields: dict[str, str], boundary: str = "AaB03x") -> tuple[bytes, dict[str, str]]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def test_a_multipart_inbound_sms_in_two_pieces_is_read_whole(runtime: Runtime) -> None:
    async with _sms_routes(runtime) as base_url:
        body, headers = _multipart({"from": "+" + CLIENT, "to": "22384", "id": "at-mp-1", "text": "HELP"})
        cut = body.index(b"HELP") + 2
        answer = await send_in_pieces(
            base_url, f"/hooks/sms/{SMS_SECRET}/inbound", [body[:cut], body[cut:]], headers=headers
        )
        assert answer.status == 200, answer.text
        reply = await reply_to(runtime, "at-mp-1")
    assert "BOOK" in reply and "STOP" in reply


async def test_a_chunked_multipart_sms_over_16_kib_is_refused_with_400(runtime: Runtime) -> None:
    async with _sms_routes(runtime) as base_url:
        body, headers = _multipart({"from": "+" + CLIENT, "id": "at-mp-2", "text": "x" * 20_000})
        pieces = [body[i : i + 4096] for i in range(0, len(body), 4096)]
        answer = await send_in_pieces(
            base_url, f"/hooks/sms/{SMS_SECRET}/inbound", pieces, headers=headers, chunked=True, gap_s=0.01
        )
    assert answer.status == 400 and "too large" in answer.text


async def test_a_delivery_report_in_two_pieces_is_recorded_whole(runtime: Runtime) -> None:
    async with _sms_routes(runtime) as base_url:
        sent = await send_in_pieces(
            base_url, f"/hooks/sms/{SMS_SECRET}/inbound", [_inbound_form("at-dr-1", "BOOK")], headers=FORM
        )
        assert sent.status == 200, sent.text
        await reply_to(runtime, "at-dr-1")
        async with runtime.uow() as uow:
            row = await uow.session.scalar(select(Outbox).where(Outbox.dedupe_key == "sms:at-dr-1:reply"))
            assert row is not None
            row.status, row.provider_message_id = "SENT", "ATXid_split"
            await uow.commit()
        report = urlencode({"id": "ATXid_split", "status": "Failed", "failureReason": "UserInBlacklist"})
        raw = report.encode()
        answer = await send_in_pieces(
            base_url, f"/hooks/sms/{SMS_SECRET}/delivery", [raw[:-3], raw[-3:]], headers=FORM
        )
        assert answer.status == 200, answer.text
        async with runtime.uow() as uow:
            row = await uow.session.scalar(select(Outbox).where(Outbox.provider_message_id == "ATXid_split"))
    assert row is not None and row.status == "FAILED"
    assert (row.last_error or "").endswith("(UserInBlacklist)")


# -- Telegram -----------------------------------------------------------------------------------------


@asynccontextmanager
async def _telegram_route() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """The webhook route with a sink that records the updates it is given."""
    app = web.Application()
    hook = setup_telegram_webhook(app, TELEGRAM_SECRET)
    assert hook is not None
    received: list[dict[str, Any]] = []

    async def sink(update: dict[str, Any]) -> None:
        received.append(update)

    hook.attach(sink)
    async with serving(app) as base_url:
        yield base_url, received


def _telegram_update(update_id: int = 42, text: str = "book a session please") -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 7,
            "date": 1700000000,
            "text": text,
            "chat": {"id": 601, "type": "private", "first_name": "Amina"},
            "from": {"id": 601, "is_bot": False, "first_name": "Amina"},
        },
    }


@pytest.mark.parametrize("chunked", [False, True], ids=["two-writes", "chunked"])
async def test_a_telegram_update_split_in_two_reaches_the_bot_whole(chunked: bool) -> None:
    update = _telegram_update()
    async with _telegram_route() as (base_url, received):
        answer = await send_in_pieces(
            base_url, WEBHOOK_PATH, _halves(json.dumps(update).encode()),
            headers={**JSON, SECRET_HEADER: TELEGRAM_SECRET}, chunked=chunked,
        )
    assert answer.status == 200, answer.text
    assert received == [update]
