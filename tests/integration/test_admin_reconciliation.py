"""The reconciliation page: statement upload and STK Query from the admin site, its flags, its
report and CSV, and refusals that change nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from admin_web.app import create_admin_app
from admin_web.context import AdminDeps
from core.db.models import AuditEntry, PaymentAttempt
from core.domain.states import PaymentStatus
from core.runtime import Runtime
from core.services.ops.admins import create_admin
from core.services.reconciliation.runs import MAX_UPLOAD_BYTES
from smiling_steps.app import MAX_BODY_BYTES
from tests.factories import make_attempt, make_booking
from tests.integration.test_admin_settings import site_with_simulator
from tests.support.admin import PASSWORD, TEST_SECRET_KEY, USERNAME, AdminSite, read_session, sign_in
from tests.support.daraja import make_client, running_simulator

T = datetime(2024, 3, 12, 7, 15, tzinfo=UTC)  # 10:15 in Nairobi


def statement(*rows: str) -> bytes:
    header = (
        "Account Holder:,SMILING STEPS LTD\n"
        "Short Code:,4123456\n"
        "Time Period:,From 01-03-2024 00:00:00 To 31-03-2024 23:59:59\n"
        "\n"
        "Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,Balance\n"
    )
    return (header + "".join(f"{r}\n" for r in rows)).encode()


def srow(receipt: str, when: str, amount: str) -> str:
    return ",".join([receipt, when, when, "Pay Bill Online", "Completed", f'"{amount}"', "", ""])


SAMPLE = statement(
    srow("SCC0000001", "2024-03-12 10:15:00", "2,500.00"),  # matches
    srow("SCC0000002", "2024-03-12 10:15:00", "2,400.00"),  # we were paid 2,500: amount mismatch
    srow("SCCSTRANGE", "2024-03-14 09:00:00", "1,000.00"),  # not ours at all: unmatched
)


async def paid(runtime: Runtime, receipt: str, *, reference: str | None = None) -> int:
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, **({"reference": reference} if reference else {}))
        attempt = await make_attempt(
            uow.session,
            booking,
            status=PaymentStatus.PAID,
            mpesa_receipt=receipt,
            amount_kes=2500,
            paid_amount_kes=2500,
            transaction_time=T,
            settled_at=T,
            created_at=T - timedelta(seconds=40),
            deadline_at=T + timedelta(seconds=80),
        )
        await uow.commit()
        return attempt.id


async def upload(admin: AdminSite | TestClient, data: bytes, csrf: str, **fields: str) -> Any:
    form = FormData()
    form.add_field("csrf_token", csrf)
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field("statement", data, filename="statement.csv", content_type="text/csv")
    client = admin.client if isinstance(admin, AdminSite) else admin
    return await client.post("/admin/reconciliation", data=form, allow_redirects=False)


async def snapshot(runtime: Runtime) -> tuple[list[tuple[int, str, str | None]], list[str]]:
    async with runtime.uow() as uow:
        rows = (
            await uow.session.execute(
                select(PaymentAttempt.id, PaymentAttempt.status, PaymentAttempt.review_reason).order_by(
                    PaymentAttempt.id
                )
            )
        ).all()
        actions = (await uow.session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq))).all()
    return [tuple(r) for r in rows], list(actions)  # type: ignore[misc]


# Feature: mpesa-payment-integration, Property 57: Reconciliation Compares Transactions
# Feature: mpesa-payment-integration, Property 58: Discrepancy Flags Transaction
# Feature: mpesa-payment-integration, Property 59: Reconciliation Generates Report
async def test_an_uploaded_statement_is_compared_flagged_and_reported(admin: AdminSite) -> None:
    matched = await paid(admin.runtime, "SCC0000001")
    short = await paid(admin.runtime, "SCC0000002", reference="=HYPERLINK(1)")
    response = await upload(admin, SAMPLE, admin.csrf)
    page = await response.text()
    assert response.status == 200, page
    assert "1 matched" in page and "1 amount mismatches" in page and "1 missing on our side" in page
    assert "flagged for review" in page and "SCCSTRANGE" in page

    async with admin.runtime.uow() as uow:
        flagged = await uow.session.get_one(PaymentAttempt, short)
        untouched = await uow.session.get_one(PaymentAttempt, matched)
        trail = (await uow.session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
    assert flagged.review_reason and "2400" in flagged.review_reason.replace(",", "")
    assert untouched.review_reason is None and untouched.status == PaymentStatus.PAID
    completed = [e for e in trail if e.action == "reconciliation.completed"]
    assert completed and completed[-1].actor == f"admin:{admin.admin_id}"
    reads = [e for e in trail if e.action == "admin.accessed" and "reconciliation" in e.details["what"]]
    assert reads and reads[-1].details["filters"]["statement"] is True

    token = page.split("/admin/reconciliation?report=")[1].split('"')[0]
    download = await admin.get(f"/admin/reconciliation?report={token}")
    assert download.status == 200 and download.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await download.text())))
    by_receipt = {row["receipt"]: row for row in rows}
    assert by_receipt["SCC0000001"]["category"] == "matched"
    assert by_receipt["SCC0000002"]["category"] == "amount_mismatch"
    assert by_receipt["SCC0000002"]["booking_reference"] == "'=HYPERLINK(1)"  # neutralised (CSV injection)
    assert by_receipt["SCCSTRANGE"]["category"] == "missing_on_our_side"


async def test_a_malformed_statement_names_the_line_and_changes_nothing(admin: AdminSite) -> None:
    await paid(admin.runtime, "SCC0000001")
    before = await snapshot(admin.runtime)
    bad = statement(srow("SCC0000001", "2024-03-12 10:15:00", "2,500.00"), srow("SCC0000009", "soon", "10"))
    response = await upload(admin, bad, admin.csrf)
    page = await response.text()
    assert response.status == 400
    assert "statement line 7" in page and "Nothing was changed" in page
    assert await snapshot(admin.runtime) == before


async def test_an_oversized_statement_gets_a_clear_message_and_changes_nothing(runtime: Runtime) -> None:
    # The real root application's body limit (smiling_steps.app), not aiohttp's 1 MB default.
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    root = web.Application(client_max_size=MAX_BODY_BYTES)
    root.add_subapp("/admin", create_admin_app(AdminDeps(runtime, TEST_SECRET_KEY)))
    async with TestClient(TestServer(root)) as client:
        assert (await sign_in(client, USERNAME, PASSWORD)).status == 303
        before = await snapshot(runtime)
        big = SAMPLE + b"," * (MAX_UPLOAD_BYTES + 1 - len(SAMPLE))
        response = await upload(client, big, str(read_session(client)["csrf_token"]))
        page = await response.text()
        assert response.status == 400
        assert "larger than 5 MB" in page and "Nothing was changed" in page
        assert await snapshot(runtime) == before
        # Beyond the server's 6 MB body limit the request is refused before any view runs.
        huge = await upload(client, b"x" * (MAX_BODY_BYTES + 1), str(read_session(client)["csrf_token"]))
        assert huge.status == 413 and "Traceback" not in await huge.text()
        assert await snapshot(runtime) == before


async def test_reconciling_without_a_statement_or_a_query_is_refused(admin: AdminSite) -> None:
    response = await admin.post("/admin/reconciliation", {"environment": "simulator"})
    assert response.status == 400
    assert "Upload a statement CSV" in await response.text()
    response = await admin.post("/admin/reconciliation", {"environment": "moon", "use_query": "on"})
    assert response.status == 400 and "Environment must be one of" in await response.text()


async def test_an_unknown_report_link_asks_to_run_again(admin: AdminSite) -> None:
    response = await admin.get("/admin/reconciliation?report=nope")
    assert response.status == 400 and "no longer available" in await response.text()


async def test_the_page_is_an_audited_read(admin: AdminSite) -> None:
    response = await admin.get("/admin/reconciliation")
    assert response.status == 200 and 'name="statement"' in await response.text()
    async with admin.runtime.uow() as uow:
        count = await uow.session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "admin.accessed")
        )
    assert count == 1


# Feature: mpesa-payment-integration, Property 57: Reconciliation Compares Transactions
# Feature: mpesa-payment-integration, Property 58: Discrepancy Flags Transaction
async def test_stk_query_reconciliation_asks_daraja_with_the_saved_credentials_and_flags(
    database_url: str,
) -> None:
    async with (
        running_simulator(prefix=None) as sim,
        site_with_simulator(database_url, sim.base_url) as admin,
    ):
        # A push that was paid on the phone but whose callback never came (simulator outcome 5).
        async with make_client(sim.base_url) as daraja:
            accepted = await daraja.stk_push(
                phone="254712345675",
                amount=2500,
                callback_url="http://127.0.0.1:9/hooks/lnm/x",
                transaction_desc="SS1",
            )
        await sim.wait_for(
            lambda: sim.state.transactions[accepted.checkout_request_id].transaction_date is not None
        )
        async with admin.runtime.uow() as uow:
            booking = await make_booking(uow.session)
            lost = await make_attempt(
                uow.session,
                booking,
                status=PaymentStatus.AWAITING_CUSTOMER,
                checkout_request_id=accepted.checkout_request_id,
                deadline_at=admin.runtime.clock() - timedelta(minutes=5),
            )
            await uow.commit()
        # Safaricom rotates the credentials; the admin saves the new ones; the query must use them.
        sim.state.consumer_key, sim.state.passkey = "rotated-key-7777", "rotated-passkey-8888"
        saved = await admin.post(
            "/admin/settings/mpesa",
            {
                "environment": "simulator",
                "simulator_consumer_key": "rotated-key-7777",
                "simulator_passkey": "rotated-passkey-8888",
                "current_password": PASSWORD,
            },
        )
        assert saved.status == 303
        queries_before = len(sim.requests("stk_query"))
        response = await admin.post("/admin/reconciliation", {"environment": "simulator", "use_query": "on"})
        page = await response.text()
        assert response.status == 200, page
        assert "against 1 STK Queries" in page and "1 missing on our side" in page
        assert len(sim.requests("stk_query")) == queries_before + 1
        async with admin.runtime.uow() as uow:
            flagged = await uow.session.get_one(PaymentAttempt, lost.id)
        assert flagged.status == PaymentStatus.NEEDS_REVIEW
        assert flagged.review_reason and "STK Query reports the payment completed" in flagged.review_reason
