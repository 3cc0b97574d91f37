"""The settings page: M-Pesa mode and credentials per mode, saved encrypted, only after the
password again, refused whole when wrong; the Daraja connectivity test (real simulator on
127.0.0.1); a saved credential used by the next payment of the running app (SQLite, PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from sqlalchemy import select, text

from core.db.models import AuditEntry, Setting
from core.domain.states import PaymentStatus
from core.mpesa import DarajaClient
from core.runtime import build_runtime
from core.services.ops.admins import create_admin
from core.services.settings.crypto import SettingsCipher
from core.services.settings.gateway import ConfiguredDaraja
from core.services.settings.mpesa import MpesaConfig, MpesaSettings
from tests.conftest import make_settings
from tests.support.admin import PASSWORD, TEST_SECRET_KEY, AdminSite, admin_site
from tests.support.daraja import RunningSimulator, closed_port, running_simulator
from tests.support.payments import Clock, payment_stack

SANDBOX = {
    "environment": "sandbox",
    "sandbox_consumer_key": "sandbox-key-AAAA1111",
    "sandbox_consumer_secret": "sandbox-secret-BBBB2222",
}
PRODUCTION = {
    "environment": "production",
    "production_consumer_key": "live-key-CCCC3333",
    "production_consumer_secret": "live-secret-DDDD4444",
    "production_short_code": "4123456",
    "production_passkey": "live-passkey-EEEE5555",
    "production_callback_base_url": "https://pay.example.org",
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def local_daraja_client(config: MpesaConfig) -> DarajaClient:
    return DarajaClient(
        base_url=config.base_url,
        short_code=config.short_code or "",
        passkey=config.passkey or "",
        consumer_key=config.consumer_key or "",
        consumer_secret=config.consumer_secret or "",
        retry_base_delay=0.01,
        timeout=5.0,
        trust_env=False,  # stay on 127.0.0.1
    )


@asynccontextmanager
async def site_with_simulator(
    database_url: str, base_url: str | None = None, username: str = "amina"
) -> AsyncIterator[AdminSite]:
    """The admin site of a process whose Daraja is the simulator at ``base_url``."""
    runtime = build_runtime(
        make_settings(database_url, **({"MPESA_API_BASE_URL": base_url} if base_url else {}))
    )
    gateway = ConfiguredDaraja(MpesaSettings(runtime, SettingsCipher(TEST_SECRET_KEY)), local_daraja_client)
    try:
        async with admin_site(runtime, username=username, mpesa=gateway) as admin:
            yield admin
    finally:
        await gateway.aclose()
        await runtime.close()


async def flash_after(admin: AdminSite, response: aiohttp.ClientResponse) -> str:
    assert response.status == 303, await response.text()
    return await (await admin.get(response.headers["Location"])).text()


async def stored(admin: AdminSite) -> list[Setting]:
    async with admin.runtime.uow() as uow:
        return list((await uow.session.scalars(select(Setting))).all())


# Feature: mpesa-payment-integration, Property 45: Credentials Are Encrypted
async def test_saved_credentials_are_encrypted_at_rest_and_shown_as_last_four(admin: AdminSite) -> None:
    page = await flash_after(
        admin, await admin.post("/admin/settings/mpesa", {**SANDBOX, "current_password": PASSWORD})
    )
    assert "switched from simulator to sandbox" in page
    async with admin.runtime.uow() as uow:
        raw = dict((await uow.session.execute(text("SELECT key, value FROM settings"))).all())
    for name in ("consumer_key", "consumer_secret"):
        plain = SANDBOX[f"sandbox_{name}"]
        assert plain not in raw[f"mpesa.sandbox.{name}"] and plain[-4:] not in raw[f"mpesa.sandbox.{name}"]
        assert plain not in page and "…" + plain[-4:] in page  # never shown back in full
    assert raw["mpesa.environment"] == "sandbox"
    assert "TEST MODE · sandbox" in page and 'id="active-mode">sandbox' in page


# Feature: mpesa-payment-integration, Property 80: Mode Switching Requires Admin Authentication
@pytest.mark.parametrize("password", ["not my password", ""])
async def test_a_mode_switch_without_the_right_password_is_refused_and_changes_nothing(
    admin: AdminSite, password: str
) -> None:
    response = await admin.post("/admin/settings/mpesa", {**SANDBOX, "current_password": password})
    assert response.status == 400
    assert "password is not correct" in await response.text()
    assert await stored(admin) == []
    page = await (await admin.get("/admin/settings")).text()
    assert 'id="active-mode">simulator' in page


# Feature: mpesa-payment-integration, Property 80: Mode Switching Requires Admin Authentication
async def test_a_mode_switch_without_the_csrf_token_is_forbidden(admin: AdminSite) -> None:
    response = await admin.post(
        "/admin/settings/mpesa", {**SANDBOX, "current_password": PASSWORD}, csrf=False
    )
    assert response.status == 403
    assert await stored(admin) == []


# Feature: mpesa-payment-integration, Property 80: Mode Switching Requires Admin Authentication
async def test_switching_to_production_without_production_credentials_is_refused(admin: AdminSite) -> None:
    response = await admin.post(
        "/admin/settings/mpesa", {"environment": "production", "current_password": PASSWORD}
    )
    assert response.status == 400
    assert "Switching to production needs production credentials" in await response.text()
    assert await stored(admin) == []
    page = await flash_after(
        admin, await admin.post("/admin/settings/mpesa", {**PRODUCTION, "current_password": PASSWORD})
    )
    assert "switched from simulator to production" in page and "TEST MODE" not in page


async def test_settings_reads_and_changes_are_audited_without_the_values(admin: AdminSite) -> None:
    await admin.get("/admin/settings")
    await admin.post("/admin/settings/mpesa", {**PRODUCTION, "current_password": PASSWORD})
    async with admin.runtime.uow() as uow:
        trail = (await uow.session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
    reads = [e for e in trail if e.action == "admin.accessed" and e.details["what"] == "/admin/settings"]
    assert reads and reads[0].actor == f"admin:{admin.admin_id}"
    change = next(e for e in trail if e.action == "settings.mpesa_changed")
    assert change.details["from"] == "simulator" and change.details["to"] == "production"
    assert "production.passkey" in change.details["changed"]
    everything = " ".join(str(e.details) for e in trail)
    assert all(value not in everything for key, value in PRODUCTION.items() if key != "environment")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"environment": "live"}, "must be one of"),
        ({"environment": "simulator", "production_short_code": "12x"}, "5 to 7 digits"),
        ({"environment": "simulator", "sandbox_passkey": "two words"}, "without spaces"),
    ],
)
async def test_bad_settings_values_get_a_message_and_change_nothing(
    admin: AdminSite, form: dict[str, str], message: str
) -> None:
    response = await admin.post("/admin/settings/mpesa", {**form, "current_password": PASSWORD})
    assert response.status == 400 and message in await response.text()
    assert await stored(admin) == []


# Feature: mpesa-payment-integration, Property 41: Connectivity Test Verifies Credentials
async def test_the_connection_test_reports_ok_with_latency(database_url: str) -> None:
    async with (
        running_simulator(prefix=None) as sim,
        site_with_simulator(database_url, sim.base_url) as admin,
    ):
        page = await flash_after(admin, await admin.post("/admin/settings/test-connection", {}))
        assert re.search(r"Daraja connection \(simulator\): OK in \d+ ms", page)
        assert sim.requests("oauth")[-1]["status"] == 200


# Feature: mpesa-payment-integration, Property 41: Connectivity Test Verifies Credentials
async def test_the_connection_test_reports_wrong_credentials_and_an_unreachable_daraja(
    database_url: str,
) -> None:
    async with (
        running_simulator(prefix=None) as sim,
        site_with_simulator(database_url, sim.base_url) as admin,
    ):
        await admin.post(
            "/admin/settings/mpesa",
            {
                "environment": "simulator",
                "simulator_consumer_secret": "not-the-secret",
                "current_password": PASSWORD,
            },
        )
        page = await flash_after(admin, await admin.post("/admin/settings/test-connection", {}))
        assert "Daraja connection (simulator): FAILED after" in page and "OAuth refused" in page
        page = await flash_after(
            admin, await admin.post("/admin/settings/test-connection", {"environment": "sandbox"})
        )
        assert "Daraja connection (sandbox): FAILED: not configured: consumer key, consumer secret" in page
    async with site_with_simulator(database_url, f"http://127.0.0.1:{closed_port()}", "second") as admin:
        page = await flash_after(admin, await admin.post("/admin/settings/test-connection", {}))
        assert "FAILED after" in page and "OAuth request failed" in page
        async with admin.runtime.uow() as uow:
            checks = (
                await uow.session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "settings.connectivity_tested")
                )
            ).all()
        assert [c.details["ok"] for c in checks] == [False, False, False]


async def _signed_in(http: aiohttp.ClientSession, base_url: str, username: str, password: str) -> None:
    login = await (await http.get(f"{base_url}/admin/login")).text()
    token = _CSRF.search(login)
    assert token
    response = await http.post(
        f"{base_url}/admin/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        allow_redirects=False,
    )
    assert response.status == 303


async def _post_settings(http: aiohttp.ClientSession, base_url: str, form: dict[str, str]) -> str:
    page = await (await http.get(f"{base_url}/admin/settings")).text()
    token = _CSRF.search(page)
    assert token
    response = await http.post(
        f"{base_url}/admin/settings/mpesa", data={**form, "csrf_token": token.group(1)}
    )
    return await response.text()


# Feature: mpesa-payment-integration, Property 80: Mode Switching Requires Admin Authentication
async def test_credentials_saved_on_the_page_reach_daraja_with_the_next_payment(database_url: str) -> None:
    async with payment_stack(database_url) as stack:
        await create_admin(stack.runtime.uow(), username="ops", password=PASSWORD)
        sim: RunningSimulator = stack.sim
        sim.state.consumer_key, sim.state.consumer_secret = "rotated-key-0001", "rotated-secret-0002"
        sim.state.short_code, sim.state.passkey = "600999", "rotated-passkey-0003"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _signed_in(http, stack.base_url, "ops", PASSWORD)
            page = await _post_settings(
                http,
                stack.base_url,
                {
                    "environment": "simulator",
                    "simulator_consumer_key": "rotated-key-0001",
                    "simulator_consumer_secret": "rotated-secret-0002",
                    "simulator_short_code": "600999",
                    "simulator_passkey": "rotated-passkey-0003",
                    "current_password": PASSWORD,
                },
            )
        assert "saved: simulator.consumer_key" in page
        booking = await stack.approved_booking()
        view = await stack.services.payments.initiate_payment(booking.id, booking.client_id, "0708374149")
        assert view.status in (PaymentStatus.AWAITING_CUSTOMER, PaymentStatus.PAID)  # callback may be in
        assert stack.pushes()[-1]["body"]["BusinessShortCode"] == "600999"
        await stack.wait_status(view.attempt_id, PaymentStatus.PAID)


# Feature: mpesa-payment-integration, Property 80: Mode Switching Requires Admin Authentication
async def test_five_wrong_passwords_lock_settings_changes_for_fifteen_minutes(database_url: str) -> None:
    clock = Clock()
    runtime = build_runtime(make_settings(database_url), clock=clock)
    try:
        async with admin_site(runtime) as admin:
            for _ in range(5):
                wrong = await admin.post("/admin/settings/mpesa", {**SANDBOX, "current_password": "guess"})
                assert wrong.status == 400
            right = await admin.post("/admin/settings/mpesa", {**SANDBOX, "current_password": PASSWORD})
            assert right.status == 400 and "Too many wrong passwords" in await right.text()
            assert await stored(admin) == []
            clock.advance(16 * 60)
            page = await flash_after(
                admin, await admin.post("/admin/settings/mpesa", {**SANDBOX, "current_password": PASSWORD})
            )
            assert "switched from simulator to sandbox" in page
    finally:
        await runtime.close()
