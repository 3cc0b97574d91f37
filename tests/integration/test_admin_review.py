"""The review queue: NEEDS_REVIEW attempts and refunds due, and an admin's decisions on them,
through the service and through the admin pages (SQLite, and PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from core.db.models import AuditEntry, Booking, CallbackInbox, Outbox, PaymentAttempt, Reminder
from core.domain.states import BookingStatus, PaymentStatus
from core.services.booking.lifecycle import cancel_booking
from core.services.reporting.transactions import list_transactions, parse_filter
from core.services.review.actions import ReviewError, resolve_review_item
from core.services.review.queue import queue_of, review_counts
from tests.factories import make_attempt, make_booking, make_client

RECEIPT_FIRST, RECEIPT_SECOND, RECEIPT_LATE = "NLJ7RT61SV", "NLK8SU72TW", "NLM9TV83UX"


@dataclass
class Items:
    double: int  # NEEDS_REVIEW second payment of a CONFIRMED booking
    double_booking: int
    late: int  # NEEDS_REVIEW success for a still APPROVED booking (amount mismatch)
    late_booking: int
    unknown: int  # NEEDS_REVIEW without receipt (unknown after the watchdog)


async def seed_review(runtime) -> Items:
    async with runtime.uow() as uow:
        s = uow.session
        client = await make_client(s, name="Wanjiku Kamau", phone="254712345678", email="wanjiku@example.org")
        paid_booking = await make_booking(s, client=client, status=BookingStatus.CONFIRMED)
        await make_attempt(
            s, paid_booking, status=PaymentStatus.PAID, mpesa_receipt=RECEIPT_FIRST, paid_amount_kes=2500
        )
        double = await make_attempt(
            s,
            paid_booking,
            status=PaymentStatus.NEEDS_REVIEW,
            mpesa_receipt=RECEIPT_SECOND,
            paid_amount_kes=2500,
            result_code="0",
            checkout_request_id="ws_CO_04122026101010123712345678",
            review_reason="booking already paid: possible double payment, refund or credit",
        )
        s.add(
            CallbackInbox(
                provider="mpesa_stk",
                provider_id="ws_CO_04122026101010123712345678",
                raw_body='{"Body":{"stkCallback":{"CheckoutRequestID":"ws_CO_04122026101010123712345678",'
                '"ResultCode":0,"CallbackMetadata":{"Item":[{"Name":"PhoneNumber","Value":254712345678}]}}}}',
            )
        )
        late_booking = await make_booking(
            s, client=client, status=BookingStatus.APPROVED, email="w@example.org"
        )
        late = await make_attempt(
            s,
            late_booking,
            status=PaymentStatus.NEEDS_REVIEW,
            mpesa_receipt=RECEIPT_LATE,
            paid_amount_kes=2400,
            review_reason="amount 2400 differs from the expected 2500",
        )
        other = await make_booking(s, status=BookingStatus.APPROVED)
        unknown = await make_attempt(
            s,
            other,
            status=PaymentStatus.NEEDS_REVIEW,
            review_reason="no result 10 minutes after the deadline",
        )
        await uow.commit()
    return Items(double.id, paid_booking.id, late.id, late_booking.id, unknown.id)


async def resolve(runtime, item: str, **form: str) -> str:
    return await resolve_review_item(runtime, item, form, admin_id=7)


async def audit_actions(runtime, action: str) -> list[AuditEntry]:
    async with runtime.uow() as uow:
        return list((await uow.session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def test_the_queue_lists_attempts_in_review_with_their_evidence(runtime):
    items = await seed_review(runtime)
    queue = await queue_of(runtime.uow)
    by_id = {a.row.id: a for a in queue.attempts}
    assert set(by_id) == {items.double, items.late, items.unknown} and queue.attempts_total == 3
    double = by_id[items.double]
    assert double.booking_status == "CONFIRMED" and "double payment" in (double.row.review_reason or "")
    assert [(s.receipt, s.amount_kes) for s in double.paid_siblings] == [(RECEIPT_FIRST, 2500)]
    (body,) = double.callbacks
    assert "254712345678" not in body and "0712345678" not in body and "5678" in body  # phones masked
    assert (by_id[items.late].row.paid_amount_kes, by_id[items.late].row.amount_kes) == (2400, 2500)


async def test_confirm_booking_pays_the_attempt_and_confirms_the_booking_with_reminders_and_notices(runtime):
    items = await seed_review(runtime)
    message = await resolve(
        runtime, f"attempt-{items.late}", action="confirm_booking", note="customer showed SMS"
    )
    assert "CONFIRMED" in message
    async with runtime.uow() as uow:
        s = uow.session
        attempt = await s.get_one(PaymentAttempt, items.late)
        booking = await s.get_one(Booking, items.late_booking)
        reminders = (await s.scalars(select(Reminder.kind).where(Reminder.booking_id == booking.id))).all()
        outbox = (
            await s.scalars(
                select(Outbox.dedupe_key).where(Outbox.dedupe_key.like(f"payment:{items.late}:%"))
            )
        ).all()
    assert (attempt.status, attempt.mpesa_receipt, booking.status) == ("PAID", RECEIPT_LATE, "CONFIRMED")
    assert booking.meeting_url and sorted(reminders) == ["1h", "24h"]
    assert sorted(outbox) == [f"payment:{items.late}:confirmed:{k}" for k in ("client", "email", "therapist")]
    transitions = [
        (e.subject_type, e.details["previous"], e.details["new"], e.actor)
        for e in await audit_actions(runtime, "payment.status_changed")
        + await audit_actions(runtime, "booking.status_changed")
    ]
    assert ("payment", "NEEDS_REVIEW", "PAID", "admin:7") in transitions
    assert ("booking", "APPROVED", "CONFIRMED", "admin:7") in transitions
    (decision,) = await audit_actions(runtime, "review.resolved")
    assert (
        decision.details["action"] == "confirm_booking" and decision.details["note"] == "customer showed SMS"
    )


async def test_each_action_refuses_a_stale_state_and_changes_nothing(runtime):
    items = await seed_review(runtime)
    await resolve(runtime, f"attempt-{items.late}", action="confirm_booking", note="all good")
    for form in (
        {"action": "confirm_booking", "note": "again"},
        {"action": "refunded", "note": "again", "refund_reference": "RFD1234567"},
        {"action": "dismiss", "note": "again"},
    ):
        with pytest.raises(ReviewError) as refused:
            await resolve(runtime, f"attempt-{items.late}", **form)
        assert (
            refused.value.kind == "stale"
            and "no longer waiting for review (it is PAID)" in refused.value.message
        )
    assert len(await audit_actions(runtime, "review.resolved")) == 1


async def test_two_admins_deciding_at_once_one_wins_and_the_other_is_told(runtime):
    items = await seed_review(runtime)
    results = await asyncio.gather(
        resolve(runtime, f"attempt-{items.unknown}", action="dismiss", note="no money"),
        resolve(runtime, f"attempt-{items.unknown}", action="dismiss", note="no money either"),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, ReviewError)]
    assert len(errors) == 1 and errors[0].kind == "stale"
    assert len(await audit_actions(runtime, "review.resolved")) == 1


async def test_a_double_payment_cannot_confirm_the_booking_and_is_refunded_with_its_reference(runtime):
    items = await seed_review(runtime)
    with pytest.raises(ReviewError) as refused:
        await resolve(runtime, f"attempt-{items.double}", action="confirm_booking", note="try")
    assert refused.value.kind == "refused" and "is CONFIRMED" in refused.value.message
    with pytest.raises(ReviewError, match="M-Pesa reference of the refund"):
        await resolve(runtime, f"attempt-{items.double}", action="refunded", note="sent back")
    await resolve(
        runtime, f"attempt-{items.double}", action="refunded", note="sent back", refund_reference="rfd1234567"
    )
    async with runtime.uow() as uow:
        attempt = await uow.session.get_one(PaymentAttempt, items.double)
    assert attempt.status == "FAILED" and "RFD1234567" in (attempt.result_desc or "")
    async with runtime.uow() as uow:
        page = await list_transactions(
            uow.session, parse_filter({"q": RECEIPT_SECOND}, active_environment="simulator")
        )
    assert (page.rows[0].failure_reason or "").startswith("refunded after review (M-Pesa RFD1234567)")
    (decision,) = await audit_actions(runtime, "review.resolved")
    assert decision.details["refund_reference"] == "RFD1234567" and decision.subject_id == str(items.double)


async def test_confirming_without_a_known_receipt_needs_one_that_is_not_taken(runtime):
    items = await seed_review(runtime)
    with pytest.raises(ReviewError, match="Give the M-Pesa receipt"):
        await resolve(runtime, f"attempt-{items.unknown}", action="confirm_booking", note="portal shows it")
    with pytest.raises(ReviewError, match="already recorded"):
        await resolve(
            runtime,
            f"attempt-{items.unknown}",
            action="confirm_booking",
            note="checked",
            receipt=RECEIPT_FIRST,
        )
    await resolve(
        runtime, f"attempt-{items.unknown}", action="confirm_booking", note="portal", receipt="NLP1AB23CD"
    )
    async with runtime.uow() as uow:
        attempt = await uow.session.get_one(PaymentAttempt, items.unknown)
    assert (attempt.status, attempt.mpesa_receipt, attempt.paid_amount_kes) == ("PAID", "NLP1AB23CD", 2500)


async def test_bad_decisions_get_clear_messages(runtime):
    items = await seed_review(runtime)
    cases = [
        ("attempt-x", {"action": "dismiss", "note": "abc"}, "not_found"),
        ("attempt-999999", {"action": "dismiss", "note": "abc"}, "not_found"),
        ("attempt-99999999999", {"action": "dismiss", "note": "abc"}, "not_found"),
        ("refund-99999999999", {"action": "dismiss", "note": "abc"}, "not_found"),
        (f"attempt-{items.unknown}", {"action": "steal", "note": "abc"}, "invalid"),
        (f"attempt-{items.unknown}", {"action": "dismiss", "note": " "}, "invalid"),
        (f"attempt-{items.unknown}", {"action": "dismiss", "note": "nul \x00 here"}, "invalid"),
        (
            f"attempt-{items.unknown}",
            {"action": "refunded", "note": "abc", "refund_reference": "=1+1"},
            "invalid",
        ),
        ("refund-999", {"action": "dismiss", "note": "abc"}, "not_found"),
    ]
    for item, form, kind in cases:
        with pytest.raises(ReviewError) as err:
            await resolve(runtime, item, **form)
        assert err.value.kind == kind, (item, form, err.value.message)
    assert await audit_actions(runtime, "review.resolved") == []


async def test_a_refund_due_is_listed_until_an_admin_closes_it(runtime):
    items = await seed_review(runtime)
    await cancel_booking(runtime, booking_id=items.double_booking, admin_id=7, reason="practitioner ill")
    queue = await queue_of(runtime.uow)
    (refund,) = queue.refunds
    assert (refund.receipt, refund.amount_kes) == (RECEIPT_FIRST, 2500)
    with pytest.raises(ReviewError) as refused:
        await resolve(runtime, refund.item_id, action="confirm_booking", note="checked")
    assert refused.value.kind == "refused"
    await resolve(runtime, refund.item_id, action="refunded", note="sent", refund_reference="RFD7654321")
    with pytest.raises(ReviewError) as stale:
        await resolve(runtime, refund.item_id, action="dismiss", note="again")
    assert stale.value.kind == "stale" and "already closed by admin:7" in stale.value.message
    async with runtime.uow() as uow:
        assert await review_counts(uow.session) == (3, 0)
    assert (await queue_of(runtime.uow)).refunds == ()


# -- the pages ----------------------------------------------------------------------------------


async def test_the_review_page_shows_the_queue_and_audits_the_read(admin):
    items = await seed_review(admin.runtime)
    response = await admin.get("/admin/review")
    html = await response.text()
    assert response.status == 200
    assert f"attempt-{items.double}" in html and RECEIPT_SECOND in html and "double payment" in html
    (entry,) = await audit_actions(admin.runtime, "admin.accessed")
    assert entry.actor == f"admin:{admin.admin_id}" and entry.details["what"] == "/admin/review"


async def test_posting_a_decision_applies_it_and_shows_the_message(admin):
    items = await seed_review(admin.runtime)
    form = {"action": "dismiss", "note": "no money arrived"}
    response = await admin.post(f"/admin/review/attempt-{items.unknown}", form)
    assert response.status == 303 and response.headers["Location"] == "/admin/review"
    assert (
        f"Payment attempt {items.unknown} is closed as FAILED"
        in await (await admin.get("/admin/review")).text()
    )
    again = await admin.post(f"/admin/review/attempt-{items.unknown}", form)
    assert again.status == 409 and "no longer waiting for review" in await again.text()


async def test_review_posts_need_the_csrf_token(admin):
    items = await seed_review(admin.runtime)
    for csrf in (False, "wrong"):
        response = await admin.post(
            f"/admin/review/attempt-{items.unknown}", {"action": "dismiss", "note": "x y"}, csrf=csrf
        )
        assert response.status == 403
    async with admin.runtime.uow() as uow:
        status = await uow.session.scalar(
            select(PaymentAttempt.status).where(PaymentAttempt.id == items.unknown)
        )
        assert status == "NEEDS_REVIEW"
        assert (
            await uow.session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "review.resolved")
            )
            == 0
        )


async def test_a_bad_decision_form_shows_the_queue_with_the_message(admin):
    items = await seed_review(admin.runtime)
    response = await admin.post(f"/admin/review/attempt-{items.unknown}", {"action": "dismiss", "note": ""})
    assert response.status == 400 and "Write a note" in await response.text()
