"""The admin money pages in a real browser: Debian's Chromium driven by Playwright.

An admin signs in, sees a paid transaction, filters by its receipt, downloads the CSV and
reads it, and resolves a review item. The transactions and review pages are photographed into
the test's temporary directory and, with UPDATE_SCREENSHOTS=1, copied to docs/screenshots/.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db.models import Booking, PaymentAttempt
from core.domain.states import BookingStatus, PaymentStatus
from core.services.ops.admins import create_admin
from tests.e2e.test_admin_browser import keep_screenshot
from tests.factories import make_attempt, make_booking
from tests.support.admin import PASSWORD, USERNAME, browser_sign_in, serving_admin_site
from tests.support.admin_money import seed_scenario

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium (apt-get install chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]' (playwright)")
expect = playwright_api.expect
expect.set_options(timeout=10_000)


async def test_an_admin_finds_a_payment_downloads_the_csv_and_resolves_a_review_item(runtime, tmp_path):
    sc = await seed_scenario(runtime)
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, status=BookingStatus.APPROVED, email="client@example.org")
        attempt = await make_attempt(
            uow.session,
            booking,
            status=PaymentStatus.NEEDS_REVIEW,
            mpesa_receipt="NLR5EV13WX",
            paid_amount_kes=2400,
            review_reason="amount 2400 differs from the expected 2500",
        )
        await uow.commit()
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
    async with serving_admin_site(runtime) as base_url, playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            context = await browser.new_context(
                accept_downloads=True, viewport={"width": 1280, "height": 900}
            )
            page = await context.new_page()
            await browser_sign_in(page, base_url)

            await page.get_by_role("link", name="Transactions", exact=True).click()
            table = page.locator("table")
            await expect(table).to_contain_text("NLJ7RT61SV")
            await expect(table).to_contain_text("Wanjiku Kamau")
            await page.fill("input[name=q]", "NLJ7RT61SV")
            await page.get_by_role("button", name="Filter").click()
            await expect(page.get_by_text("1 payment attempt in")).to_be_visible()
            await expect(table.locator("tbody tr")).to_have_count(1)
            await page.screenshot(path=str(tmp_path / "transactions.png"), full_page=True)
            keep_screenshot(tmp_path / "transactions.png", "transactions.png")

            async with page.expect_download() as download_info:
                await page.get_by_role("link", name="Download CSV").click()
            download = await download_info.value
            target = tmp_path / download.suggested_filename
            await download.save_as(target)
            rows = list(csv.DictReader(io.StringIO(target.read_text("utf-8"))))
            assert [(int(r["attempt_id"]), r["mpesa_receipt"]) for r in rows] == [
                (sc.ids["paid"], "NLJ7RT61SV")
            ]
            assert rows[0]["created_at"] == "2026-12-01T10:00:00+03:00"

            await page.get_by_role("link", name="Review", exact=True).click()
            card = page.locator(f"#attempt-{attempt.id}")
            await expect(card).to_contain_text("amount 2400 differs")
            await page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
            keep_screenshot(tmp_path / "review.png", "review.png")
            await card.locator("select[name=action]").select_option("confirm_booking")
            await card.locator("input[name=note]").fill("Client sent the M-Pesa SMS; short by 100, accepted")
            await card.get_by_role("button", name="Apply").click()
            await expect(page.get_by_role("status")).to_contain_text(f"Payment attempt {attempt.id} is PAID")
            await expect(page.locator(f"#attempt-{attempt.id}")).to_have_count(0)
        finally:
            await browser.close()
    async with runtime.uow() as uow:
        status = await uow.session.scalar(
            select(PaymentAttempt.status).where(PaymentAttempt.id == attempt.id)
        )
        booking_status = await uow.session.scalar(select(Booking.status).where(Booking.id == booking.id))
    assert (status, booking_status) == ("PAID", "CONFIRMED")
