"""Local mode: the first ``serve`` creates ``admin`` and prints a one-time password that works."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx

from tests.integration.test_health import SCRIPT, free_port, serve_env

BANNER = re.compile(r"^\s*Admin site:\s+(\S+) user 'admin', one-time password (\S+) ")


def _serve_until_banner(tmp_path: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    env = serve_env(PORT=str(port), DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}")
    process = subprocess.Popen(
        [SCRIPT, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if line.strip().startswith("Admin site:") or not line:
            return process, line
    return process, ""


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        _out, err = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
    return err


def _sign_in(base: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=10) as client:
        deadline = time.monotonic() + 20
        while True:
            try:
                form = client.get("/admin/login")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        return client.post(
            "/admin/login", data={"username": username, "password": password, "csrf_token": token.group(1)}
        )


def test_first_serve_prints_a_working_one_time_admin_password_and_never_logs_it(tmp_path: Path) -> None:
    port = free_port()
    process, banner = _serve_until_banner(tmp_path, port)
    try:
        match = BANNER.match(banner)
        assert match, banner
        url, password = match.groups()
        assert url == f"http://127.0.0.1:{port}/admin/"
        response = _sign_in(f"http://127.0.0.1:{port}", "admin", password)
        assert response.status_code == 303 and response.headers["location"] == "/admin/"
    finally:
        err = _stop(process)
    assert password not in err  # the JSON log never carries it

    again, second = _serve_until_banner(tmp_path, port)  # an admin exists now: no new password
    _stop(again)
    assert second.strip().startswith("Admin site:") and "one-time password" not in second
