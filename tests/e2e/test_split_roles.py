"""Two real processes, ``serve --role web`` and ``serve --role worker``, on one database (SQLite file and
PostgreSQL): a client books on Telegram, the practitioner approves, the client pays, the receipt
arrives — and the worker is SIGKILLed while the M-Pesa prompt waits on the phone: a new worker
finishes the payment and edits the *original* progress message (the map is in the database).

Local mode: the web process serves the stand-ins (Telegram, Daraja, Africa's Talking) under /sim/;
the worker polls the Telegram stand-in and pushes to Daraja through the web process's
PUBLIC_BASE_URL, as the README's "Running several instances" describes. The chat is driven
through the stand-in's driver API with the demo's own steps (smiling_steps/demo).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from core.db.models import Booking, CallbackInbox, Outbox, PaymentAttempt, TelegramProgress
from core.domain.states import BookingStatus, PaymentStatus
from core.runtime import build_runtime
from core.services.payments.intake import PROVIDER as MPESA_INBOX
from smiling_steps.demo.scenarios import PRACTITIONER_CHAT_ID, RECEIPT
from smiling_steps.demo.service import Service
from smiling_steps.demo.stage import Stage
from smiling_steps.demo.telegram_steps import Person, approve, request_booking, start_payment
from smiling_steps.demo.transcript import Transcript
from tests.conftest import make_settings
from tests.support.serve import SCRIPT, free_port

SECRET_KEY = "split-roles-test-secret"
START_WITHIN_S = 45.0
CLIENT = Person(3_000_000_123, "client", "254711000120")
PRACTITIONER = Person(PRACTITIONER_CHAT_ID, "practitioner", "254712000111")


def role_env(database_url: str, port: int, web_url: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    return {**keep, "DATABASE_URL": database_url, "PORT": str(port), "PUBLIC_BASE_URL": web_url,
            "SECRET_KEY": SECRET_KEY, "LOG_LEVEL": "INFO"}


@contextmanager
def serve_role(role: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``smiling-steps serve --role ROLE``, healthy on its PORT; SIGTERM (then SIGKILL) afterwards."""
    with log.open("ab") as out:
        process = subprocess.Popen([SCRIPT, "serve", "--role", role], env=env, cwd=log.parent,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{env['PORT']}", process, log)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited with {process.returncode}: {log.read_text()[-3000:]}"
        try:
            response = httpx.get(f"{base_url}/healthz", timeout=2)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not healthy within {START_WITHIN_S} s: {log.read_text()[-3000:]}")


Rows = tuple[Booking, list[PaymentAttempt], list[TelegramProgress]]


async def _moments(database_url: str, attempt_id: int) -> tuple[datetime, datetime, datetime | None]:
    """When the callback was stored (web), the attempt settled (worker), the practitioner was told."""
    runtime = build_runtime(make_settings(database_url))
    try:
        async with runtime.uow() as uow:
            received = await uow.session.scalar(
                select(func.max(CallbackInbox.received_at)).where(CallbackInbox.provider == MPESA_INBOX)
            )
            attempt = await uow.session.get_one(PaymentAttempt, attempt_id)
            told = await uow.session.scalar(
                select(Outbox.sent_at).where(Outbox.template == "payment_received_therapist")
            )
            assert received is not None and attempt.settled_at is not None
            return received, attempt.settled_at, told
    finally:
        await runtime.close()


async def _db(database_url: str, reference: str) -> Rows:
    runtime = build_runtime(make_settings(database_url))
    try:
        async with runtime.uow() as uow:
            booking = (await uow.session.scalars(select(Booking).where(Booking.reference == reference))).one()
            attempts = list(await uow.session.scalars(
                select(PaymentAttempt).where(PaymentAttempt.booking_id == booking.id)
            ))
            progress = list(await uow.session.scalars(select(TelegramProgress)))
            return booking, attempts, progress
    finally:
        await runtime.close()


def _process(base_url: str) -> dict[str, object]:
    body = httpx.get(f"{base_url}/healthz", timeout=5).json()
    return dict(body["process"])


def _book_approve_and_start_paying(stage: Stage, service: Service) -> tuple[str, dict[str, object]]:
    """Through the chats (web: the stand-ins; worker: the bot): returns the reference and progress message."""
    service.add_chat_user(CLIENT.user_id, "Wanjiru", CLIENT.phone)
    stage.watch_chat(CLIENT.user_id, CLIENT.who)
    stage.watch_chat(PRACTITIONER.user_id, PRACTITIONER.who)
    _name, reference = request_booking(stage, CLIENT, "wanjiru@example.org")
    approve(stage, PRACTITIONER, reference)
    approved = f"Your booking is approved ({reference})"
    stage.wait("Pay button", lambda: stage.find(CLIENT.user_id, approved))
    service.next_outcome("hold")  # the prompt waits on the phone until resolved
    start_payment(stage, CLIENT)
    progress = stage.wait("the progress message", lambda: stage.find(CLIENT.user_id, "Check your phone"))
    return reference, progress


def _edited_to_paid(stage: Stage, message_id: object) -> dict[str, object] | None:
    return next((m for m in stage.messages[CLIENT.user_id]
                 if m["message_id"] == message_id and "Payment received" in (m.get("text") or "")), None)


# Feature: mpesa-payment-integration, Property 53: Callback Processing Time
# Feature: mpesa-payment-integration, Property 62: Confirmed Payment Sends In-App Notification Within 5 Seconds  # noqa: E501
# Feature: mpesa-payment-integration, Property 76: System Restart Resumes Pending Payments
@pytest.mark.timeout(150)
def test_web_and_worker_processes_book_approve_and_pay_and_a_new_worker_edits_the_original_message(
    database_url: str, tmp_path: Path
) -> None:
    web_port, worker_port = free_port(), free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    web_env = role_env(database_url, web_port, web_url)
    worker_env = role_env(database_url, worker_port, web_url)
    with serve_role("web", web_env, tmp_path / "web.log"):
        service = Service(web_url)
        stage = Stage(service, Transcript(io.StringIO()))
        with serve_role("worker", worker_env, tmp_path / "worker-1.log") as first_worker:
            assert _process(web_url)["role"] == "web"
            worker = _process(f"http://127.0.0.1:{worker_port}")
            assert worker["role"] == "worker"
            assert {"settlement", "outbox", "telegram-polling"} <= set(worker["runs"])  # type: ignore[call-overload]
            assert httpx.get(f"http://127.0.0.1:{worker_port}/admin/", timeout=5).status_code == 404

            reference, progress = _book_approve_and_start_paying(stage, service)
            _booking, [attempt], rows = asyncio.run(_db(database_url, reference))
            assert attempt.status == PaymentStatus.AWAITING_CUSTOMER and attempt.checkout_request_id
            assert [(r.attempt_id, r.message_id, r.phase) for r in rows] == [
                (attempt.id, progress["message_id"], "following")
            ]
            first_worker.send_signal(signal.SIGKILL)  # a crash: no lease is given back
            assert first_worker.wait(10) == -signal.SIGKILL

        with serve_role("worker", worker_env, tmp_path / "worker-2.log"):
            service._json("POST", "/sim/daraja/control/resolve",
                          {"CheckoutRequestID": attempt.checkout_request_id, "outcome": "success"})
            receipt = stage.wait("the receipt", lambda: stage.find(CLIENT.user_id, RECEIPT), within=30)
            edited = stage.wait("the original progress message edited to the result",
                                lambda: _edited_to_paid(stage, progress["message_id"]), within=30)
            paid_note = f"Booking paid ({reference})"
            stage.wait("the practitioner's note", lambda: stage.find(PRACTITIONER.user_id, paid_note))
            booking, [attempt], rows = asyncio.run(_db(database_url, reference))
            received, settled, told = asyncio.run(_moments(database_url, attempt.id))
    assert (settled - received).total_seconds() < 5  # Property 53, the callback taken by the web process
    assert told is not None and (told - settled).total_seconds() < 5  # Property 62, sent by the worker
    assert attempt.status == PaymentStatus.PAID and attempt.mpesa_receipt
    assert booking.status == BookingStatus.CONFIRMED
    assert attempt.mpesa_receipt in str(edited["text"]) and attempt.mpesa_receipt in str(receipt["text"])
    assert rows == []  # the map forgets a message once its result is shown
    assert stage.count(CLIENT.user_id, "Payment received:") == 1  # edited, not a second progress message
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "payment progress adopted" in logs
    assert "Traceback" not in logs
