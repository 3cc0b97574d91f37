"""The real ``smiling-steps serve`` as a subprocess in an empty directory with a clean environment."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SCRIPT = shutil.which("smiling-steps", path=str(Path(sys.executable).parent)) or "smiling-steps"
START_WITHIN_S = 60.0


@dataclass(frozen=True)
class RunningServe:
    base_url: str
    workdir: Path
    output: Path  # stdout and stderr of the process (the banner, the log)

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_serve(workdir: Path, **extra_env: str) -> Iterator[RunningServe]:
    """Start serve in ``workdir`` with only PATH, HOME, a free PORT and ``extra_env``; stop it after."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "PORT": str(port)}
    env.update(extra_env)
    output = workdir / "serve.out"
    with output.open("w") as out:
        process = subprocess.Popen(
            [SCRIPT, "serve"], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    serve = RunningServe(f"http://127.0.0.1:{port}", workdir, output)
    try:
        _wait_healthy(serve, process)
        yield serve
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_healthy(serve: RunningServe, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: {serve.text()[-2000:]}")
        try:
            if httpx.get(f"{serve.base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"serve not healthy within {START_WITHIN_S} s: {serve.text()[-2000:]}")
