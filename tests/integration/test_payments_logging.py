"""What the service writes to its log during whole payments: no phone numbers, secrets or PINs.

Every record goes through the handler and formatter ``core.logging.configure_logging``
installs (JSON lines, PhoneMaskingFilter) at DEBUG, redirected into memory. The stack is
the whole application (callbacks, settlement, watchdog, outbox dispatcher with the SMS
and e-mail senders) and the Daraja simulator, all on 127.0.0.1.

The stand-ins for outside systems (``simulators.*``) also run in this process. Their own
log lines are theirs, as Safaricom's and Africa's Talking's logs are theirs: they are left
out of the check on the service's log.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from core.db.models import Client, Outbox, PaymentAttempt
from core.domain.states import PaymentStatus
from core.logging import configure_logging
from core.runtime import Runtime, build_runtime
from smiling_steps.app import SERVICES, Services, create_app
from tests.conftest import make_settings
from tests.factories import make_booking, make_client
from tests.support.daraja import RunningSimulator, closed_port, running_simulator

SECRET_KEY = "logging-test-secret-key-0123456789"
PAYER_SUCCESS = "0708374149"  # simulator: success (last digit 9)
PAYER_CANCEL = "0712345672"  # simulator: cancelled (last digit 2)
CLIENT_PHONE = "254798765430"  # where the client's SMS go
# A Kenyan mobile number in any spelling (2547…, 2541…, 07…, 01…, +254 …), and the payers'
# 9-digit subscriber numbers however they are embedded (e.g. inside a CheckoutRequestID).
RAW_PHONE = re.compile(r"(?<!\d)(?:\+?254|0)[17]\d{8}(?!\d)")
PIN_WORD = re.compile(r"(?<![a-z])(m?pin|pin_?code|pin_?number)(?![a-z])", re.IGNORECASE)


@contextmanager
def captured_log(level: str = "DEBUG") -> Iterator[io.StringIO]:
    """The service's own log configuration (JSON + phone masking) at ``level``, written to memory."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    noisy = ("httpx", "httpcore", "aiohttp.access", "apscheduler", "alembic")
    saved_noisy = {name: logging.getLogger(name).level for name in noisy}
    configure_logging(level)
    ours = [h for h in root.handlers if getattr(h, "_smiling_steps", False)]
    assert len(ours) == 1
    buffer = io.StringIO()
    ours[0].setStream(buffer)  # type: ignore[attr-defined]
    for handler in root.handlers:  # pytest's capture handlers would see records unformatted
        if handler is not ours[0]:
            root.removeHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(ours[0])
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        for name, level in saved_noisy.items():
            logging.getLogger(name).setLevel(level)


@asynccontextmanager
async def whole_app(database_url: str) -> AsyncIterator[tuple[Services, RunningSimulator, Runtime]]:
    """The application with its notification dispatcher, wired to the Daraja simulator."""
    async with running_simulator(prefix=None, callback_delay=0.05) as sim:
        port = closed_port()
        settings = make_settings(
            database_url,
            PORT=str(port),
            PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            MPESA_API_BASE_URL=sim.base_url,
            SECRET_KEY=SECRET_KEY,
        )
        runtime = build_runtime(settings)
        app = create_app(settings, runtime, with_bot=False, with_notifications=True)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield app[SERVICES], sim, runtime
        finally:
            await runner.cleanup()


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def find_leaks(text: str, forbidden: list[str]) -> list[str]:
    leaks = [m.group(0) for m in RAW_PHONE.finditer(text)]
    return leaks + [f for f in forbidden if f and f in text]


async def _pay(services: Services, sim: RunningSimulator, phone: str) -> tuple[int, str]:
    """Start a payment for a fresh booking; returns the attempt and its callback secret."""
    async with services.runtime.uow() as uow:
        # the same SMS client books again (one SMS client per number)
        client = await uow.session.scalar(select(Client).where(Client.phone == CLIENT_PHONE))
        client = client or await make_client(uow.session, phone=CLIENT_PHONE, email="client@example.org")
        booking = await make_booking(uow.session, client=client)
        await uow.commit()
    view = await services.payments.initiate_payment(booking.id, booking.client_id, phone)
    tx = sim.state.transactions[view.checkout_request_id]
    return view.attempt_id, tx.callback_url.rsplit("/", 1)[1]


async def _poll(check: Callable[[], Awaitable[bool]], what: str, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.02)


async def _wait_status(runtime: Runtime, attempt_id: int, status: str) -> None:
    async def reached() -> bool:
        async with runtime.uow() as uow:
            return (await uow.session.get_one(PaymentAttempt, attempt_id)).status == status

    await _poll(reached, f"attempt {attempt_id} {status}")


async def _wait_outbox_drained(runtime: Runtime) -> None:
    async def drained() -> bool:
        async with runtime.uow() as uow:
            rows = (await uow.session.scalars(select(Outbox))).all()
        return bool(rows) and all(r.status != "PENDING" for r in rows)

    await _poll(drained, "every message sent")


# Feature: mpesa-payment-integration, Property 47: Phone Numbers Masked in Logs
@pytest.mark.parametrize("level", ["INFO", "DEBUG"])  # LOG_LEVEL's default, and the most verbose
async def test_no_phone_number_secret_or_token_appears_in_the_log_of_whole_payments(
    database_url: str, level: str
) -> None:
    with captured_log(level) as buffer:
        async with whole_app(database_url) as (services, sim, runtime):
            paid_id, paid_secret = await _pay(services, sim, PAYER_SUCCESS)
            cancelled_id, cancelled_secret = await _pay(services, sim, PAYER_CANCEL)
            await _wait_status(runtime, paid_id, PaymentStatus.PAID)
            await _wait_status(runtime, cancelled_id, PaymentStatus.CANCELLED)
            # A forged and a malformed callback are logged too (security lines).
            async with httpx.AsyncClient(base_url=runtime.settings.base_url, trust_env=False) as http:
                assert (await http.post("/hooks/lnm/forged-secret-value", content=b"{}")).status_code == 404
                assert (await http.post(f"/hooks/lnm/{paid_secret}", content=b"not json")).status_code == 400
            await _wait_outbox_drained(runtime)
            tokens = list(sim.state.tokens)  # the OAuth bearer tokens Daraja issued us
            settings = runtime.settings

    ours = [r for r in records(buffer) if not r["logger"].startswith("simulators.")]
    messages = {r["message"] for r in ours}
    assert {"payment settled", "payment failed", "notification sent"} <= messages, messages
    forbidden = [
        paid_secret,
        cancelled_secret,
        SECRET_KEY,
        settings.daraja_passkey,
        settings.daraja_consumer_secret,
        *tokens,
        *(p[-9:] for p in (PAYER_SUCCESS, PAYER_CANCEL, CLIENT_PHONE)),  # subscriber numbers
    ]
    assert tokens
    leaks = [(r["logger"], r["message"], find_leaks(json.dumps(r), forbidden)) for r in ours]
    assert not [leak for leak in leaks if leak[2]], [leak for leak in leaks if leak[2]]
    assert any("4149" in json.dumps(r) for r in ours)  # masked numbers keep their last four digits


# Feature: mpesa-payment-integration, Property 48: No PIN Storage
async def test_no_pin_is_asked_for_stored_sent_or_logged(database_url: str) -> None:
    with captured_log() as buffer:
        async with whole_app(database_url) as (services, sim, runtime):
            attempt_id, _secret = await _pay(services, sim, PAYER_SUCCESS)
            await _wait_status(runtime, attempt_id, PaymentStatus.PAID)

            def columns(sync_conn: Any) -> list[str]:
                inspector = sa_inspect(sync_conn)
                return [
                    f"{table}.{column['name']}"
                    for table in inspector.get_table_names()
                    for column in inspector.get_columns(table)
                ]

            async with runtime.engine.connect() as conn:
                names = await conn.run_sync(columns)
            requests = sim.requests("stk_push") + sim.requests("stk_query")
    assert len(names) > 50  # the real schema was read
    assert not [n for n in names if PIN_WORD.search(n.split(".", 1)[1])], names
    fields = [key for entry in requests for key in (entry.get("body") or {})]
    assert "PhoneNumber" in fields and not [f for f in fields if PIN_WORD.search(f)], fields
    logged = [key for record in records(buffer) for key in record]
    assert "message" in logged and not [k for k in logged if PIN_WORD.search(k)]
