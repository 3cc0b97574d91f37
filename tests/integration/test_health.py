"""``GET /healthz`` over real HTTP: the in-process application and the real ``serve`` command."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from core.config import SECRET_FILE_NAME
from core.db.engine import create_engine
from core.runtime import Runtime, build_runtime
from smiling_steps.app import create_app
from tests.conftest import make_settings
from tests.factories import create_pg_database, drop_pg_database

PG_URL = os.environ.get("TEST_DATABASE_URL")
SCRIPT = shutil.which("smiling-steps", path=str(Path(sys.executable).parent)) or "smiling-steps"
CLOSED_PORT_DB = "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"
SANDBOX = {
    "MPESA_ENVIRONMENT": "sandbox",
    "MPESA_CONSUMER_KEY": "test-consumer-key",
    "MPESA_CONSUMER_SECRET": "test-consumer-secret",
    "SECRET_KEY": "UGNcPTHOh4H7RvzVvRQDFhjCl_Ku2N5NWsKldVX9qaY",  # secrets.token_urlsafe(32)
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def serving(runtime: Runtime) -> AsyncIterator[str]:
    """The whole application on 127.0.0.1:$PORT (local mode: its simulators live there too)."""
    app = create_app(runtime.settings, runtime)
    runner = web.AppRunner(app)
    await runner.setup()  # runs start-up: the schema check, workers, the bot
    site = web.TCPSite(runner, "127.0.0.1", runtime.settings.port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runtime.settings.port}"
    finally:
        await runner.cleanup()


async def get_health(base_url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{base_url}/healthz")


async def wait_healthy(base_url: str, within_s: float = 15) -> httpx.Response:
    """Poll /healthz until 200 (the bot starts in the background) or the time is up."""
    deadline = time.monotonic() + within_s
    response = await get_health(base_url)
    while response.status_code != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        response = await get_health(base_url)
    return response


def assert_healthy(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert all(value in ("ok", "disabled") for key, value in body.items() if key != "process"), body
    return body


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Local mode keeps its generated secret in the working directory: use a temporary one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
async def app_runtime(database_url: str, in_tmp_cwd: Path) -> AsyncIterator[Runtime]:
    """A runtime for the application; the application closes it on shutdown."""
    runtime = build_runtime(make_settings(database_url, PORT=str(free_port())))
    yield runtime
    await runtime.close()


# -- the in-process application ----------------------------------------------------------------------


async def test_healthz_is_200_when_the_database_answers(app_runtime: Runtime):
    async with serving(app_runtime) as base_url:
        body = assert_healthy(await wait_healthy(base_url))
    assert "bot" in body  # the bot is reported (local mode: it talks to the Telegram simulator)


async def test_healthz_is_503_naming_the_database_when_it_is_unreachable(app_runtime: Runtime):
    async with serving(app_runtime) as base_url:
        assert_healthy(await wait_healthy(base_url))
        healthy_engine = app_runtime.engine
        app_runtime.engine = create_engine(CLOSED_PORT_DB)  # the database host goes away
        try:
            response = await get_health(base_url)
        finally:
            await app_runtime.engine.dispose()
            app_runtime.engine = healthy_engine
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["database"].startswith("error")
        assert_healthy(await get_health(base_url))  # and recovers when it is back


async def test_healthz_does_not_hang_when_the_database_never_answers(app_runtime: Runtime):
    # a server that accepts connections and then says nothing (a stuck database or firewall)
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    async with serving(app_runtime) as base_url:
        healthy_engine = app_runtime.engine
        app_runtime.engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x")
        try:
            started = time.monotonic()
            response = await get_health(base_url)
            elapsed = time.monotonic() - started
        finally:
            await app_runtime.engine.dispose()
            app_runtime.engine = healthy_engine
    silent.close()
    assert response.status_code == 503 and response.json()["database"].startswith("error")
    assert elapsed < 5


async def test_healthz_is_503_naming_a_component_that_is_down(app_runtime: Runtime):
    async with serving(app_runtime) as base_url:
        assert_healthy(await wait_healthy(base_url))
        app_runtime.components["bot"] = "error: token refused"
        response = await get_health(base_url)
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["bot"] == "error: token refused"
    assert response.json()["database"] == "ok"


@pytest.mark.postgres
async def test_healthz_is_503_when_the_postgres_database_is_dropped(in_tmp_cwd: Path):
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set")
    url = await create_pg_database(PG_URL)
    runtime = build_runtime(make_settings(url, PORT=str(free_port())))
    try:
        async with serving(runtime) as base_url:
            assert_healthy(await wait_healthy(base_url))
            await drop_pg_database(url)  # kills the pooled connections too
            response = await get_health(base_url)
            assert response.status_code == 503
            assert response.json()["database"].startswith("error")
    finally:
        await runtime.close()
        await drop_pg_database(url)


async def test_the_application_refuses_to_start_on_an_unmigrated_database_outside_local_mode(
    tmp_path: Path, in_tmp_cwd: Path
):
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}", **SANDBOX)
    runtime = build_runtime(settings)
    runner = web.AppRunner(create_app(settings, runtime))
    try:
        with pytest.raises(RuntimeError, match="smiling-steps db upgrade"):
            await runner.setup()
    finally:
        await runner.cleanup()
        await runtime.close()


# -- the real `serve` command -------------------------------------------------------------------------


def serve_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")}
    return {**keep, **extra}


def test_serve_answers_healthz_and_stops_cleanly(tmp_path: Path):
    port = free_port()
    env = serve_env(PORT=str(port), DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}")
    process = subprocess.Popen(
        [SCRIPT, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        response = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert response is not None, process.stderr.read() if process.poll() is not None else "no answer"
        assert_healthy(response)
    finally:
        process.terminate()
        try:
            _out, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
    assert process.returncode == 0, err
    # stderr is the JSON log plus the start-up banner (its first line, then indented lines): no
    # unhandled exception was printed
    banner = [line for line in err.splitlines() if not line.startswith("{")]
    assert banner[0].startswith("Smiling Steps is listening on http://127.0.0.1:"), err
    assert all(line.startswith("  ") for line in banner[1:]), banner
    assert all(json.loads(line) for line in err.splitlines() if line.startswith("{"))
    secret = tmp_path / SECRET_FILE_NAME  # local mode generated its secret key here, privately
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    database = tmp_path / "serve.db"  # created by `serve` itself: personal data, owner-only
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set")
    url = asyncio.run(create_pg_database(PG_URL))
    yield url
    asyncio.run(drop_pg_database(url))


def test_serve_on_an_unmigrated_database_outside_local_mode_exits_1_with_one_line(tmp_path, unmigrated_url):
    port = free_port()
    env = serve_env(PORT=str(port), DATABASE_URL=unmigrated_url, **SANDBOX)
    result = subprocess.run(
        [SCRIPT, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "smiling-steps db upgrade" in lines[0]
    with socket.socket() as sock:  # it never bound the port
        sock.bind(("127.0.0.1", port))
