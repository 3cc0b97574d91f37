"""The chaos run's world: outside systems in the driver, the service as killable subprocesses.

The stand-ins (Daraja, Africa's Talking, SMTP) run inside the driver process, so their logs
survive every kill of the service; the service (`smiling-steps serve`) runs as one or more
subprocesses pointed at them (MPESA_API_BASE_URL, AT_API_BASE_URL, SMTP_HOST), each with its
own log file. ``PrivateCluster`` is a throw-away PostgreSQL cluster (initdb + pg_ctl in a temp
directory, own port) that the run may stop and start: the machine's PostgreSQL is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from simulators.africastalking import AfricasTalkingSimulator, SimulatedSms
from simulators.daraja import DarajaSimulator, simulator_state
from simulators.daraja import create_app as daraja_app
from simulators.smtp import Mailbox, SmtpCaptureServer

SCRIPT = shutil.which("smiling-steps", path=str(Path(sys.executable).parent)) or "smiling-steps"
AT_USERNAME, AT_API_KEY, SHORTCODE = "sandbox", "chaos-at-api-key-0", "22384"
START_WITHIN_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RoutingAt(AfricasTalkingSimulator):
    """The Africa's Talking stand-in, also handing every accepted SMS to ``on_sms`` at once."""

    def __init__(self, on_sms: Callable[[SimulatedSms], None]) -> None:
        super().__init__(username=AT_USERNAME, api_key=AT_API_KEY)
        self._on_sms = on_sms

    def _accept(self, form: dict[str, str], api_key: str | None) -> tuple[int, Any]:
        before = len(self.messages)
        answer = super()._accept(form, api_key)
        for sms in self.messages[before:]:
            if sms.status_code in (100, 101, 102):
                self._on_sms(sms)
        return answer


@dataclass
class StandIns:
    """Daraja, Africa's Talking and SMTP on free loopback ports of the driver's own loop."""

    daraja: DarajaSimulator
    at: RoutingAt
    mailbox: Mailbox
    daraja_url: str
    at_url: str
    smtp_port: int
    inboxes: dict[str, asyncio.Queue[str]] = field(default_factory=lambda: defaultdict(asyncio.Queue))
    _runners: list[web.AppRunner] = field(default_factory=list)
    _smtp: SmtpCaptureServer | None = None

    def deliver(self, sms: SimulatedSms) -> None:
        self.inboxes[sms.to.lstrip("+")].put_nowait(sms.message)

    async def close(self) -> None:
        await self.daraja.close()
        for runner in self._runners:
            await runner.cleanup()
        if self._smtp is not None:
            await self._smtp.stop()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def start_stand_ins(*, late_delay: float, callback_retries: int) -> StandIns:
    """Start the three stand-ins; the Daraja one retries callbacks like Safaricom."""
    app = daraja_app(callback_delay=1.0, late_delay=late_delay)
    daraja = simulator_state(app)
    daraja.faults.update(callback_retries=float(callback_retries), callback_retry_delay=0.5)
    daraja_runner, daraja_url = await _serve(app)
    holder: list[StandIns] = []
    at = RoutingAt(lambda sms: holder[0].deliver(sms))
    at_runner, at_url = await _serve(at.app())
    smtp = await SmtpCaptureServer(Mailbox(limit=10**7)).start()
    stand_ins = StandIns(daraja, at, smtp.mailbox, daraja_url, at_url, smtp.port)
    stand_ins._runners = [daraja_runner, at_runner]
    stand_ins._smtp = smtp
    holder.append(stand_ins)
    return stand_ins


def service_env(
    database_url: str,
    port: int,
    stand_ins: StandIns,
    secrets_: dict[str, str],
    workdir: Path,
    deadline_s: int,
) -> dict[str, str]:
    """The environment of one service process (local mode, outside systems = the stand-ins)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SECRET_KEY": secrets_["secret_key"],
        "MPESA_API_BASE_URL": stand_ins.daraja_url,
        "MPESA_PAYMENT_DEADLINE_SECONDS": str(deadline_s),
        "MPESA_UNAVAILABLE_RETRY_SECONDS": "2",
        "AT_USERNAME": AT_USERNAME,
        "AT_API_KEY": AT_API_KEY,
        "AT_API_BASE_URL": stand_ins.at_url,
        "AT_WEBHOOK_SECRET": secrets_["at_webhook_secret"],
        "AT_SHORTCODE": SHORTCODE,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(stand_ins.smtp_port),
        "SMTP_STARTTLS": "false",
        "LOG_LEVEL": "INFO",
    }


STARTED: list[ServiceProcess | PrivateCluster] = []  # stopped by ``cleanup_everything`` whatever happens


def cleanup_everything() -> None:
    """Stop every service process and private cluster this run started (interrupt, crash, exit)."""
    while STARTED:
        thing = STARTED.pop()
        with contextlib.suppress(Exception):
            thing.kill() if isinstance(thing, ServiceProcess) else thing.destroy()


class ServiceProcess:
    """One `smiling-steps serve` subprocess that can be SIGKILLed and started again."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path, role: str | None = None) -> None:
        self.name, self.env, self.workdir, self.role = name, env, workdir, role
        self.port = int(env["PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def serves_http_hooks(self) -> bool:
        return self.role in (None, "all", "web")

    def start(self) -> None:
        if self not in STARTED:
            STARTED.append(self)
        self.starts += 1
        command = [SCRIPT, "serve"] + (["--role", self.role] if self.role else [])
        with self.log_path.open("ab") as out:
            out.write(f"--- chaos: start {self.starts} ---\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs (the point of the exercise)."""
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.alive():
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    async def wait_healthy(self, timeout: float = START_WITHIN_S) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if not self.alive():
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{self.name} exited: {tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.base_url}/healthz")).status_code in (200, 503):
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} not answering /healthz within {timeout:.0f} s")


def serve_has_roles() -> bool:
    """Whether this checkout's `serve` takes ``--role`` (the scale-out issue's roles)."""
    done = subprocess.run([SCRIPT, "serve", "--help"], capture_output=True, text=True, check=False)
    return "--role" in done.stdout


def new_secrets() -> dict[str, str]:
    return {"secret_key": secrets.token_urlsafe(32), "at_webhook_secret": secrets.token_urlsafe(18)}


class PrivateCluster:
    """A PostgreSQL cluster of our own (initdb in a temp dir, own port): safe to stop and start."""

    def __init__(self, root: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise SystemExit("--pg-outage needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)")
        self.bin = Path(bins[-1]).parent
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        STARTED.append(self)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=200"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.root / "pg.log"),
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("fast")
        shutil.rmtree(self.root, ignore_errors=True)
