"""Run a scenario: against ``--url``, or against a ``serve`` this command starts in a temporary directory."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from smiling_steps.demo.scenarios import SCENARIOS, new_play
from smiling_steps.demo.service import Service, ServiceError
from smiling_steps.demo.stage import Stage
from smiling_steps.demo.transcript import StepFailed, Transcript

START_WITHIN_S = 60.0
# The demo's own serve: short waits, so that `timeout` and `outage` take seconds, not minutes.
OWN_SERVE_ENV = {"MPESA_PAYMENT_DEADLINE_SECONDS": "8", "MPESA_UNAVAILABLE_RETRY_SECONDS": "2"}
EXIT_OK, EXIT_FAILED, EXIT_NO_SERVICE = 0, 1, 3


def run_demo(scenario: str, *, url: str | None = None) -> int:
    """Run ``scenario``; print the transcript and the summary; 0 when every step passed."""
    try:
        with _service(url) as service:
            return play(scenario, service)
    except ServiceError as exc:
        print(f"smiling-steps demo: {exc}", file=sys.stderr)
        return EXIT_NO_SERVICE


def play(scenario: str, service: Service) -> int:
    """Run one scenario against a healthy local-mode service."""
    transcript = Transcript(sys.stdout)
    print(f"Scenario '{scenario}' against {service.base_url}", flush=True)
    failed: str | None = None
    try:
        SCENARIOS[scenario](new_play(Stage(service, transcript), transcript))
    except (StepFailed, ServiceError) as exc:
        failed = str(exc)
    print("\n" + transcript.summary(scenario), flush=True)
    if failed:
        print(f"smiling-steps demo: {failed}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


@contextmanager
def _service(url: str | None) -> Iterator[Service]:
    if url is not None:
        service = Service(url, sms_secret=os.environ.get("AT_WEBHOOK_SECRET") or _secret_here())
        try:
            if not service.wait_healthy(5.0):
                raise ServiceError(f"no healthy service at {url} (start one with: smiling-steps serve)")
            if not service.is_local_mode():
                raise ServiceError(f"{url} is not in local mode: the scenarios drive its stand-ins (/sim/)")
            yield service
        finally:
            service.close()
        return
    with own_serve() as service:
        yield service


@contextmanager
def own_serve() -> Iterator[Service]:
    """``smiling-steps serve`` in local mode in an empty temporary directory, on a free port."""
    with tempfile.TemporaryDirectory(prefix="smiling-steps-demo-") as workdir:
        port, secret = free_port(), os.urandom(12).hex()
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")},
            **OWN_SERVE_ENV,
            "PORT": str(port),
            "AT_WEBHOOK_SECRET": secret,
            "LOG_LEVEL": "WARNING",
        }
        log = Path(workdir, "serve.log")
        with log.open("w") as out:
            process = subprocess.Popen(  # noqa: S603 (our own console script)
                [sys.executable, "-m", "smiling_steps.cli", "serve"], cwd=workdir, env=env,
                stdout=out, stderr=subprocess.STDOUT,
            )
        service = Service(f"http://127.0.0.1:{port}", sms_secret=secret)
        try:
            if not service.wait_healthy(START_WITHIN_S):
                raise ServiceError(f"serve did not become healthy: {log.read_text()[-500:]}")
            print(f"(started smiling-steps serve on port {port} in {workdir})", flush=True)
            yield service
        finally:
            service.close()
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _secret_here() -> str | None:
    """Local mode's SMS hook secret when run in serve's directory (derived like smiling_steps.app)."""
    from core.config import SECRET_FILE_NAME

    path = Path.cwd() / SECRET_FILE_NAME
    key = os.environ.get("SECRET_KEY") or (path.read_text().strip() if path.exists() else None)
    if not key:
        return None
    return hmac.new(key.encode(), b"at-webhook", hashlib.sha256).hexdigest()[:24]
