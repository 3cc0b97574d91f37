"""``/metrics`` and the details of ``/healthz`` outside local mode: only with the METRICS_TOKEN bearer.

Over real HTTP on 127.0.0.1 against a real database, with the application's own routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web

from core.runtime import Runtime, build_runtime
from tests.conftest import make_settings
from tests.integration.test_health import SANDBOX, free_port
from tests.integration.test_metrics import samples
from webhooks.health import setup_health
from webhooks.metrics import setup_metrics

TOKEN = "mX3v9yQe2T7cN4pLw8ZrB1kHs6DfJ0aGuVtYqE5oPiU"  # secrets.token_urlsafe(32)


def _without_process(details: dict) -> dict:
    """The details less the process block (its role and parts: tests/integration/test_health.py)."""
    assert details.get("process", {}).get("role", "all") == "all"
    return {key: value for key, value in details.items() if key != "process"}


@asynccontextmanager
async def ops_routes(database_url: str, **env: str) -> AsyncIterator[tuple[str, Runtime]]:
    """/healthz and /metrics of an application configured by ``env``, on 127.0.0.1."""
    runtime = build_runtime(make_settings(database_url, **env))
    app = web.Application()
    setup_health(app, runtime)
    setup_metrics(app, runtime)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", runtime
    finally:
        await runner.cleanup()
        await runtime.close()


async def get(url: str, token: str | bytes | None = None) -> httpx.Response:
    raw = token.encode() if isinstance(token, str) else token
    headers = {} if raw is None else {"Authorization": (b"Bearer " + raw).strip()}  # no trailing space (h11)
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url, headers=headers)


async def test_outside_local_mode_without_a_token_metrics_is_403_saying_how_to_enable_it(database_url: str):
    async with ops_routes(database_url, **SANDBOX) as (base_url, _runtime):
        response = await get(f"{base_url}/metrics")
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.text and "smiling_steps_" not in response.text


async def test_outside_local_mode_healthz_tells_anonymous_callers_the_verdict_only(database_url: str):
    async with ops_routes(database_url, **SANDBOX) as (base_url, runtime):
        healthy = await get(f"{base_url}/healthz")
        runtime.components["bot"] = "error: token refused"
        down = await get(f"{base_url}/healthz")
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})
    assert (down.status_code, down.json()) == (503, {"status": "unavailable"})  # still 503, no reason


async def test_healthz_is_503_until_the_bot_has_started_for_everyone(database_url: str):
    async with ops_routes(database_url, **SANDBOX, METRICS_TOKEN=TOKEN) as (base_url, runtime):
        runtime.components["bot"] = "starting"
        anonymous, detailed = await get(f"{base_url}/healthz"), await get(f"{base_url}/healthz", TOKEN)
        runtime.components["bot"] = "ok"
        started = await get(f"{base_url}/healthz")
    assert (anonymous.status_code, anonymous.json()) == (503, {"status": "unavailable"})
    assert detailed.status_code == 503
    assert _without_process(detailed.json()) == {"status": "unavailable", "database": "ok", "bot": "starting"}
    assert (started.status_code, started.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    "given",
    [None, "", "wrong-token", TOKEN[:-1], TOKEN + "x", "\xff\xfe".encode("latin-1"), b"caf\xc3\xa9"],
    ids=["none", "empty", "wrong", "prefix", "longer", "not-utf8", "non-ascii"],
)
async def test_metrics_refuses_a_missing_or_wrong_token_with_401(database_url: str, given):
    async with ops_routes(database_url, **SANDBOX, METRICS_TOKEN=TOKEN) as (base_url, _runtime):
        metrics = await get(f"{base_url}/metrics", given)
        health = await get(f"{base_url}/healthz", given)
    assert metrics.status_code == 401 and metrics.headers["WWW-Authenticate"].startswith("Bearer")
    assert "smiling_steps_" not in metrics.text
    assert health.json() == {"status": "ok"}  # a wrong token is just anonymous here


async def test_with_the_token_metrics_and_healthz_details_are_shown(database_url: str):
    async with ops_routes(database_url, **SANDBOX, METRICS_TOKEN=TOKEN) as (base_url, _runtime):
        metrics = await get(f"{base_url}/metrics", TOKEN)
        health = await get(f"{base_url}/healthz", TOKEN)
        bare = await get(f"{base_url}/metrics", b"")  # "Bearer" alone
        async with httpx.AsyncClient(timeout=10) as client:
            lower = await client.get(f"{base_url}/metrics", headers={"Authorization": f"bearer {TOKEN}"})
    assert metrics.status_code == 200
    assert samples(metrics.text)['smiling_steps_payment_attempts{status="PAID"}'] == 0
    assert _without_process(health.json()) == {"status": "ok", "database": "ok"}
    assert bare.status_code == 401 and lower.status_code == 200


async def test_local_mode_is_open_without_a_token_and_closed_once_one_is_set(database_url: str):
    async with ops_routes(database_url) as (base_url, _runtime):
        assert (await get(f"{base_url}/metrics")).status_code == 200
        health = (await get(f"{base_url}/healthz")).json()
        assert _without_process(health) == {"status": "ok", "database": "ok"}
    async with ops_routes(database_url, METRICS_TOKEN=TOKEN) as (base_url, _runtime):
        assert (await get(f"{base_url}/metrics")).status_code == 401
        assert (await get(f"{base_url}/metrics", TOKEN)).status_code == 200
        assert (await get(f"{base_url}/healthz")).json() == {"status": "ok"}
