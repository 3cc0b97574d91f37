"""A payment survives the server being killed: the real ``smiling-steps serve`` process, SIGKILLed.

The server runs as a subprocess on the test's database (SQLite file or PostgreSQL) and talks
to a Daraja simulator served by this test process at its root, like Safaricom. The payment
is started from this process with a PaymentService on the same database, SECRET_KEY and
PUBLIC_BASE_URL, so Daraja's callback is addressed to the server. The server is killed while
the prompt is on the phone; the customer pays while it is down (the callback is lost, or
never sent); on restart the watchdog picks the attempt up (Property 76), queries Daraja and
finishes the payment.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from core.db.models import AuditEntry, Booking, PaymentAttempt
from core.db.types import utcnow
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import Runtime, build_runtime
from core.services.audit import verify_chain
from core.services.payments.initiate import PaymentService
from tests.conftest import make_settings
from tests.factories import make_booking
from tests.support.daraja import RunningSimulator, closed_port, make_client, running_simulator

SCRIPT = shutil.which("smiling-steps", path=str(Path(sys.executable).parent)) or "smiling-steps"
SECRET_KEY = "x"
DEADLINE_S = 2
FINISH_WITHIN_S = 15.0


def server_env(database_url: str, port: int, daraja_url: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")}
    return {
        **keep,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "MPESA_API_BASE_URL": daraja_url,
        "MPESA_PAYMENT_DEADLINE_SECONDS": str(DEADLINE_S),
        "SECRET_KEY": SECRET_KEY,
    }


@contextmanager
def serve(env: dict[str, str], workdir: Path, log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``smiling-steps serve`` in the background; stopped (SIGTERM, then SIGKILL) on exit."""
    with open(workdir / log_name, "wb") as log:
        process = subprocess.Popen([SCRIPT, "serve"], env=env, cwd=workdir, stdout=log, stderr=log)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def wait_listening(
    base_url: str, process: subprocess.Popen[bytes], workdir: Path, log_name: str
) -> None:
    """Poll until the server answers HTTP (its start-up, migrations included, is then done)."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"serve exited with {process.returncode}: {(workdir / log_name).read_text()}"
                )
            try:
                await http.get(f"{base_url}/healthz")
                return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (workdir / log_name).read_text()
            await asyncio.sleep(0.05)


async def load(runtime: Runtime, attempt_id: int) -> tuple[PaymentAttempt, Booking]:
    async with runtime.uow() as uow:
        attempt = await uow.session.get_one(PaymentAttempt, attempt_id)
        return attempt, await uow.session.get_one(Booking, attempt.booking_id)


async def wait_for(predicate, within: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.05)


async def start_payment(runtime: Runtime, sim: RunningSimulator) -> tuple[int, str]:
    """An APPROVED booking and an STK Push whose prompt now waits on the phone."""
    async with runtime.uow() as uow:
        booking = await make_booking(uow.session, price_kes=1500)
        await uow.commit()
    await sim.control("/control/next-outcome", {"outcome": "hold"})
    client = make_client(sim.base_url)
    try:
        view = await PaymentService(runtime, client, SECRET_KEY).initiate_payment(
            booking.id, booking.client_id, "0708374149"
        )
    finally:
        await client.aclose()
    assert view.status == PaymentStatus.AWAITING_CUSTOMER and view.checkout_request_id
    return view.attempt_id, view.checkout_request_id


# Feature: mpesa-payment-integration, Property 76: System Restart Resumes Pending Payments
@pytest.mark.parametrize(
    "while_down",
    ["paid_and_the_callback_is_lost", "paid_without_a_callback"],
)
async def test_a_payment_in_flight_when_the_server_is_killed_is_finished_after_restart(
    database_url: str, tmp_path: Path, while_down: str
) -> None:
    async with running_simulator(prefix=None, callback_delay=0.05) as sim:
        port = closed_port()
        base_url = f"http://127.0.0.1:{port}"
        env = server_env(database_url, port, sim.base_url)
        settings = make_settings(
            database_url,
            PORT=str(port),
            PUBLIC_BASE_URL=base_url,
            MPESA_API_BASE_URL=sim.base_url,
            MPESA_PAYMENT_DEADLINE_SECONDS=str(DEADLINE_S),
            SECRET_KEY=SECRET_KEY,
        )
        runtime = build_runtime(settings)
        try:
            with serve(env, tmp_path, "first.log") as first:
                await wait_listening(base_url, first, tmp_path, "first.log")
                attempt_id, checkout = await start_payment(runtime, sim)
                assert sim.state.transactions[checkout].callback_url.startswith(f"{base_url}/hooks/lnm/")
                first.send_signal(signal.SIGKILL)  # a real crash: no shutdown code runs
                assert first.wait(timeout=10) == -signal.SIGKILL
            attempt, booking = await load(runtime, attempt_id)
            assert attempt.status == PaymentStatus.AWAITING_CUSTOMER
            assert booking.status == BookingStatus.APPROVED

            # The customer enters the PIN while we are down.
            outcome = "success" if while_down == "paid_and_the_callback_is_lost" else "no_callback"
            await sim.control("/control/resolve", {"CheckoutRequestID": checkout, "outcome": outcome})
            if outcome == "success":  # Daraja's one delivery fails (connection refused); no retry
                await sim.wait_for(lambda: any(c["error"] for c in sim.callbacks()), within=5)
            await wait_for(
                lambda: _past(attempt.deadline_at), within=DEADLINE_S + 2, what="the payment deadline"
            )

            with serve(env, tmp_path, "second.log") as second:
                restarted = time.monotonic()
                await wait_listening(base_url, second, tmp_path, "second.log")

                async def paid() -> bool:
                    return (await load(runtime, attempt_id))[0].status == PaymentStatus.PAID

                await wait_for(paid, within=FINISH_WITHIN_S, what="PAID after the restart")
                finished_in = time.monotonic() - restarted
            attempt, booking = await load(runtime, attempt_id)
            assert booking.status == BookingStatus.CONFIRMED and booking.meeting_url
            assert finished_in < FINISH_WITHIN_S
            assert len(sim.requests("stk_push")) == 1  # never pushed again
            assert any(q["status"] == 200 for q in sim.requests("stk_query"))
            async with runtime.uow() as uow:
                entries = (
                    await uow.session.scalars(
                        select(AuditEntry)
                        .where(AuditEntry.subject_type == "payment", AuditEntry.subject_id == str(attempt_id))
                        .order_by(AuditEntry.seq)
                    )
                ).all()
            steps = [(e.details["previous"], e.details["new"]) for e in entries if "new" in e.details]
            assert steps == [
                ("QUEUED", "AWAITING_CUSTOMER"),
                ("AWAITING_CUSTOMER", "UNCLEAR"),
                ("UNCLEAR", "PAID"),
            ]
            assert "query ResultCode 0" in entries[-1].details["reason"]
            assert (await verify_chain(runtime.uow())).ok
        finally:
            await runtime.close()


async def _past(moment) -> bool:  # type: ignore[no-untyped-def]
    return utcnow() > moment
