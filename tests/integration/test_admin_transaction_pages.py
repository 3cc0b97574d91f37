"""The transaction pages over HTTP with a signed-in admin: list, filters, CSV download, detail,
test summary; login required; every read audited (SQLite, and PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import csv
import io

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from core.db.models import AuditEntry
from core.services import audit
from tests.support.admin import admin_app
from tests.support.admin_money import FORMULA_NAME, seed_scenario

PAGES = (
    "/admin/transactions",
    "/admin/transactions.csv",
    "/admin/transactions/1",
    "/admin/review",
    "/admin/test-summary",
)


async def accesses(runtime) -> list[AuditEntry]:
    async with runtime.uow() as uow:
        query = select(AuditEntry).where(AuditEntry.action == "admin.accessed").order_by(AuditEntry.seq)
        return list((await uow.session.scalars(query)).all())


async def test_money_pages_need_a_session(runtime):
    async with TestClient(TestServer(admin_app(runtime))) as client:
        for path in PAGES:
            response = await client.get(path, allow_redirects=False)
            assert response.status == 303 and response.headers["Location"].startswith("/admin/login?next="), (
                path
            )
        response = await client.post(
            "/admin/review/attempt-1", data={"action": "dismiss"}, allow_redirects=False
        )
        assert response.status == 403


# Feature: mpesa-payment-integration, Property 37: Admin Dashboard Shows All Transactions
# Feature: mpesa-payment-integration, Property 38: Transaction Display Contains Required Fields
async def test_the_list_shows_the_active_environments_attempts_with_their_fields(admin):
    sc = await seed_scenario(admin.runtime)
    response = await admin.get("/admin/transactions")
    html = await response.text()
    assert response.status == 200
    for text in (
        "2026-12-01 10:00",
        "KES 2,500",
        "Wanjiku Kamau",
        "Amina Odhiambo",
        sc.references["paid"],
        "NLJ7RT61SV",
    ):
        assert text in html
    assert "PRD0000001" not in html and "SBX0000001" not in html  # Property 81: simulator mode by default
    assert FORMULA_NAME not in html and "=HYPERLINK(&#34;http://evil.example&#34;" in html  # escaped


# Feature: mpesa-payment-integration, Property 39: Transaction Search Filters Results
# Feature: mpesa-payment-integration, Property 81: Sandbox Transactions Isolated From Production
async def test_filters_by_receipt_checkout_id_reference_phone_digits_and_environment(admin):
    sc = await seed_scenario(admin.runtime)
    for q in ("NLJ7RT61SV", sc.checkout_ids["paid"], sc.references["paid"], "5678"):
        html = await (await admin.get("/admin/transactions", params={"q": q})).text()
        assert "1 payment attempt in" in html and "NLJ7RT61SV" in html, q
    html = await (await admin.get("/admin/transactions", params={"environment": "production"})).text()
    assert "PRD0000001" in html and "NLJ7RT61SV" not in html


# Feature: mpesa-payment-integration, Property 42: Failed Payment Logs Error Details
# Feature: mpesa-payment-integration, Property 43: Failed Payment Display Shows Details
async def test_failed_attempts_show_reason_and_time(admin):
    await seed_scenario(admin.runtime)
    html = await (await admin.get("/admin/transactions", params={"status": "FAILED"})).text()
    assert "The balance is insufficient" in html and "2026-12-01 23:31" in html


async def test_bad_filter_values_show_the_page_with_a_message(admin):
    await seed_scenario(admin.runtime)
    for params, message in (
        ({"from": "2026-12-05", "to": "2026-12-01"}, "is after the"),
        ({"therapist": "424242"}, "no practitioner with id 424242"),
        ({"from": "yesterday"}, "YYYY-MM-DD"),
        ({"page": "x" * 500}, "whole number"),
        ({"status": "<script>"}, "Unknown status"),
        ({"q": "NLJ\x00"}, "cannot be searched"),
    ):
        response = await admin.get("/admin/transactions", params=params)
        html = await response.text()
        assert response.status == 400 and message in html and "<script>" not in html, params
        csv_response = await admin.get("/admin/transactions.csv", params=params)
        assert csv_response.status == 400 and message in await csv_response.text()


# Feature: mpesa-payment-integration, Property 40: Report Generation Creates CSV
async def test_the_csv_download_is_streamed_with_the_filters_applied(admin):
    sc = await seed_scenario(admin.runtime)
    response = await admin.get("/admin/transactions.csv", params={"from": "2026-12-01", "to": "2026-12-01"})
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert (
        'filename="transactions-simulator-2026-12-01-2026-12-01.csv"'
        in response.headers["Content-Disposition"]
    )
    assert response.headers.get("Content-Length") is None  # streamed, not buffered
    assert response.headers["X-Frame-Options"] == "DENY"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert {int(r["attempt_id"]) for r in rows} == {sc.ids["paid"], sc.ids["late_evening"]}
    formula = list(
        csv.DictReader(io.StringIO(await (await admin.get("/admin/transactions.csv?q=FRM0000001")).text()))
    )
    assert formula[0]["client"] == "'" + FORMULA_NAME


async def test_the_detail_page_shows_the_attempt_booking_and_timeline(admin):
    sc = await seed_scenario(admin.runtime)
    attempt_id = sc.ids["late_evening"]
    async with admin.runtime.uow() as uow:
        await audit.record_payment_transition(
            uow.session,
            attempt_id,
            previous="AWAITING_CUSTOMER",
            new="FAILED",
            reason="callback ResultCode 1",
        )
        await uow.commit()
    response = await admin.get(f"/admin/transactions/{attempt_id}")
    html = await response.text()
    assert response.status == 200
    for text in (
        sc.references["late_evening"],
        "Otieno Baraka",
        "Brian Mwangi",
        "AWAITING_CUSTOMER",
        "callback ResultCode 1",
        "********1222",
    ):
        assert text in html
    assert "254733111222" not in html
    for missing in (
        "/admin/transactions/999999",
        "/admin/transactions/abc",
        "/admin/transactions/-1",
        "/admin/transactions/99999999999",
        "/admin/transactions/" + "9" * 5000,
    ):
        assert (await admin.get(missing)).status == 404


# Feature: mpesa-payment-integration, Property 82: Testing Provides Transaction Summary
async def test_the_test_summary_page_totals_test_payments(admin):
    await seed_scenario(admin.runtime)
    response = await admin.get("/admin/test-summary", params={"from": "2026-12-01", "to": "2026-12-03"})
    html = await response.text()
    assert response.status == 200 and "KES 5,000" in html and "50.0%" in html and "PRD0000001" not in html
    refused = await admin.get("/admin/test-summary", params={"environment": "production"})
    assert refused.status == 400 and "sandbox and simulator payments only" in await refused.text()


async def test_every_read_of_payment_data_is_audited_without_phone_numbers(admin):
    sc = await seed_scenario(admin.runtime)
    reads = [
        ("/admin/transactions", {"q": "0712345678", "status": "PAID"}),
        ("/admin/transactions.csv", {"environment": "sandbox"}),
        (f"/admin/transactions/{sc.ids['paid']}", {}),
        ("/admin/review", {}),
        ("/admin/test-summary", {"from": "2026-12-01"}),
    ]
    for path, params in reads:
        assert (await admin.get(path, params=params)).status == 200, path
    entries = await accesses(admin.runtime)
    assert [e.details["what"] for e in entries] == [path for path, _ in reads]
    assert all(e.actor == f"admin:{admin.admin_id}" for e in entries)
    assert entries[0].details["filters"]["status"] == "PAID" and "0712345678" not in str(entries[0].details)
    assert entries[1].details["filters"]["environment"] == "sandbox"
    assert entries[2].details["filters"] == {"attempt_id": sc.ids["paid"]}
