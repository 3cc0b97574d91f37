"""The STK callback endpoint: authentication, strict parsing, de-duplication, real bodies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from core.domain.states import BookingStatus, PaymentStatus
from tests.support.payments import PaymentStack, payment_stack

# shared/ lies beside the repository (in a session and in CI alike).
SAMPLES = (
    Path(__file__).resolve().parents[3] / "shared" / "samples" / "real-world-callbacks" / "stk_callbacks"
)
HOLD = {"outcome": "hold"}


async def _held_attempt(stack: PaymentStack, phone: str = "0708374149"):
    """An attempt whose prompt is on the phone and whose result has not come yet."""
    await stack.sim.control("/control/next-outcome", HOLD)
    booking = await stack.approved_booking()
    view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, phone)
    attempt = await stack.attempt(view.attempt_id)
    return booking, attempt, stack.callback_secret_of(attempt.checkout_request_id)


def _body(
    checkout: str, *, code: object = 0, amount: object = None, receipt: str | None = "RCPT000001"
) -> dict:
    stk: dict = {
        "MerchantRequestID": "1-2-3",
        "CheckoutRequestID": checkout,
        "ResultCode": code,
        "ResultDesc": "result",
    }
    if code == 0:
        items = [
            {"Name": "Amount", "Value": amount},
            {"Name": "TransactionDate", "Value": 20261126101500},
            {"Name": "PhoneNumber", "Value": 254708374149},
        ]
        if receipt:
            items.append({"Name": "MpesaReceiptNumber", "Value": receipt})
        stk["CallbackMetadata"] = {"Item": items}
    return {"Body": {"stkCallback": stk}}


# Feature: mpesa-payment-integration, Property 20: Callback Signature Verification
# Feature: mpesa-payment-integration, Property 46: Webhook Signature Verified Before Processing
async def test_callback_with_an_unknown_secret_is_404_and_stores_nothing(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        _booking, attempt, _secret = await _held_attempt(stack)
        response = await stack.post_callback(
            "forged-secret", _body(attempt.checkout_request_id, amount=attempt.amount_kes)
        )
        assert response.status_code == 404
        assert await stack.inbox_count() == 0
        assert (await stack.attempt(attempt.id)).status == PaymentStatus.AWAITING_CUSTOMER


async def test_callback_for_another_checkout_id_is_rejected_and_does_not_block_the_real_one(
    database_url: str,
) -> None:
    async with payment_stack(database_url) as stack:
        _booking, attempt, secret = await _held_attempt(stack)
        forged = await stack.post_callback(secret, _body("ws_CO_forged", amount=attempt.amount_kes))
        assert forged.status_code == 400
        assert await stack.inbox_count() == 0
        genuine = await stack.post_callback(
            secret, _body(attempt.checkout_request_id, amount=attempt.amount_kes)
        )
        assert genuine.status_code == 200 and genuine.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
        await stack.wait_status(attempt.id, PaymentStatus.PAID)


async def test_replay_of_another_attempts_body_changes_nothing(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        _b1, first, first_secret = await _held_attempt(stack)
        _b2, second, _second_secret = await _held_attempt(stack, phone="0708374140")
        replay = await stack.post_callback(
            first_secret, _body(second.checkout_request_id, amount=second.amount_kes)
        )
        assert replay.status_code == 400
        assert (await stack.attempt(second.id)).status == PaymentStatus.AWAITING_CUSTOMER
        assert (await stack.attempt(first.id)).status == PaymentStatus.AWAITING_CUSTOMER


async def test_success_with_the_wrong_amount_goes_to_review_not_paid(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking, attempt, secret = await _held_attempt(stack)
        response = await stack.post_callback(secret, _body(attempt.checkout_request_id, amount=1))
        assert response.status_code == 200
        flagged = await stack.wait_status(attempt.id, PaymentStatus.NEEDS_REVIEW)
        assert "amount" in (flagged.review_reason or "")
        assert (await stack.booking(booking.id)).status == BookingStatus.APPROVED


async def test_success_without_a_receipt_goes_to_review(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        _booking, attempt, secret = await _held_attempt(stack)
        await stack.post_callback(
            secret, _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt=None)
        )
        flagged = await stack.wait_status(attempt.id, PaymentStatus.NEEDS_REVIEW)
        assert "receipt" in (flagged.review_reason or "")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"Body": {}}',
        b'{"Body": {"stkCallback": {"CheckoutRequestID": 5}}}',
        b"[" * 5000 + b"]" * 5000,
        json.dumps({"Body": {"stkCallback": {"a": "x" * 70000}}}).encode(),
    ],
    ids=["garbage", "empty", "no-callback", "wrong-types", "deeply-nested", "oversized"],
)
async def test_malformed_bodies_get_400_never_500(database_url: str, body: bytes) -> None:
    async with payment_stack(database_url) as stack:
        _booking, attempt, secret = await _held_attempt(stack)
        response = await stack.post_callback(secret, body)
        assert response.status_code == 400
        assert await stack.inbox_count() == 0
        assert (await stack.attempt(attempt.id)).status == PaymentStatus.AWAITING_CUSTOMER


# Feature: mpesa-payment-integration, Property 75: Duplicate Callback Detection
async def test_ten_concurrent_copies_of_a_callback_settle_exactly_once(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        booking, attempt, secret = await _held_attempt(stack)
        body = _body(attempt.checkout_request_id, amount=attempt.amount_kes, receipt="CONC000001")
        answers = await asyncio.gather(*[stack.post_callback(secret, body) for _ in range(10)])
        assert [a.status_code for a in answers] == [200] * 10
        await stack.wait_status(attempt.id, PaymentStatus.PAID)
        await asyncio.sleep(0.2)
        assert await stack.inbox_count() == 1
        assert len(await stack.outbox(template="payment_confirmed_client")) == 1
        assert (await stack.booking(booking.id)).status == BookingStatus.CONFIRMED


def _sample_cases() -> list[tuple[str, dict]]:
    return [(p.stem, json.loads(p.read_text())) for p in sorted(SAMPLES.glob("*.json"))]


EXPECTED_END = {
    "0": PaymentStatus.PAID,
    "1": PaymentStatus.FAILED,
    "1032": PaymentStatus.CANCELLED,
    "1037": PaymentStatus.TIMED_OUT,
    "2001": PaymentStatus.FAILED,
    "1031": PaymentStatus.FAILED,
    "SFC_IC0003": PaymentStatus.FAILED,
}


@pytest.mark.parametrize(("name", "sample"), _sample_cases(), ids=[n for n, _ in _sample_cases()])
async def test_every_real_world_callback_is_accepted_and_reaches_its_end_state(
    database_url: str, name: str, sample: dict
) -> None:
    async with payment_stack(database_url) as stack:
        booking, attempt, secret = await _held_attempt(stack)
        stk = sample["Body"]["stkCallback"]
        stk["CheckoutRequestID"] = attempt.checkout_request_id
        for item in stk.get("CallbackMetadata", {}).get("Item", []):
            if item["Name"] == "Amount":  # keep the JSON type (1.00 stays a float)
                item["Value"] = (
                    float(attempt.amount_kes) if isinstance(item["Value"], float) else attempt.amount_kes
                )
            if item["Name"] == "MpesaReceiptNumber":
                item["Value"] = f"{item['Value'][:6]}{attempt.id:04d}"[:10]
        response = await stack.post_callback(secret, sample)
        assert response.status_code == 200, response.text
        expected = EXPECTED_END[str(stk["ResultCode"])]
        await stack.wait_status(attempt.id, expected)
        booking_status = (await stack.booking(booking.id)).status
        assert booking_status == (
            BookingStatus.CONFIRMED if expected == PaymentStatus.PAID else BookingStatus.APPROVED
        )
