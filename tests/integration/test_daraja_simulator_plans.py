"""The Daraja simulator's chaos tools: per-phone scripted pushes, the outcomes only a chaos run
needs (late success, callback before the answer, amount mismatch) and Safaricom-like retries."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.integration.test_daraja_simulator import push_body, token
from tests.support.daraja import callback_listener, running_simulator, wait_until

PHONE = "254712345670"  # last digit 0: "success" by the last-digit rule, unless a plan says otherwise


async def _push(http: httpx.AsyncClient, url: str, **overrides: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {await token(http)}"}
    body = push_body(url, PhoneNumber=PHONE, PartyA=PHONE, **overrides)
    return await http.post("/mpesa/stkpush/v1/processrequest", json=body, headers=headers)


async def _query(http: httpx.AsyncClient, checkout: str) -> dict:
    headers = {"Authorization": f"Bearer {await token(http)}"}
    body = {k: v for k, v in push_body("x").items() if k in ("BusinessShortCode", "Password", "Timestamp")}
    answer = await http.post(
        "/mpesa/stkpushquery/v1/query", json={**body, "CheckoutRequestID": checkout}, headers=headers
    )
    return answer.json()


async def test_a_plan_answers_503_first_then_plays_its_outcome_for_that_phone_only() -> None:
    async with (
        running_simulator(prefix=None) as sim,
        callback_listener() as listener,
        httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as http,
    ):
        answer = await http.post(
            "/control/plan",
            json={"phone": PHONE, "pushes": [{"outcome": "cancelled", "push_503": 2, "delay": 0}]},
        )
        assert answer.json() == {"phone_waiting": 1}
        assert [(await _push(http, listener.url())).status_code for _ in range(3)] == [503, 503, 200]
        [received] = await listener.wait_for(1)
        assert json.loads(received.body)["Body"]["stkCallback"]["ResultCode"] == 1032
        assert (await http.get("/control/plan")).json() == {"waiting": 0}


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ({"outcome": "hold"}, "outcome"),
        ({"outcome": "success", "answer": "maybe"}, "answer"),
        ({"outcome": "success", "push_503": -1}, "push_503"),
        ({"outcome": "success", "pin": 1234}, "unknown"),
    ],
)
async def test_a_bad_plan_is_refused_with_the_reason(script: dict, reason: str) -> None:
    async with running_simulator(prefix=None) as sim, httpx.AsyncClient(base_url=sim.base_url) as http:
        answer = await http.post("/control/plan", json={"phone": PHONE, "pushes": [script]})
    assert answer.status_code == 400 and reason in answer.json()["error"]


async def test_a_slow_or_500_answer_still_processes_the_push() -> None:
    async with (
        running_simulator(prefix=None) as sim,
        callback_listener() as listener,
        httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as http,
    ):
        await http.post(
            "/control/plan",
            json={
                "phone": PHONE,
                "pushes": [
                    {"outcome": "success", "answer": "500", "delay": 0},
                    {"outcome": "success", "answer": "slow", "slow_s": 0.3, "delay": 0},
                ],
            },
        )
        assert (await _push(http, listener.url())).status_code == 500
        assert (await _push(http, listener.url())).status_code == 200
        assert len(await listener.wait_for(2)) == 2 and len(sim.state.transactions) == 2


async def test_late_success_is_a_failure_to_query_until_its_success_callback() -> None:
    async with (
        running_simulator(prefix=None, late_delay=3.0) as sim,
        callback_listener() as listener,
        httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as http,
    ):
        await http.post(
            "/control/plan", json={"phone": PHONE, "pushes": [{"outcome": "late_success", "delay": 0.05}]}
        )
        checkout = (await _push(http, listener.url())).json()["CheckoutRequestID"]
        tx = sim.state.transactions[checkout]
        await wait_until(lambda: asyncio.get_running_loop().time() >= tx.final_at)
        assert (await _query(http, checkout))["ResultCode"] == "1037"
        [received] = await listener.wait_for(1, within=10)
        assert json.loads(received.body)["Body"]["stkCallback"]["ResultCode"] == 0
        assert (await _query(http, checkout))["ResultCode"] == "0"


async def test_an_early_callback_arrives_before_the_push_answer_and_a_mismatch_is_one_short() -> None:
    async with (
        running_simulator(prefix=None) as sim,
        callback_listener() as listener,
        httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as http,
    ):
        await http.post(
            "/control/plan",
            json={
                "phone": PHONE,
                "pushes": [{"outcome": "early_callback"}, {"outcome": "amount_mismatch", "delay": 0}],
            },
        )
        assert (await _push(http, listener.url(), Amount=100)).status_code == 200
        assert len(listener.received) == 1  # already there when the push was answered
        await _push(http, listener.url(), Amount=100)
        second = json.loads((await listener.wait_for(2))[1].body)["Body"]["stkCallback"]
        amount = next(i["Value"] for i in second["CallbackMetadata"]["Item"] if i["Name"] == "Amount")
        assert amount == 99


async def test_callbacks_are_retried_until_answered_200_when_retries_are_on() -> None:
    async with (
        running_simulator(prefix=None) as sim,
        callback_listener(status=503) as listener,
        httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as http,
    ):
        await http.post("/control/faults", json={"callback_retries": 2, "callback_retry_delay": 0.05})
        await http.post(
            "/control/plan", json={"phone": PHONE, "pushes": [{"outcome": "success", "delay": 0}]}
        )
        await _push(http, listener.url())
        await listener.wait_for(3)
        await wait_until(lambda: sim.state.callbacks_in_flight == 0)
        assert [e["retry"] for e in sim.callbacks()] == [0, 1, 2]
        assert [e["status"] for e in sim.callbacks()] == [503, 503, 503]
