"""What the newer benchmarks share: ports, subprocesses and their peak memory, percentiles, seeding.

Not a benchmark itself (run as a script it only imports). Peak RSS: ``resource.getrusage`` for this
process (``ru_maxrss``, KiB on Linux), ``VmHWM`` of ``/proc/<pid>/status`` for a child, read
while it still runs (the kernel forgets it once the child is reaped).
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from core.db.models import Booking, Client, SessionType, Therapist  # noqa: E402
from core.domain.slots import DEFAULT_WEEKLY_HOURS  # noqa: E402
from core.runtime import Runtime  # noqa: E402

PRICE = 2500
# Strong enough for every mode (the weakness check); fixed so the bench can hash callback secrets.
SECRET_KEY = "bench-secret-key-7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(url: str, within: float = 60.0) -> None:
    """Until ``url`` answers anything over HTTP (a server starting in a subprocess)."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


def start(
    argv: list[str], env: dict[str, str], cwd: str | Path = ROOT, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a child; its stderr goes to ``log`` when given (to show why it did not come up)."""
    err = log.open("wb") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    finally:
        if log:
            err.close()  # type: ignore[union-attr]


async def wait_up(url: str, process: subprocess.Popen[bytes], log: Path, within: float = 60.0) -> None:
    """``wait_listening``, but a child that exits or never listens ends the bench with its log's tail."""
    try:
        await wait_listening(url, within)
    except aiohttp.ClientError:
        raise SystemExit(f"{url} did not come up (exit code {process.poll()}):\n{log_tail(log)}") from None


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def child_peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a running process in MB; None when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def child_cpu_s(pid: int) -> float:
    """User + system CPU seconds a running process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_peak_rss_mb() -> float:
    """This process's peak resident set in MB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def phone_of(i: int) -> str:
    """The i-th bench client's MSISDN (2547 + 8 digits)."""
    return f"2547{i:08d}"


async def seed_approved_bookings(runtime: Runtime, count: int) -> range:
    """One practitioner, one session type, ``count`` clients with one APPROVED booking each
    (bulk inserts, one transaction); returns the ids (client id = booking id)."""
    now = datetime.now(UTC)
    async with runtime.uow() as uow:
        s = uow.session
        therapist = Therapist(
            name="Bench Practitioner",
            email=f"bench-{secrets.token_hex(4)}@example.org",
            phone="254712000000",
            weekly_hours={d: [list(r) for r in ranges] for d, ranges in DEFAULT_WEEKLY_HOURS.items()},
        )
        kind = SessionType(name=f"Bench {secrets.token_hex(3)}", minutes=50, price_kes=PRICE)
        s.add_all([therapist, kind])
        await s.flush()
        first = int(await s.scalar(select(func.coalesce(func.max(Client.id), 0)))) + 1
        ids = range(first, first + count)
        await s.execute(
            insert(Client),
            [
                {"id": i, "phone": phone_of(i), "name": f"Client {i}", "created_at": now, "updated_at": now}
                for i in ids
            ],
        )
        start_at = now.replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
        await s.execute(
            insert(Booking),
            [
                {
                    "id": i,
                    "reference": f"SSB{i:08d}",
                    "client_id": i,
                    "therapist_id": therapist.id,
                    "session_type_id": kind.id,
                    "starts_at": start_at + timedelta(minutes=i),  # one live booking per slot
                    "ends_at": start_at + timedelta(minutes=i + 50),
                    "price_kes": PRICE,
                    "status": "APPROVED",
                    "channel": "sms",
                    "approval_code": f"{i:08X}",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in ids
            ],
        )
        await uow.commit()
        return ids
