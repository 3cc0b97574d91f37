"""Reconciliation against a real database (SQLite and PostgreSQL): statement, STK Query, flags."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from core.config import load_settings
from core.db.models import AuditEntry, PaymentAttempt
from core.domain.states import PaymentStatus
from core.runtime import Runtime
from core.services import audit
from core.services.reconciliation.compare import Category
from core.services.reconciliation.reconcile import StatementError, reconcile
from tests.factories import make_attempt, make_booking

# The statement covers March 2024 (Africa/Nairobi); payments land on 12 March.
T = datetime(2024, 3, 12, 7, 15, tzinfo=UTC)  # 10:15 in Nairobi
NOW = datetime(2024, 4, 1, 6, 0, tzinfo=UTC)
P = PaymentStatus


def statement(*rows: str) -> bytes:
    header = (
        "Account Holder:,SMILING STEPS LTD\n"
        "Short Code:,4123456\n"
        "Time Period:,From 01-03-2024 00:00:00 To 31-03-2024 23:59:59\n"
        "\n"
        "Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,Balance,"
        "Balance Confirmed,Reason Type,Other Party Info,Linked Transaction ID,A/C No.\n"
    )
    return (header + "".join(f"{r}\n" for r in rows)).encode()


def srow(receipt: str, when: str, amount: str, status: str = "Completed", withdrawn: str = "") -> str:
    cells = [receipt, when, when, "Pay Bill Online", status, f'"{amount}"', withdrawn, "", "true"]
    return ",".join([*cells, "Pay Bill Online", "", "", "SmilingSteps"])


@dataclass
class Answer:
    pending: bool
    result_code: int | str | None
    result_desc: str | None


class FakeDaraja:
    """Answers STK Query from a table; records what it was asked."""

    def __init__(self, answers: dict[str, Answer | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def stk_query(self, checkout_request_id: str) -> Answer:
        self.asked.append(checkout_request_id)
        answer = self.answers[checkout_request_id]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _attempt(runtime: Runtime, status: PaymentStatus, **values: Any) -> int:
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session)
        attempt = await make_attempt(uow.session, booking, status=status, **values)
        await uow.commit()
        return attempt.id


async def _paid(
    runtime: Runtime, receipt: str | None, amount: int = 2500, when: datetime = T, **values: Any
) -> int:
    return await _attempt(
        runtime,
        P.PAID,
        mpesa_receipt=receipt,
        amount_kes=amount,
        paid_amount_kes=amount,
        transaction_time=when,
        settled_at=when,
        created_at=when - timedelta(seconds=40),
        deadline_at=when + timedelta(seconds=80),
        **values,
    )


async def _state(runtime: Runtime) -> tuple[dict[int, tuple[str, str | None]], int]:
    async with runtime.uow() as uow:
        rows = (
            await uow.session.execute(
                select(PaymentAttempt.id, PaymentAttempt.status, PaymentAttempt.review_reason)
            )
        ).all()
        entries = await uow.session.scalar(select(func.count()).select_from(AuditEntry))
    return {r[0]: (r[1], r[2]) for r in rows}, int(entries or 0)


async def _actions(runtime: Runtime) -> list[tuple[str, str | None, dict[str, Any]]]:
    async with runtime.uow() as uow:
        rows = (
            await uow.session.execute(
                select(AuditEntry.action, AuditEntry.subject_id, AuditEntry.details).order_by(AuditEntry.seq)
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


# Feature: mpesa-payment-integration, Property 57: Reconciliation Compares Transactions
# Feature: mpesa-payment-integration, Property 58: Discrepancy Flags Transaction
# Feature: mpesa-payment-integration, Property 59: Reconciliation Generates Report
# Feature: mpesa-payment-integration, Property 81: Sandbox Transactions Isolated From Production
async def test_statement_reconciliation_categories_flags_and_report(runtime: Runtime) -> None:
    matched = await _paid(runtime, "SCC0000001")
    short = await _paid(runtime, "SCC0000002")
    absent = await _paid(runtime, "SCC0000003")
    february = await _paid(runtime, "SCC0000004", when=datetime(2024, 2, 10, 9, 0, tzinfo=UTC))
    sandbox = await _paid(runtime, "SCC0000005", environment="sandbox")  # Property 81: not in this report
    lost = await _attempt(  # timed out on our side, yet the statement shows the money arrived
        runtime,
        P.TIMED_OUT,
        amount_kes=4000,
        created_at=T - timedelta(seconds=30),
        deadline_at=T + timedelta(seconds=90),
    )
    data = statement(
        srow("SCC0000001", "2024-03-12 10:15:00", "2,500.00"),
        srow("SCC0000001", "2024-03-12 10:15:00", "", withdrawn="25.00"),
        srow("SCC0000002", "12-03-2024 10:15:00", "2,400.00"),
        srow("SCCLOST001", "2024-03-12 10:16:10", "4,000.00"),
        srow("SCCSTRANGE", "2024-03-14 09:00:00", "1,000.00"),
        srow("SCCFAILED1", "2024-03-15 09:00:00", "2,500.00", status="Failed"),
    )

    report = await reconcile(runtime, environment="simulator", statement=data, now=NOW)

    assert [line.receipt for line in report.matched] == ["SCC0000001"]
    assert [(line.receipt, line.attempt_id) for line in report.amount_mismatch] == [("SCC0000002", short)]
    assert [(line.receipt, line.attempt_id) for line in report.missing_on_mpesa_side] == [
        ("SCC0000003", absent)
    ]
    assert sorted((line.receipt, line.attempt_id) for line in report.missing_on_our_side) == [
        ("SCCLOST001", lost),
        ("SCCSTRANGE", None),
    ]
    assert [line.receipt for line in report.not_completed] == ["SCCFAILED1"]
    assert report.flagged_attempt_ids == sorted([short, absent, lost])
    every_attempt = {line.attempt_id for line in report.lines}
    assert matched in every_attempt and february not in every_attempt and sandbox not in every_attempt

    attempts, _ = await _state(runtime)
    assert attempts[matched] == ("PAID", None)
    assert attempts[short][0] == "PAID"  # PAID never changes, it only gets a review reason
    assert (
        attempts[short][1]
        == "reconciliation: receipt SCC0000002 amount differs (ours 2500 KES, M-Pesa 2400 KES)"
    )
    assert attempts[absent] == ("PAID", "reconciliation: receipt SCC0000003 is not in the M-Pesa statement")
    assert attempts[lost][0] == "NEEDS_REVIEW"
    assert "SCCLOST001" in (attempts[lost][1] or "")
    assert attempts[february] == ("PAID", None) and attempts[sandbox] == ("PAID", None)

    actions = await _actions(runtime)
    assert ("payment.flagged", str(short)) in [(a, s) for a, s, _ in actions]
    assert ("payment.flagged", str(absent)) in [(a, s) for a, s, _ in actions]
    [transition] = [d for a, s, d in actions if a == "payment.status_changed" and s == str(lost)]
    assert (transition["previous"], transition["new"]) == ("TIMED_OUT", "NEEDS_REVIEW")
    assert actions[-1][0] == "reconciliation.completed"
    assert (await audit.verify_chain(runtime.uow())).ok

    out = io.StringIO()
    report.to_csv(out)
    csv_text = out.getvalue()
    assert (
        csv_text.splitlines()[0]
        == "category,receipt,attempt_id,booking_reference,amount_ours,amount_mpesa,time,note"
    )
    assert len(csv_text.splitlines()) == 1 + len(report.lines) == 7
    assert not re.search(r"(?<!\d)254\d{9}(?!\d)", csv_text)  # no phone numbers in the report
    assert report.summary().startswith("Reconciliation of simulator payments for 2024-03-01 00:00:00")
    assert "4 discrepancies; 3 attempts newly flagged for review." in report.summary()


# Feature: mpesa-payment-integration, Property 58: Discrepancy Flags Transaction
async def test_running_twice_flags_nothing_twice(runtime: Runtime) -> None:
    await _paid(runtime, "SCC0000002")
    await _paid(runtime, "SCC0000003")
    data = statement(srow("SCC0000002", "2024-03-12 10:15:00", "2,000.00"))
    first = await reconcile(runtime, environment="simulator", statement=data, now=NOW)
    assert len(first.flagged_attempt_ids) == 2
    attempts_before, entries_before = await _state(runtime)

    second = await reconcile(runtime, environment="simulator", statement=data, now=NOW)
    assert second.flagged_attempt_ids == []
    assert second.counts["discrepancies"] == 2  # still reported, not flagged again
    attempts_after, entries_after = await _state(runtime)
    assert attempts_after == attempts_before
    assert entries_after == entries_before + 1  # only the run's own "reconciliation.completed"


# Feature: mpesa-payment-integration, Property 57: Reconciliation Compares Transactions
# Feature: mpesa-payment-integration, Property 58: Discrepancy Flags Transaction
async def test_stk_query_reconciliation(runtime: Runtime) -> None:
    past = NOW - timedelta(minutes=5)
    paid_at_mpesa = await _attempt(runtime, P.UNCLEAR, checkout_request_id="ws_CO_paid", deadline_at=past)
    cancelled = await _attempt(
        runtime, P.AWAITING_CUSTOMER, checkout_request_id="ws_CO_1032", deadline_at=past
    )
    pending = await _attempt(runtime, P.UNCLEAR, checkout_request_id="ws_CO_pending", deadline_at=past)
    unreachable = await _attempt(runtime, P.UNCLEAR, checkout_request_id="ws_CO_down", deadline_at=past)
    in_review = await _attempt(
        runtime,
        P.NEEDS_REVIEW,
        checkout_request_id="ws_CO_review",
        deadline_at=past,
        review_reason="double payment",
    )
    in_flight = await _attempt(
        runtime, P.AWAITING_CUSTOMER, checkout_request_id="ws_CO_new", deadline_at=NOW + timedelta(seconds=60)
    )
    await _attempt(
        runtime, P.UNCLEAR, checkout_request_id="ws_CO_sandbox", deadline_at=past, environment="sandbox"
    )
    await _paid(runtime, "SCC0000001", checkout_request_id="ws_CO_done")
    daraja = FakeDaraja(
        {
            "ws_CO_paid": Answer(False, "0", "The service request is processed successfully."),
            "ws_CO_1032": Answer(False, 1032, "Request cancelled by user"),
            "ws_CO_pending": Answer(True, None, "The transaction is being processed"),
            "ws_CO_down": ConnectionError("connection refused"),
            "ws_CO_review": Answer(False, 0, "The service request is processed successfully."),
        }
    )

    report = await reconcile(runtime, environment="simulator", query=daraja.stk_query, now=NOW)

    assert sorted(daraja.asked) == ["ws_CO_1032", "ws_CO_down", "ws_CO_paid", "ws_CO_pending", "ws_CO_review"]
    assert report.queried == 5
    assert [line.attempt_id for line in report.missing_on_our_side] == [paid_at_mpesa]
    assert [line.attempt_id for line in report.status_mismatch] == [cancelled]
    assert {line.category: line.attempt_id for line in report.unresolved} == {
        Category.QUERY_PENDING: pending,
        Category.QUERY_FAILED: unreachable,
        Category.NEEDS_REVIEW: in_review,
    }
    assert report.flagged_attempt_ids == sorted([paid_at_mpesa, cancelled])

    attempts, _ = await _state(runtime)
    assert attempts[paid_at_mpesa] == (
        "NEEDS_REVIEW",
        "reconciliation: STK Query reports the payment completed (ResultCode 0)",
    )
    assert attempts[cancelled][0] == "NEEDS_REVIEW"
    assert attempts[pending] == ("UNCLEAR", None)
    assert attempts[unreachable] == ("UNCLEAR", None)
    assert attempts[in_review] == ("NEEDS_REVIEW", "double payment")
    assert attempts[in_flight] == ("AWAITING_CUSTOMER", None)

    again = await reconcile(runtime, environment="simulator", query=daraja.stk_query, now=NOW)
    assert again.flagged_attempt_ids == []  # both are in review now; their answers are listed, not re-flagged
    assert {line.attempt_id for line in again.unresolved if line.category is Category.NEEDS_REVIEW} == {
        paid_at_mpesa,
        cancelled,
        in_review,
    }


# Feature: mpesa-payment-integration, Property 58: Discrepancy Flags Transaction
@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
        b"Date,Amount\n2024-03-12,2500\n",
        b"Receipt No.,Paid In\nSCC0000003,2500\nSCC0000009,25OO\n",
        b"Receipt No.,Paid In\n" + b"SCC0000003,2500\n" * 800_000,
    ],
    ids=["binary", "no-receipt-column", "bad-amount", "too-big"],
)
async def test_bad_statement_changes_nothing(runtime: Runtime, data: bytes) -> None:
    await _paid(runtime, "SCC0000003")
    await _attempt(
        runtime, P.UNCLEAR, checkout_request_id="ws_CO_paid", deadline_at=NOW - timedelta(minutes=5)
    )
    before = await _state(runtime)
    daraja = FakeDaraja({"ws_CO_paid": Answer(False, 0, "ok")})
    with pytest.raises(StatementError):
        await reconcile(runtime, environment="simulator", statement=data, query=daraja.stk_query, now=NOW)
    assert daraja.asked == []  # the file is refused before Daraja is asked anything
    assert await _state(runtime) == before


async def test_bad_arguments(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="statement file, an STK Query function, or both"):
        await reconcile(runtime, environment="simulator", now=NOW)
    with pytest.raises(ValueError, match="environment"):
        await reconcile(runtime, environment="staging", statement=statement(), now=NOW)


async def test_accepts_a_unit_of_work_factory_and_an_empty_statement(runtime: Runtime) -> None:
    report = await reconcile(runtime.uow, environment="simulator", statement=statement(), now=NOW)
    assert report.ok and report.lines == []
    assert "0 matched" in report.summary() and "Everything agrees with M-Pesa." in report.summary()


async def test_statement_of_another_short_code_is_refused(runtime: Runtime) -> None:
    await _paid(runtime, "SCC0000003")
    before = await _state(runtime)
    with pytest.raises(StatementError, match="short code 4123456, not 600999"):
        await reconcile(
            runtime, environment="simulator", statement=statement(), now=NOW, short_codes={"600999"}
        )
    assert await _state(runtime) == before
    report = await reconcile(
        runtime, environment="simulator", statement=statement(), now=NOW, short_codes={"4123456"}
    )
    assert len(report.missing_on_mpesa_side) == 1

    # by default the configured business short code is expected
    configured = replace(
        runtime,
        settings=load_settings(
            {"DATABASE_URL": runtime.settings.database_url, "MPESA_BUSINESS_SHORT_CODE": "600999"}
        ),
    )
    with pytest.raises(StatementError, match="short code 4123456"):
        await reconcile(configured, environment="simulator", statement=statement(), now=NOW)
