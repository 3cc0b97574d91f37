"""Local mode in a real browser: the /sim/ index and the Telegram chat page drive the whole app.

The application runs in-process in local mode (its stand-ins under /sim/, the real bot polling
the Telegram stand-in, the real engine, outbox and database); Debian's Chromium, driven by
Playwright, is the person at the keyboard.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from core.runtime import Runtime, build_runtime
from smiling_steps.app import create_app
from tests.conftest import make_settings
from tests.factories import make_session_type, make_therapist
from tests.integration.test_health import free_port, wait_healthy
from tests.support.payments import Clock

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium (apt-get install chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]' (playwright)")
expect = playwright_api.expect

# A Monday, 06:00 UTC = 09:00 in Nairobi: the offered days and times do not depend on when tests run.
MONDAY_MORNING = datetime(2030, 1, 7, 6, 0, tzinfo=UTC)
WAIT_MS = 10_000
expect.set_options(timeout=WAIT_MS)  # the bot answers through polling and the outbox: allow for a slow CI
PRACTITIONER_ID = 2001
HOSTILE_NAME = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@asynccontextmanager
async def local_app(database_url: str, therapist_name: str) -> AsyncIterator[str]:
    """The whole application in local mode on a free port, with one practitioner and one session type."""
    runtime: Runtime = build_runtime(
        make_settings(database_url, PORT=str(free_port())), clock=Clock(start=MONDAY_MORNING)
    )
    runner = web.AppRunner(create_app(runtime.settings, runtime))
    try:
        await runner.setup()  # migrates the database (local mode) and starts the bot
        site = web.TCPSite(runner, "127.0.0.1", runtime.settings.port)
        await site.start()
        base_url = f"http://127.0.0.1:{runtime.settings.port}"
        async with runtime.uow() as uow:
            await make_therapist(
                uow.session, name=therapist_name, telegram_user_id=PRACTITIONER_ID, telegram_link_code=None
            )
            await make_session_type(uow.session, name="Individual", minutes=50, price_kes=2500)
            await uow.commit()
        assert (await wait_healthy(base_url)).status_code == 200
        yield base_url
    finally:
        await runner.cleanup()
        await runtime.close()


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


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local mode keeps its generated secret in the working directory: use a temporary one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def last_bot_message(page: playwright_api.Page) -> playwright_api.Locator:
    return page.locator(".msg.bot").last


async def press(page: playwright_api.Page, label: str) -> None:
    """Press the inline button ``label`` on the newest bot message offering it."""
    await page.locator(".msg.bot button.inline", has_text=label).last.click()


async def open_chat_as(page: playwright_api.Page, user_id: int, name: str, phone: str = "") -> None:
    await page.fill("#user-id", str(user_id))
    await page.fill("#user-name", name)
    await page.fill("#user-phone", phone)
    await page.click("#open")
    await expect(page.locator("#chat-title")).to_contain_text(f"Telegram id {user_id}")


async def send(page: playwright_api.Page, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send")


async def book_in_the_browser(page: playwright_api.Page, therapist_label: str) -> None:
    """/book → practitioner → session type → first day → first time → Skip e-mail → Confirm."""
    await send(page, "/book")
    await expect(last_bot_message(page)).to_contain_text("Who would you like to see?")
    await press(page, therapist_label)
    await expect(last_bot_message(page)).to_contain_text("Which kind of session")
    await press(page, "Individual · 50 min · KES 2,500")
    await expect(last_bot_message(page)).to_contain_text("Pick a day")
    await last_bot_message(page).locator("button.inline").first.click()
    await expect(last_bot_message(page)).to_contain_text("Pick a start time")
    await last_bot_message(page).locator("button.inline").first.click()
    await expect(last_bot_message(page)).to_contain_text("by e-mail")
    await press(page, "Skip")
    await expect(last_bot_message(page)).to_contain_text("Please check your request")
    await press(page, "Confirm")
    await expect(page.locator(".msg.bot", has_text="Request sent")).to_have_count(1)


async def test_a_person_books_a_session_from_the_sim_index_through_the_browser_chat(
    database_url: str, in_tmp_cwd: Path
):
    async with local_app(database_url, "Dr. Amani Wanjiku") as base_url, browser_page() as page:
        await page.goto(f"{base_url}/sim/")  # the phone simulator, which links to the stand-ins
        await page.get_by_role("link", name="All stand-ins").click()
        await expect(page).to_have_url(f"{base_url}/sim/stand-ins")
        await expect(page.locator("h1")).to_have_text("Smiling Steps · local mode")
        stand_ins = page.locator("#stand-ins")
        for link in ("Daraja (M-Pesa) log", "Africa's Talking SMS", "Captured e-mail", "/healthz",
                     "/metrics"):
            await expect(stand_ins.get_by_role("link", name=link, exact=True)).to_be_visible()
        await stand_ins.get_by_role("link", name="Telegram chat", exact=True).click()
        await expect(page).to_have_url(f"{base_url}/sim/telegram/chat")

        await page.get_by_role("button", name="Wanjiru (1001)").click()
        await expect(page.locator("#chat-title")).to_contain_text("Wanjiru (Telegram id 1001)")
        await book_in_the_browser(page, "Dr. Amani Wanjiku")

        sent = page.locator(".msg.bot", has_text="Request sent")
        await expect(sent).to_contain_text(re.compile(r"Request sent \(ref \S+\)"))
        # each choice edited the same message: the edits replaced the text shown
        await expect(page.locator(".msg.bot", has_text="Pick a day")).to_have_count(0)


async def test_markup_in_a_name_is_shown_as_text_and_never_runs(database_url: str, in_tmp_cwd: Path):
    async with local_app(database_url, "Dr. Amani Wanjiku") as base_url, browser_page() as page:
        await page.goto(f"{base_url}/sim/telegram/chat")
        await open_chat_as(page, PRACTITIONER_ID, "Amani")
        await open_chat_as(page, 1002, HOSTILE_NAME, "254708374149")  # the client's Telegram name
        await send(page, "<b>bold?</b> <script>window.__xss=3</script>")
        await expect(page.locator(".msg.me").first.locator(".text")).to_have_text(
            "<b>bold?</b> <script>window.__xss=3</script>"
        )
        await book_in_the_browser(page, "Dr. Amani Wanjiku")

        # the practitioner's request card carries the client's name, from user input
        await page.select_option("#users", str(PRACTITIONER_ID))
        request = page.locator(".msg.bot", has_text="New booking request")
        await expect(request).to_contain_text(HOSTILE_NAME)
        await expect(request.locator("button.inline", has_text="Approve")).to_be_visible()
        assert await request.locator("img, script").count() == 0
        assert await page.locator("#messages img, #messages script").count() == 0
        assert await page.evaluate("typeof window.__xss") == "undefined"
