"""Every `smiling-steps demo --scenario NAME` passes against a real serve (as subprocesses).

One serve, started like a newcomer's `make run` in an empty directory, is shared by the scenarios
(each uses a fresh chat user or phone number). Its M-Pesa waits are shortened with the local-mode
knobs MPESA_PAYMENT_DEADLINE_SECONDS and MPESA_UNAVAILABLE_RETRY_SECONDS so that `timeout` and
`outage` take seconds; `happy` also runs once with the demo's own serve (no --url).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from smiling_steps.demo.names import SCENARIO_NAMES
from tests.integration.test_cli import clean_env
from tests.support.serve import SCRIPT, RunningServe, running_serve
from tests.support.telegram import serving

SMS_SECRET = "demo-scenarios-sms-secret"
FAST = {"MPESA_PAYMENT_DEADLINE_SECONDS": "8", "MPESA_UNAVAILABLE_RETRY_SECONDS": "2", "LOG_LEVEL": "WARNING"}
SCENARIO_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def shared_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServe]:
    with running_serve(tmp_path_factory.mktemp("demo"), AT_WEBHOOK_SECRET=SMS_SECRET, **FAST) as serve:
        yield serve


def demo(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "demo", *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True,
        timeout=SCENARIO_TIMEOUT_S,
    )


@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 30)
@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_the_scenario_passes_against_a_running_serve(
    scenario: str, shared_serve: RunningServe, tmp_path: Path
):
    url = shared_serve.base_url
    result = demo(tmp_path, "--scenario", scenario, "--url", url, AT_WEBHOOK_SECRET=SMS_SECRET)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    steps = result.stdout.split(f"Scenario '{scenario}'\n")[-1]
    assert "FAILED" not in steps and "steps passed" in steps
    passed, total = steps.strip().splitlines()[-1].split()[0].split("/")
    assert passed == total and int(total) >= 5


@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 30)
def test_the_default_scenario_starts_its_own_serve_and_prints_the_transcript(tmp_path: Path):
    result = demo(tmp_path, "--scenario")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    out = result.stdout
    for seen in ("started smiling-steps serve", "client -> bot", "bot -> practitioner", "M-Pesa prompt on",
                 "callback ResultCode 0", "Payment received", "e-mail", "reminders", "steps passed"):
        assert seen in out, seen
    assert list(tmp_path.iterdir()) == []  # its serve ran in a temporary directory of its own


def test_a_failed_step_is_named_and_the_exit_code_is_not_zero(shared_serve: RunningServe, tmp_path: Path):
    url = shared_serve.base_url
    result = demo(tmp_path, "--scenario", "sms", "--url", url, AT_WEBHOOK_SECRET="not-the-hook-secret")
    assert result.returncode == 1
    assert "step 'client books by SMS' failed: SMS hook: HTTP 404" in result.stderr
    assert "FAILED" in result.stdout and "0/1 steps passed" in result.stdout


@pytest.mark.timeout(SCENARIO_TIMEOUT_S + 30)
def test_without_the_hook_secret_the_sms_scenario_texts_through_the_phone_page(
    shared_serve: RunningServe, tmp_path: Path
):
    result = demo(tmp_path, "--scenario", "sms", "--url", shared_serve.base_url)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "Paid KES" in result.stdout


def test_an_unknown_scenario_is_refused_in_one_line(tmp_path: Path):
    result = demo(tmp_path, "--scenario", "nonsense")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_a_service_without_the_local_stand_ins_is_refused_in_one_line(tmp_path: Path):
    async def healthy(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthy)  # healthy, but no /sim/: like sandbox or production
    async with serving(app) as url:
        process = await asyncio.create_subprocess_exec(
            SCRIPT, "demo", "--scenario", "happy", "--url", url, cwd=tmp_path, env=clean_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), SCENARIO_TIMEOUT_S)
    assert process.returncode == 3, (out, err)
    assert err.decode().strip() == (
        f"smiling-steps demo: {url} is not in local mode: the scenarios drive its stand-ins (/sim/)"
    )
