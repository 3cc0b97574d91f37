"""A payment the watchdog's STK Query settled, whose callback then reports a different amount,
is put in front of an admin: it stays PAID with its booking CONFIRMED, is listed in the review
queue (service and /admin/review) and counted on the dashboard until an admin marks it
reviewed, which is audited (SQLite, and PostgreSQL with TEST_DATABASE_URL).

The callback goes the way real ones go: stored in the inbox and settled by the
SettlementWorker, whose batch path must hand it to the one-by-one path.
"""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import insert, select

from core.db.models import AuditEntry, Booking, CallbackInbox, PaymentAttempt
from core.domain.settlement_rules import StkResult
from core.domain.states import BookingStatus, PaymentStatus
from core.mpesa.callback import parse_callback_fields
from core.services import audit
from core.services.payments.inbox import inbox_row
from core.services.payments.intake import SettlementWorker, inbox_key
from core.services.payments.settlement import Settled, settle_in_session
from core.services.reporting.dashboard import dashboard
from core.services.review.actions import ReviewError, resolve_review_item
from core.services.review.queue import queue_of, review_counts
from tests.factories import make_attempt, make_booking, make_client

RECEIPT = "NLQ4RS56TU"
PAYER = "254712345678"


def _callback(checkout: str, amount: int) -> str:
    items = [
        {"Name": "Amount", "Value": amount},
        {"Name": "MpesaReceiptNumber", "Value": RECEIPT},
        {"Name": "TransactionDate", "Value": 20261204091500},
        {"Name": "PhoneNumber", "Value": int(PAYER)},
    ]
    stk = {
        "MerchantRequestID": "29115-1-1",
        "CheckoutRequestID": checkout,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": items},
    }
    return json.dumps({"Body": {"stkCallback": stk}})


async def query_settled_then_short_callback(runtime) -> tuple[int, int, str]:
    """(attempt id, booking id, booking reference): PAID by STK Query, then a callback 1 KES short."""
    async with runtime.uow() as uow:
        client = await make_client(uow.session, name="Achieng Otieno", phone=PAYER)
        booking = await make_booking(uow.session, client=client, status=BookingStatus.APPROVED)
        attempt = await make_attempt(uow.session, booking, phone=PAYER)
        await uow.commit()
        ids = (attempt.id, booking.id, booking.reference, attempt.checkout_request_id, attempt.amount_kes)
    attempt_id, booking_id, reference, checkout, price = ids
    query = StkResult(checkout_request_id=checkout, result_code=0, result_desc="ok", source="query")
    async with runtime.uow() as uow:
        assert await settle_in_session(
            uow.session, query, settings=runtime.settings, now=runtime.clock()
        ) == (Settled.PAID)
        await uow.commit()
    body = _callback(checkout, price - 1)
    async with runtime.uow() as uow:
        await uow.session.execute(
            insert(CallbackInbox),
            [inbox_row(inbox_key(checkout, 0), body, parse_callback_fields(body.encode()))],
        )
        await uow.commit()
    worker = SettlementWorker(runtime)
    assert await worker.settle_pending() == {Settled.DUPLICATE: 1}
    assert worker.batched == 0  # the batch path left it to settle_in_session
    return attempt_id, booking_id, reference


async def _entries(runtime, action: str, attempt_id: int) -> list[AuditEntry]:
    async with runtime.uow() as uow:
        query = select(AuditEntry).where(
            AuditEntry.action == action,
            AuditEntry.subject_type == "payment",
            AuditEntry.subject_id == str(attempt_id),
        )
        return list((await uow.session.scalars(query)).all())


async def _statuses(runtime, attempt_id: int, booking_id: int) -> tuple[str, str]:
    async with runtime.uow() as uow:
        attempt = await uow.session.get_one(PaymentAttempt, attempt_id)
        booking = await uow.session.get_one(Booking, booking_id)
        return attempt.status, booking.status


async def test_a_short_callback_after_a_query_settlement_is_flagged_audited_and_logged(runtime, caplog):
    caplog.set_level(logging.WARNING)
    attempt_id, booking_id, _ = await query_settled_then_short_callback(runtime)
    async with runtime.uow() as uow:
        attempt = await uow.session.get_one(PaymentAttempt, attempt_id)
        price = attempt.amount_kes
        assert (attempt.mpesa_receipt, attempt.paid_amount_kes) == (RECEIPT, price - 1)
        assert attempt.review_reason == f"callback amount {price - 1} differs from {price}"
    assert await _statuses(runtime, attempt_id, booking_id) == ("PAID", "CONFIRMED")
    (flag,) = await _entries(runtime, "payment.flagged", attempt_id)
    assert flag.details["paid_kes"] == price - 1 and flag.details["expected_kes"] == price
    warnings = [r for r in caplog.records if "callback amount differs" in r.getMessage()]
    assert warnings and all(PAYER not in r.getMessage() + str(r.__dict__) for r in caplog.records)


async def test_the_review_queue_lists_it_until_an_admin_marks_it_reviewed(runtime):
    attempt_id, booking_id, reference = await query_settled_then_short_callback(runtime)
    queue = await queue_of(runtime.uow)
    (item,) = queue.paid
    assert queue.attempts == () and queue.paid_total == 1 and item.item_id == f"paid-{attempt_id}"
    price = item.row.amount_kes
    assert item.summary == f"paid, amount differs: paid KES {price - 1:,}, expected KES {price:,}"
    assert (item.row.receipt, item.row.booking_reference, item.booking_status) == (
        RECEIPT,
        reference,
        "CONFIRMED",
    )
    async with runtime.uow() as uow:
        assert await review_counts(uow.session) == (1, 0)
    assert (await dashboard(runtime, environment="simulator")).waiting.needs_review == 1
    for action in ("confirm_booking", "refunded", "dismiss"):
        with pytest.raises(ReviewError) as refused:
            await resolve_review_item(
                runtime,
                item.item_id,
                {"action": action, "note": "abc", "refund_reference": "RFD7654321"},
                admin_id=7,
            )
        assert refused.value.kind == "refused"
    message = await resolve_review_item(
        runtime, item.item_id, {"action": "reviewed", "note": "accepted the 1 shilling"}, admin_id=7
    )
    assert "marked reviewed" in message
    (resolved,) = await _entries(runtime, "review.resolved", attempt_id)
    assert resolved.actor == "admin:7" and resolved.details["action"] == "reviewed"
    assert resolved.details["note"] == "accepted the 1 shilling" and resolved.details["receipt"] == RECEIPT
    assert (await queue_of(runtime.uow)).paid == ()
    async with runtime.uow() as uow:
        assert await review_counts(uow.session) == (0, 0)
    assert await _statuses(runtime, attempt_id, booking_id) == ("PAID", "CONFIRMED")
    with pytest.raises(ReviewError) as stale:
        await resolve_review_item(runtime, item.item_id, {"action": "reviewed", "note": "again"}, admin_id=8)
    assert stale.value.kind == "stale"


async def test_a_new_flag_after_the_review_reopens_it_and_a_confirmed_review_item_does_not_count(runtime):
    attempt_id, _, _ = await query_settled_then_short_callback(runtime)
    await resolve_review_item(
        runtime, f"paid-{attempt_id}", {"action": "reviewed", "note": "all ok"}, admin_id=7
    )
    async with runtime.uow() as uow:  # e.g. reconciliation flags it again later
        await audit.record(
            uow.session,
            actor="system",
            action="payment.flagged",
            subject_type="payment",
            subject_id=attempt_id,
            details={"reason": "statement amount differs"},
        )
        other = await make_attempt(
            uow.session,
            await make_booking(uow.session),
            status=PaymentStatus.NEEDS_REVIEW,
            mpesa_receipt="NLZ9YX87WV",
            paid_amount_kes=2500,
            review_reason="no result in time",
        )
        await uow.commit()
    await resolve_review_item(
        runtime, f"attempt-{other.id}", {"action": "confirm_booking", "note": "seen"}, admin_id=7
    )
    assert [p.row.id for p in (await queue_of(runtime.uow)).paid] == [attempt_id]
    with pytest.raises(ReviewError) as refused:
        await resolve_review_item(
            runtime, f"attempt-{attempt_id}", {"action": "reviewed", "note": "x y"}, admin_id=7
        )
    assert refused.value.kind == "refused"


# -- the pages ----------------------------------------------------------------------------------


async def test_the_admin_sees_it_on_the_review_page_and_the_dashboard_and_closes_it(admin):
    attempt_id, booking_id, reference = await query_settled_then_short_callback(admin.runtime)
    page = await (await admin.get("/admin/review")).text()
    assert f'id="paid-{attempt_id}"' in page and "paid, amount differs: paid KES" in page
    assert RECEIPT in page and reference in page
    assert PAYER not in page and PAYER[3:] not in page  # no full phone number
    home = await (await admin.get("/admin/")).text()
    assert 'id="count-review">1<' in home
    response = await admin.post(
        f"/admin/review/paid-{attempt_id}", {"action": "reviewed", "note": "collected"}
    )
    assert response.status == 303 and response.headers["Location"] == "/admin/review"
    page = await (await admin.get("/admin/review")).text()
    assert "marked reviewed" in page and f'id="paid-{attempt_id}"' not in page
    assert 'id="count-review">0<' in await (await admin.get("/admin/")).text()
    assert await _statuses(admin.runtime, attempt_id, booking_id) == ("PAID", "CONFIRMED")
    again = await admin.post(f"/admin/review/paid-{attempt_id}", {"action": "reviewed", "note": "again"})
    assert again.status == 409
