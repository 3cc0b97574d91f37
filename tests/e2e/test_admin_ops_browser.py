"""The admin's operations pages in a real browser (Debian's Chromium via Playwright): upload an
M-Pesa statement and read the report, switch the M-Pesa mode with the password, verify the
audit chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.domain.states import PaymentStatus
from core.runtime import Runtime
from core.services.ops.admins import create_admin
from tests.factories import make_attempt, make_booking
from tests.support.admin import PASSWORD, USERNAME, browser_sign_in, serving_admin_site

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium (apt-get install chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]' (playwright)")
expect = playwright_api.expect
WAIT_MS = 10_000
expect.set_options(timeout=WAIT_MS)
PAID_AT = datetime(2024, 3, 12, 7, 15, tzinfo=UTC)
STATEMENT = (
    "Account Holder:,SMILING STEPS LTD\n"
    "Time Period:,From 01-03-2024 00:00:00 To 31-03-2024 23:59:59\n"
    "\n"
    "Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn\n"
    'SCC0000001,2024-03-12 10:15:00,Pay Bill Online,Completed,"2,500.00",\n'
    'SCC0000002,2024-03-12 10:16:00,Pay Bill Online,Completed,"2,400.00",\n'
)


@asynccontextmanager
async def browser_page() -> AsyncIterator[playwright_api.Page]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page()
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            await browser.close()


async def paid_attempt(runtime: Runtime, receipt: str) -> None:
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session)
        await make_attempt(
            uow.session,
            booking,
            status=PaymentStatus.PAID,
            mpesa_receipt=receipt,
            amount_kes=2500,
            paid_amount_kes=2500,
            transaction_time=PAID_AT,
            settled_at=PAID_AT,
            created_at=PAID_AT - timedelta(seconds=40),
        )
        await uow.commit()


# Feature: mpesa-payment-integration, Property 59: Reconciliation Generates Report
# Feature: mpesa-payment-integration, Property 80: Mode Switching Requires Admin Authentication
# Feature: mpesa-payment-integration, Property 70: Audit Logs Have Tamper-Evident Format
async def test_an_admin_reconciles_a_statement_switches_mode_and_verifies_the_audit_chain(
    runtime: Runtime, tmp_path: Path
) -> None:
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    await paid_attempt(runtime, "SCC0000001")
    await paid_attempt(runtime, "SCC0000002")
    statement = tmp_path / "mpesa-statement.csv"
    statement.write_text(STATEMENT)

    async with serving_admin_site(runtime) as base_url, browser_page() as page:
        await browser_sign_in(page, base_url)

        await page.get_by_role("link", name="Reconciliation").click()
        await page.set_input_files("input[name=statement]", str(statement))
        await page.get_by_role("button", name="Reconcile").click()
        await expect(page.locator("#summary")).to_contain_text("1 matched")
        await expect(page.locator("#summary")).to_contain_text("1 amount mismatches")
        await expect(page.locator("#mismatched + .table-wrap")).to_contain_text("flagged for review")
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="Download this report (CSV)").click()
        saved = tmp_path / "report.csv"
        await (await download_info.value).save_as(saved)
        report = saved.read_text()  # noqa: ASYNC240 (a small local file, after the download finished)
        assert report.startswith("category,receipt") and "amount_mismatch,SCC0000002" in report

        await page.get_by_role("link", name="Settings").click()
        await page.select_option("select#environment", "sandbox")
        await page.fill("#sandbox_consumer_key", "sandbox-key-AAAA1111")
        await page.fill("#sandbox_consumer_secret", "sandbox-secret-BBBB2222")
        await page.fill("#current_password", "not the password")
        await page.get_by_role("button", name="Save M-Pesa settings").click()
        await expect(page.get_by_role("alert")).to_contain_text("password is not correct")
        await expect(page.locator("#active-mode")).to_have_text("simulator")

        await page.select_option("select#environment", "sandbox")
        await page.fill("#sandbox_consumer_key", "sandbox-key-AAAA1111")
        await page.fill("#sandbox_consumer_secret", "sandbox-secret-BBBB2222")
        await page.fill("#current_password", PASSWORD)
        await page.get_by_role("button", name="Save M-Pesa settings").click()
        await expect(page.get_by_role("status").first).to_contain_text("switched from simulator to sandbox")
        await expect(page.locator("#active-mode")).to_have_text("sandbox")
        await expect(page.locator(".badge.test")).to_contain_text("sandbox")
        assert "sandbox-key-AAAA1111" not in await page.content()  # only "…1111" is shown back

        await page.get_by_role("link", name="Audit").click()
        await page.get_by_role("button", name="Verify the chain").click()
        await expect(page.get_by_role("status").first).to_contain_text("Audit chain OK")
        await expect(page.locator("table")).to_contain_text("settings.mpesa_changed")
