"""serve runs on uvloop where it is installed, and on asyncio's own loop with EVENT_LOOP=asyncio."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import uvloop

from core.config import load_settings
from smiling_steps.server import new_event_loop
from tests.support.serve import running_serve


@pytest.mark.parametrize(("choice", "kind"), [("auto", uvloop.Loop), ("uvloop", uvloop.Loop)])
def test_auto_and_uvloop_give_a_uvloop_loop(choice: str, kind: type) -> None:
    loop = new_event_loop(choice)
    try:
        assert isinstance(loop, kind)
    finally:
        loop.close()


def test_asyncio_gives_the_standard_loop() -> None:
    loop = new_event_loop("asyncio")
    try:
        assert isinstance(loop, asyncio.BaseEventLoop) and not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_the_event_loop_setting_defaults_to_auto_and_refuses_other_names() -> None:
    assert load_settings({}).event_loop == "auto"
    assert load_settings({"EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ValueError, match="EVENT_LOOP: must be one of auto, uvloop or asyncio"):
        load_settings({"EVENT_LOOP": "tokio"})


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_serve_answers_health_checks_and_callbacks_on_either_loop(tmp_path: Path, choice: str) -> None:
    with running_serve(tmp_path, EVENT_LOOP=choice) as serve:
        assert httpx.get(f"{serve.base_url}/healthz", timeout=5).status_code == 200
        answer = httpx.post(f"{serve.base_url}/hooks/lnm/no-such-secret", json={"Body": {}}, timeout=5)
        assert answer.status_code == 404 and answer.json() == {"ResultCode": 1, "ResultDesc": "Not found"}
