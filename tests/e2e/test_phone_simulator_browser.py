"""The phone simulator page (/sim/) in a real browser: book, approve, pay on the M-Pesa card, read the mail.

The whole application runs in-process in local mode (stand-ins, the real bot polling the
Telegram stand-in, engine, outbox, database), as in test_local_mode_browser.py; Debian's Chromium,
driven by Playwright, is the person holding both phones. Screenshots go to docs/screenshots/ when
UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiohttp import web

from core.runtime import Runtime, build_runtime
from smiling_steps.app import MAIL_CAPTURE, create_app
from tests.conftest import make_settings
from tests.e2e.test_local_mode_browser import CHROMIUM, MONDAY_MORNING, PRACTITIONER_ID, WAIT_MS
from tests.factories import make_session_type, make_therapist
from tests.integration.test_health import free_port, wait_healthy
from tests.support.payments import Clock

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium (apt-get install chromium)"
)
playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[dev]' (playwright)")
expect = playwright_api.expect
expect.set_options(timeout=WAIT_MS)
Page = playwright_api.Page
Locator = playwright_api.Locator
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PIN = "4826"
HOSTILE_NAME = '<img src=x onerror="window.__xss=1"><i>W</i>'  # within Telegram's 64 characters


@asynccontextmanager
async def local_app(
    database_url: str, therapist_name: str = "Dr. Amani Wanjiku"
) -> AsyncIterator[tuple[str, int]]:
    """The whole application in local mode; yields its URL and the captured-mail SMTP port."""
    runtime: Runtime = build_runtime(
        make_settings(database_url, PORT=str(free_port())), clock=Clock(start=MONDAY_MORNING)
    )
    app = create_app(runtime.settings, runtime)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", runtime.settings.port).start()
        base_url = f"http://127.0.0.1:{runtime.settings.port}"
        async with runtime.uow() as uow:
            await make_therapist(
                uow.session, name=therapist_name, telegram_user_id=PRACTITIONER_ID, telegram_link_code=None
            )
            await make_session_type(uow.session, name="Individual", minutes=50, price_kes=2500)
            await uow.commit()
        assert (await wait_healthy(base_url)).status_code == 200
        yield base_url, app[MAIL_CAPTURE].port
    finally:
        await runner.cleanup()
        await runtime.close()


@asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1100})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            await browser.close()


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local mode keeps its generated secret in the working directory: use a temporary one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def client(page: Page) -> Locator:
    return page.locator("#client-phone")


def practitioner(page: Page) -> Locator:
    return page.locator("#practitioner-phone")


def last_bot_message(phone: Locator) -> Locator:
    return phone.locator(".msg.bot").last


async def press(phone: Locator, label: str) -> None:
    """Press the inline button ``label`` on the newest bot message offering it."""
    await phone.locator(".msg.bot button.inline", has_text=label).last.click()


async def send(phone: Locator, text: str) -> None:
    await phone.locator(".chat-text").fill(text)
    await phone.locator(".send").click()


async def send_sms(phone: Locator, text: str) -> None:
    await phone.locator(".sms-text").fill(text)
    await phone.locator(".sms-send").click()


async def open_simulator(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/sim/")
    await expect(page.locator("#live")).to_contain_text("live")
    await expect(client(page).locator(".chat-title")).to_contain_text("id 1001")
    await expect(practitioner(page).locator(".chat-title")).to_contain_text(f"id {PRACTITIONER_ID}")


async def book(phone: Locator, therapist: str = "Dr. Amani Wanjiku", email: str | None = None) -> None:
    """/book → practitioner → session type → first day → first time → e-mail (or Skip) → Confirm."""
    await send(phone, "/book")
    await expect(last_bot_message(phone)).to_contain_text("Who would you like to see?")
    await press(phone, therapist)
    await expect(last_bot_message(phone)).to_contain_text("Which kind of session")
    await press(phone, "Individual · 50 min · KES 2,500")
    await expect(last_bot_message(phone)).to_contain_text("Pick a day")
    await last_bot_message(phone).locator("button.inline").first.click()
    await expect(last_bot_message(phone)).to_contain_text("Pick a start time")
    await last_bot_message(phone).locator("button.inline").first.click()
    await expect(last_bot_message(phone)).to_contain_text("by e-mail")
    if email:
        await send(phone, email)
    else:
        await press(phone, "Skip")
    await expect(last_bot_message(phone)).to_contain_text("Please check your request")
    await press(phone, "Confirm")
    await expect(phone.locator(".msg.bot", has_text="Request sent")).to_have_count(1)


async def approve(page: Page) -> None:
    request = practitioner(page).locator(".msg.bot", has_text="New booking request").last
    await request.locator("button.inline", has_text="Approve").click()
    await expect(client(page).locator(".msg.bot", has_text="approved")).not_to_have_count(0)


async def pay_on_the_card(page: Page, choice: str = "Pay") -> None:
    card = client(page).locator(".mpesa")
    await expect(card).to_be_visible()
    await expect(card).to_contain_text("Pay KES 2,500 to SMILING STEPS, account")
    await expect(card).to_contain_text("Enter M-PESA PIN")
    await card.locator(".mpesa-pin").fill(PIN)
    await card.get_by_role("button", name=choice, exact=True).click()
    await expect(card).to_be_hidden()


async def share_number(page: Page) -> None:
    await press(client(page), "Pay with M-Pesa")
    await client(page).locator("button.reply", has_text="Share my phone number").click()


async def screenshot(page: Page, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


# Feature: mpesa-payment-integration, Property 48: PIN never handled
async def test_book_approve_and_pay_on_one_page_then_read_the_receipt_and_the_e_mail(
    database_url: str, in_tmp_cwd: Path
):
    async with local_app(database_url) as (base_url, _smtp), browser_page() as page:
        sent: list[tuple[str, str]] = []
        page.on("request", lambda request: sent.append((request.url, request.post_data or "")))
        await open_simulator(page, base_url)
        await book(client(page), email="wanjiru@example.org")
        await approve(page)
        await share_number(page)
        card = client(page).locator(".mpesa")
        await expect(card).to_be_visible()
        await screenshot(page, "phone-simulator-mpesa-prompt.png")
        await card.locator(".mpesa-pin").fill("12")  # checked on the page: nothing is sent
        await card.get_by_role("button", name="Pay", exact=True).click()
        await expect(card.locator(".mpesa-error")).to_have_text("Enter a 4-digit PIN (any 4 digits).")
        await expect(card).to_be_visible()
        await pay_on_the_card(page)
        await expect(client(page).locator(".msg.bot", has_text="Payment received")).not_to_have_count(0)

        mail_list = page.locator("#mail-list")
        await expect(mail_list.locator("button")).not_to_have_count(0)
        await expect(page.locator("#mail-text")).not_to_have_text("")
        assert await page.locator("#mail-html").get_attribute("sandbox") == ""
        await expect(page.locator("#daraja-log tbody")).to_contain_text("STK Push")
        await expect(page.locator("#daraja-log tbody")).to_contain_text("Callback")
        await expect(page.locator("#daraja-log tbody")).to_contain_text("0 The service request is processed")
        await screenshot(page, "phone-simulator.png")

        decisions = [body for url, body in sent if "/phone/api/prompts/" in url]
        assert [json.loads(body) for body in decisions] == [{"choice": "pay"}]
        assert not [url for url, body in sent if PIN in body or PIN in url.split("?")[-1]]


async def test_cancel_on_the_card_brings_a_failure_message_then_retry_and_pay(
    database_url: str, in_tmp_cwd: Path
):
    async with local_app(database_url) as (base_url, _smtp), browser_page() as page:
        await open_simulator(page, base_url)
        await page.fill("#extra-number", "0711 000 222")  # a relative's handset, on the same page
        await page.get_by_role("button", name="Add handset").click()
        await expect(page.locator("#live")).to_contain_text("M-Pesa prompts for 0708374149, 0711000222")
        await book(client(page))
        await approve(page)
        await share_number(page)
        await pay_on_the_card(page, "Cancel")
        failure = client(page).locator(".msg.bot", has_text="Retry payment")
        await expect(failure).not_to_have_count(0)
        await failure.last.locator("button.inline", has_text="Retry payment").click()
        await pay_on_the_card(page)
        await expect(client(page).locator(".msg.bot", has_text="Payment received")).not_to_have_count(0)


async def test_a_booking_typed_into_the_sms_thread(database_url: str, in_tmp_cwd: Path):
    async with local_app(database_url) as (base_url, _smtp), browser_page() as page:
        await open_simulator(page, base_url)
        phone = client(page)
        await phone.get_by_role("tab", name="SMS").click()
        thread = phone.locator(".sms-messages")
        for text, answer in (
            ("BOOK", "1 Dr. Amani Wanjiku"),
            ("1", "Individual"),
            ("1", "Pick a day"),
            ("1", "Pick a start time"),
            ("1", "e-mail"),
            ("1", "Confirm?"),
        ):
            count = await thread.locator(".msg.in").count()
            await send_sms(phone, text)
            await expect(thread.locator(".msg.in")).to_have_count(count + 1)
            await expect(thread.locator(".msg.in").last).to_contain_text(answer)
        await send_sms(phone, "1")
        await expect(thread.locator(".msg.in").last).to_contain_text(re.compile(r"ref|Request", re.I))
        await expect(practitioner(page).locator(".msg.bot", has_text="New booking request")).to_have_count(1)
        await screenshot(page, "phone-simulator-sms.png")

        await practitioner(page).locator(".msg.bot button.inline", has_text="Approve").click()
        await expect(thread.locator(".msg.in").last).to_contain_text("PAY")
        await send_sms(phone, "PAY")
        await expect(thread.locator(".msg.in").last).to_contain_text("[TEST MODE]")
        await send_sms(phone, "1")  # the number this SMS came from
        await pay_on_the_card(page)
        await expect(thread.locator(".msg.in", has_text="KES 2,500")).not_to_have_count(0)
        await expect(thread.locator(".msg.in").last).to_contain_text(
            re.compile(r"paid|received|confirmed", re.I)
        )


async def test_markup_in_a_name_an_sms_and_an_e_mail_subject_is_shown_as_text_and_never_runs(
    database_url: str, in_tmp_cwd: Path
):
    async with local_app(database_url) as (base_url, smtp_port), browser_page() as page:
        await open_simulator(page, base_url)
        phone = client(page)
        await phone.get_by_role("button", name="Otieno · 0722000118").click()  # personas: one click
        await expect(phone.locator(".chat-title")).to_contain_text("Otieno (id 1002)")
        await expect(page.locator("#live")).to_contain_text("M-Pesa prompts for 0722000118")
        await phone.get_by_role("button", name="Custom number…").click()
        await page.fill("#custom-name", HOSTILE_NAME)
        await page.fill("#custom-number", "0708 374 159")
        await page.click("#custom-form button[type=submit]")
        await expect(phone.locator(".chat-title")).to_contain_text(HOSTILE_NAME)
        await book(phone)
        request = practitioner(page).locator(".msg.bot", has_text="New booking request")
        await expect(request).to_contain_text(HOSTILE_NAME)

        await phone.get_by_role("tab", name="SMS").click()
        hostile_sms = "<img src=x onerror=window.__xss=4> <b>hi</b>"
        await send_sms(phone, hostile_sms)
        await expect(phone.locator(".sms-messages .msg.out").last).to_have_text(
            re.compile(re.escape(hostile_sms))
        )

        subject = '<img src=x onerror="window.__xss=5">Receipt<script>window.__xss=6</script>'
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "sim@example.org", "x@example.org", subject
        message.set_content("plain <script>window.__xss=7</script>")
        message.add_alternative(
            '<p>hi</p><script>parent.__xss=8</script><img src=x onerror="parent.__xss=9">', subtype="html"
        )
        await asyncio.to_thread(_send, smtp_port, message)
        await expect(page.locator("#mail-subject")).to_have_text(subject)
        await expect(page.locator("#mail-text")).to_contain_text("<script>window.__xss=7</script>")
        await expect(page.frame_locator("#mail-html").locator("p")).to_have_text("hi")

        for panel in ("#client-phone", "#practitioner-phone", "#mailbox", "#daraja"):
            assert await page.locator(f"{panel} img, {panel} script").count() == 0, panel
        assert await page.evaluate("typeof window.__xss") == "undefined"


def _send(port: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.send_message(message)
