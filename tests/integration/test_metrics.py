"""``GET /metrics`` over real HTTP: counts by state in the Prometheus text format, nothing personal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiohttp import web
from sqlalchemy.ext.asyncio import async_sessionmaker

from core.db.engine import create_engine
from core.db.models import CallbackInbox
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime
from tests.factories import make_attempt, make_booking
from tests.integration.test_health import (  # noqa: F401  (fixtures used by name)
    CLOSED_PORT_DB,
    app_runtime,
    free_port,
    in_tmp_cwd,
    serving,
    wait_healthy,
)
from webhooks.metrics import setup_metrics


@asynccontextmanager
async def metrics_only(runtime: Runtime) -> AsyncIterator[str]:
    """Just the /metrics route on 127.0.0.1 (no bot, no workers)."""
    app = web.Application()
    setup_metrics(app, runtime)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def get_metrics(base_url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{base_url}/metrics")


def samples(body: str) -> dict[str, float]:
    """``name{labels}`` → value for every sample line (comments skipped)."""
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


async def test_metrics_count_payments_bookings_and_unsettled_callbacks_by_state(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        paid = await make_booking(uow.session, status=BookingStatus.CONFIRMED)
        await make_attempt(uow.session, paid, status=PaymentStatus.PAID, mpesa_receipt="QKX1ABC234")
        waiting = await make_booking(uow.session)
        await make_attempt(uow.session, waiting, status=PaymentStatus.AWAITING_CUSTOMER)
        await make_booking(uow.session, status=BookingStatus.PENDING_APPROVAL)
        uow.session.add(CallbackInbox(provider="mpesa", provider_id="ws_CO_1:0", raw_body="{}"))
        await uow.commit()
    async with metrics_only(runtime) as base_url:
        response = await get_metrics(base_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = samples(response.text)
    assert values['smiling_steps_payment_attempts{status="PAID"}'] == 1
    assert values['smiling_steps_payment_attempts{status="AWAITING_CUSTOMER"}'] == 1
    assert values['smiling_steps_payment_attempts{status="NEEDS_REVIEW"}'] == 0  # every state is listed
    assert values['smiling_steps_bookings{status="CONFIRMED"}'] == 1
    assert values['smiling_steps_bookings{status="APPROVED"}'] == 1
    assert values['smiling_steps_bookings{status="PENDING_APPROVAL"}'] == 1
    assert values["smiling_steps_callbacks_unsettled"] == 1
    assert "# TYPE smiling_steps_outbox_messages gauge" in response.text


async def test_metrics_carry_no_phone_numbers_names_or_receipts(runtime: Runtime) -> None:
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, status=BookingStatus.CONFIRMED)
        await make_attempt(uow.session, booking, status=PaymentStatus.PAID, mpesa_receipt="QKX1ABC234")
        await uow.commit()
    async with metrics_only(runtime) as base_url:
        body = (await get_metrics(base_url)).text
    assert "254" not in body and "QKX1ABC234" not in body and "@" not in body


async def test_metrics_answer_503_without_a_traceback_when_the_database_is_down(runtime: Runtime) -> None:
    async with metrics_only(runtime) as base_url:
        healthy_sessions = runtime.sessions
        gone = create_engine(CLOSED_PORT_DB)  # the database host goes away
        runtime.sessions = async_sessionmaker(gone, expire_on_commit=False)
        try:
            response = await get_metrics(base_url)
        finally:
            await gone.dispose()
            runtime.sessions = healthy_sessions
    assert response.status_code == 503
    assert response.text == "database unavailable\n"


async def test_serve_exposes_metrics_with_its_components(app_runtime: Runtime) -> None:  # noqa: F811
    async with serving(app_runtime) as base_url:
        await wait_healthy(base_url)
        response = await get_metrics(base_url)
    assert response.status_code == 200
    assert samples(response.text)['smiling_steps_component_up{component="bot"}'] == 1
