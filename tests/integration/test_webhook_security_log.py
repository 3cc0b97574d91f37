"""Garbage callbacks cannot flood the log (issue 9, defect 8).

The three webhooks run on one aiohttp app whose security log has a driven clock; 500 callbacks
with unknown secrets, 100 SMS callbacks with a wrong path secret and 100 Telegram posts with a
forged secret header are sent over HTTP. Per kind, the first few are logged in full with the
source address, then one summary counts the rest; no line holds a secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web

from core.config import Settings, ensure_secret_key
from core.runtime import Runtime
from core.services.payments.intake import CallbackIntake
from tests.conftest import make_settings
from tests.support.telegram import serving
from webhooks.mpesa import setup_mpesa_callbacks
from webhooks.security_log import SECURITY_LOG, SECURITY_LOGGER, SecurityLog
from webhooks.sms import setup_sms_routes
from webhooks.telegram import SECRET_HEADER, setup_telegram_webhook

AT_SECRET = "the-real-at-secret-123"
TG_SECRET = "the-real-telegram-secret-123"
BURST = 5


class DrivenClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def webhooks_app(
    runtime: Runtime, clock: DrivenClock, settings: Settings | None = None
) -> AsyncIterator[tuple[str, SecurityLog]]:
    app = web.Application()
    security = SecurityLog(SECURITY_LOGGER, burst=BURST, interval_s=60, clock=clock)
    app[SECURITY_LOG] = security
    intake = CallbackIntake(runtime, ensure_secret_key(runtime.settings))
    setup_mpesa_callbacks(app, intake, settings or runtime.settings)
    setup_sms_routes(app, runtime, None, AT_SECRET)
    setup_telegram_webhook(app, TG_SECRET)
    try:
        async with serving(app) as base_url:
            yield base_url, security
    finally:
        await intake.close()


async def _send_all(base_url: str, requests: list[tuple[str, dict[str, str], bytes]]) -> list[int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        statuses: list[int] = []
        for start in range(0, len(requests), 50):
            batch = requests[start : start + 50]
            answers = await asyncio.gather(
                *[http.post(path, headers=headers, content=body) for path, headers, body in batch]
            )
            statuses += [a.status_code for a in answers]
        return statuses


async def test_700_garbage_callbacks_make_a_bounded_number_of_lines_with_exact_counts(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER.name)
    clock = DrivenClock()
    json_type = {"Content-Type": "application/json"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    garbage = (
        [(f"/hooks/lnm/forged-secret-{n}", json_type, b'{"Body": {}}') for n in range(500)]
        + [(f"/hooks/sms/wrong-at-secret-{n}/inbound", form, b"from=%2B254711082300&id=x&text=HI")
           for n in range(100)]
        + [("/hooks/telegram", {**json_type, SECRET_HEADER: f"forged-{n}"}, b'{"update_id": 1}')
           for n in range(100)]
    )
    async with webhooks_app(runtime, clock) as (base_url, security):
        statuses = await _send_all(base_url, garbage)
        clock.now += 61  # the interval is over: its summaries are due
        security.flush()
    assert statuses == [404] * 600 + [403] * 100

    lines = [r for r in caplog.records if r.name == SECURITY_LOGGER.name]
    by_event: dict[str, list[logging.LogRecord]] = {}
    for record in lines:
        by_event.setdefault(record.event, []).append(record)  # type: ignore[attr-defined]
    assert set(by_event) == {"unknown_callback_secret", "unknown_sms_secret", "telegram_secret_refused"}
    for event, sent in (("unknown_callback_secret", 500), ("unknown_sms_secret", 100),
                        ("telegram_secret_refused", 100)):
        full = [r for r in by_event[event] if not getattr(r, "summary", False)]
        summaries = [r for r in by_event[event] if getattr(r, "summary", False)]
        assert len(full) == BURST and all(r.source == "127.0.0.1" for r in full)  # type: ignore[attr-defined]
        assert [s.suppressed for s in summaries] == [sent - BURST]  # type: ignore[attr-defined]
        assert summaries[0].sources == {"127.0.0.1": sent - BURST}  # type: ignore[attr-defined]
    assert len(lines) == 3 * (BURST + 1)

    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in lines)
    assert "forged-secret" not in text and "wrong-at-secret" not in text and "forged-" not in text
    assert AT_SECRET not in text and TG_SECRET not in text


@pytest.mark.parametrize(("trusted", "logged"), [("127.0.0.1/32", "203.0.113.7"), ("", "127.0.0.1")])
async def test_the_logged_source_is_the_forwarded_address_only_behind_a_trusted_proxy(
    runtime: Runtime, database_url: str, caplog: pytest.LogCaptureFixture, trusted: str, logged: str
) -> None:
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER.name)
    settings = make_settings(database_url, MPESA_TRUSTED_PROXIES=trusted) if trusted else runtime.settings
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "Content-Type": "application/json"}
    async with webhooks_app(runtime, DrivenClock(), settings) as (base_url, _security):
        statuses = await _send_all(base_url, [
            ("/hooks/lnm/forged", forwarded, b"{}"),
            ("/hooks/sms/wrong-secret/inbound", forwarded, b"id=1"),
            ("/hooks/telegram", {**forwarded, SECRET_HEADER: "forged"}, b"{}"),
        ])
    assert statuses == [404, 404, 403]
    lines = [r for r in caplog.records if r.name == SECURITY_LOGGER.name]
    assert [r.source for r in lines] == [logged] * 3  # type: ignore[attr-defined]


async def test_a_callback_from_outside_the_allow_list_is_refused_and_logged_with_its_address(
    runtime: Runtime, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SECURITY_LOGGER.name)
    settings = make_settings(
        database_url, MPESA_CALLBACK_ALLOWED_IPS="196.201.214.200", MPESA_CALLBACK_IP_MODE="enforce",
        MPESA_TRUSTED_PROXIES="127.0.0.1/32",
    )
    json_type = {"Content-Type": "application/json"}
    async with webhooks_app(runtime, DrivenClock(), settings) as (base_url, _security):
        statuses = await _send_all(base_url, [
            ("/hooks/lnm/some-secret", {**json_type, "X-Forwarded-For": "203.0.113.9"}, b"{}"),
            ("/hooks/lnm/some-secret", {**json_type, "X-Forwarded-For": "196.201.214.200"}, b"{}"),
        ])
    assert statuses == [403, 404]  # Safaricom's address passes the list, then meets the secret check
    lines = [(r.event, r.source) for r in caplog.records if r.name == SECURITY_LOGGER.name]  # type: ignore[attr-defined]
    assert lines == [
        ("callback_address_refused", "203.0.113.9"),
        ("unknown_callback_secret", "196.201.214.200"),
    ]
