"""The admin's people pages in a real browser (Playwright driving Debian's Chromium).

An admin signs in, adds a practitioner (after a typo the form says why and keeps what was typed),
then finds a client by the last digits of their phone and forgets them, confirming first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.db.models import Client, PaymentAttempt, Therapist
from core.db.types import utcnow
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from core.services.booking.queries import bookable_therapists
from core.services.ops.admins import create_admin
from tests.factories import make_attempt, make_booking, make_client
from tests.support.admin import PASSWORD, USERNAME, browser_sign_in, serving_admin_site

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium (apt-get install chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]' (playwright)")
expect = playwright_api.expect

WAIT_MS = 10_000
expect.set_options(timeout=WAIT_MS)
HOSTILE_NAME = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


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


async def _create_the_admin(runtime: Runtime) -> None:
    await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)


async def test_an_admin_adds_a_practitioner_after_fixing_a_typo(runtime: Runtime) -> None:
    await _create_the_admin(runtime)
    async with serving_admin_site(runtime) as base_url, browser_page() as page:
        await browser_sign_in(page, base_url)
        await page.get_by_role("link", name="Practitioners", exact=True).click()
        await expect(page.locator("h1")).to_have_text("Practitioners")

        await page.fill("#name", HOSTILE_NAME)
        await page.fill("#email", "neema@example.org")
        await page.fill("#phone", "0712 345 67")  # one digit short
        await page.fill("#hours", "mon-fri 08:00-12:00")
        await page.get_by_role("button", name="Add practitioner").click()
        await expect(page.locator(".error")).to_contain_text("not a Kenyan mobile number")
        await expect(page.locator("#name")).to_have_value(HOSTILE_NAME)  # kept, as text
        async with runtime.uow() as uow:
            assert await uow.session.scalar(select(func.count(Therapist.id))) == 0

        await page.fill("#phone", "0712 345 678")
        await page.get_by_role("button", name="Add practitioner").click()
        await expect(page.locator(".notice")).to_contain_text("was added. Telegram link code:")
        row = page.locator("tbody tr", has_text="neema@example.org")
        await expect(row).to_contain_text(HOSTILE_NAME)  # shown as text, never as markup
        await expect(row).to_contain_text("********5678")
        await expect(row).to_contain_text("active")
        await expect(row.locator("textarea[name=hours]")).to_have_value(
            "mon 08:00-12:00; tue 08:00-12:00; wed 08:00-12:00; thu 08:00-12:00; fri 08:00-12:00"
        )
        assert "254712345678" not in await page.content()
        assert await page.evaluate("window.__xss") is None
        assert [t.name for t in await bookable_therapists(runtime)] == [HOSTILE_NAME]

        await row.get_by_role("button", name="Deactivate").click()
        await expect(page.locator(".notice")).to_contain_text("is no longer offered to clients")
        assert await bookable_therapists(runtime) == []


# Feature: mpesa-payment-integration, Property 49: deletion anonymises
async def test_an_admin_finds_a_client_and_forgets_them_after_confirming(runtime: Runtime) -> None:
    await _create_the_admin(runtime)
    async with runtime.uow() as uow:
        client = await make_client(
            uow.session, name=HOSTILE_NAME, phone="254712349876", email="a@example.org"
        )
        booking = await make_booking(uow.session, client=client, status=BookingStatus.CONFIRMED)
        attempt = await make_attempt(
            uow.session, booking, status=PaymentStatus.PAID, phone="254712349876", mpesa_receipt="QKM0FXE6RK",
            paid_amount_kes=booking.price_kes, paid_phone="254712349876", transaction_time=utcnow(),
        )
        await uow.commit()
    async with serving_admin_site(runtime) as base_url, browser_page() as page:
        await browser_sign_in(page, base_url)
        await page.get_by_role("link", name="Clients", exact=True).click()
        await page.fill("#q", "9876")
        await page.get_by_role("button", name="Search").click()
        await page.get_by_role("link", name=HOSTILE_NAME).click()
        await expect(page).to_have_url(f"{base_url}/admin/clients/{client.id}")
        await expect(page.locator("main")).to_contain_text("QKM0FXE6RK")
        await expect(page.locator("main")).to_contain_text("********9876")
        assert await page.evaluate("window.__xss") is None

        # Without ticking the box the browser does not send the form; nothing changes.
        await page.get_by_role("button", name="Forget this client").click()
        await expect(page).to_have_url(f"{base_url}/admin/clients/{client.id}")
        async with runtime.uow() as uow:
            assert (await uow.session.get_one(Client, client.id)).name == HOSTILE_NAME

        await page.get_by_label("I understand, forget this client").check()
        await page.get_by_role("button", name="Forget this client").click()
        await expect(page.locator(".notice")).to_contain_text(f"Client {client.id} was forgotten")
        await expect(page.locator("h1")).to_have_text(f"Client {client.id} (forgotten)")
        await expect(page.locator("main")).to_contain_text("QKM0FXE6RK")
        await expect(page.get_by_role("button", name="Forget this client")).to_have_count(0)
        async with runtime.uow() as uow:
            gone = await uow.session.get_one(Client, client.id)
            assert gone.anonymised and (gone.name, gone.phone, gone.email) == (None, None, None)
            kept = await uow.session.get_one(PaymentAttempt, attempt.id)
            assert (kept.mpesa_receipt, kept.paid_amount_kes) == ("QKM0FXE6RK", booking.price_kes)
