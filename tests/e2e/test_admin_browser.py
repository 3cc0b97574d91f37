"""The admin site in a real browser (Playwright driving Debian's Chromium): sign in, read the dashboard.

The screenshot step is part of the test: it always takes docs/screenshots/dashboard.png's picture
(into the test's temporary directory) and, with UPDATE_SCREENSHOTS=1, writes it to docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from core.runtime import build_runtime
from core.services.ops.admins import create_admin
from tests.conftest import make_settings
from tests.integration.test_admin_dashboard import NOW, seed
from tests.support.admin import PASSWORD, USERNAME, browser_sign_in, serving_admin_site
from tests.support.payments import Clock

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium (apt-get install chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]' (playwright)")
expect = playwright_api.expect
expect.set_options(timeout=10_000)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@asynccontextmanager
async def browser_page(width: int = 1280, height: int = 900) -> AsyncIterator[playwright_api.Page]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            await browser.close()


def keep_screenshot(taken: Path, name: str) -> None:
    assert taken.stat().st_size > 10_000, "the screenshot is suspiciously small"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(taken, SCREENSHOTS / name)


async def test_an_admin_signs_in_and_reads_the_dashboard(database_url: str, tmp_path: Path) -> None:
    runtime = build_runtime(make_settings(database_url), clock=Clock(start=NOW))
    try:
        await seed(runtime)
        await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
        async with serving_admin_site(runtime) as base_url, browser_page() as page:
            violations: list[str] = []
            page.on("console", lambda msg: violations.append(msg.text) if "Content Security" in msg.text
                    else None)

            await page.goto(f"{base_url}/admin/transactions")  # not signed in: the login page
            await expect(page).to_have_url(f"{base_url}/admin/login?next=%2Fadmin%2Ftransactions")
            await page.fill("input[name=username]", USERNAME)
            await page.fill("input[name=password]", "not the password")
            await page.click("button[type=submit]")
            await expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")

            await browser_sign_in(page, base_url)
            await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
            today = page.locator("#period-1")
            await expect(today.locator(".revenue")).to_have_text("KES 8,000")
            await expect(today.locator(".success")).to_contain_text("60.0%")
            await expect(page.locator("#count-review")).to_have_text("1")
            chart = page.locator("img.chart")
            assert await chart.evaluate("img => img.complete && img.naturalWidth > 0")
            # the stylesheet applied (served by the admin site itself, no CDN)
            assert await page.locator("nav ul").evaluate("el => getComputedStyle(el).display") == "flex"
            await expect(page.get_by_role("link", name="Transactions")).to_be_visible()

            taken = tmp_path / "dashboard.png"
            await page.screenshot(path=str(taken), full_page=True)
            keep_screenshot(taken, "dashboard.png")

            await page.get_by_role("button", name="Log out").click()
            await expect(page).to_have_url(f"{base_url}/admin/login")
            await page.goto(f"{base_url}/admin/")
            await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
            assert violations == []
    finally:
        await runtime.close()


async def test_the_dashboard_fits_a_phone_screen(database_url: str) -> None:
    runtime = build_runtime(make_settings(database_url), clock=Clock(start=NOW))
    try:
        await seed(runtime)
        await create_admin(runtime.uow(), username=USERNAME, password=PASSWORD)
        async with serving_admin_site(runtime) as base_url, browser_page(390, 844) as page:
            await browser_sign_in(page, base_url)
            await expect(page.locator("#period-30 .revenue")).to_have_text("KES 13,500")
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    finally:
        await runtime.close()
