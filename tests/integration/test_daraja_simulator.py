"""The Daraja simulator speaks Daraja's wire protocol (raw HTTP, no product client)."""

from __future__ import annotations

import ast
import base64
import re
from pathlib import Path

import httpx
import pytest

from core.mpesa import parse_stk_callback
from simulators import daraja as daraja_module
from simulators.daraja import (
    SANDBOX_PASSKEY,
    SIMULATOR_CONSUMER_KEY,
    SIMULATOR_CONSUMER_SECRET,
)
from tests.support.daraja import callback_listener, running_simulator

BASIC = "Basic " + base64.b64encode(f"{SIMULATOR_CONSUMER_KEY}:{SIMULATOR_CONSUMER_SECRET}".encode()).decode()
TIMESTAMP = "20240101120000"
PASSWORD = base64.b64encode(f"174379{SANDBOX_PASSKEY}{TIMESTAMP}".encode()).decode()


@pytest.fixture
async def sim():
    async with running_simulator() as running:
        yield running


@pytest.fixture
async def http(sim):
    async with httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as client:
        yield client


@pytest.fixture
async def listener():
    async with callback_listener() as running:
        yield running


async def token(http: httpx.AsyncClient) -> str:
    response = await http.get(
        "/oauth/v1/generate", params={"grant_type": "client_credentials"}, headers={"Authorization": BASIC}
    )
    assert response.status_code == 200
    return response.json()["access_token"]


def push_body(callback_url: str, **overrides: object) -> dict:
    body: dict = {
        "BusinessShortCode": "174379",
        "Password": PASSWORD,
        "Timestamp": TIMESTAMP,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1,
        "PartyA": "254708374149",
        "PartyB": "174379",
        "PhoneNumber": "254708374149",
        "CallBackURL": callback_url,
        "AccountReference": "SmilingSteps",
        "TransactionDesc": "BK1",
    }
    body.update(overrides)
    return body


def is_daraja_error(body: dict, code: str, message: str) -> bool:
    return set(body) == {"requestId", "errorCode", "errorMessage"} and (
        body["errorCode"],
        body["errorMessage"],
    ) == (code, message)


async def test_oauth_gives_a_token_with_expires_in_as_a_string(http):
    response = await http.get(
        "/oauth/v1/generate", params={"grant_type": "client_credentials"}, headers={"Authorization": BASIC}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in"}
    assert body["expires_in"] == "3599"
    assert re.fullmatch(r"[A-Za-z0-9]{28}", body["access_token"])


@pytest.mark.parametrize(
    ("params", "headers", "code", "message"),
    [
        ({"grant_type": "client_credentials"}, {}, "400.008.01", "Invalid Authentication passed"),
        (
            {"grant_type": "client_credentials"},
            {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
            "400.008.01",
            "Invalid Authentication passed",
        ),
        (
            {"grant_type": "client_credentials"},
            {"Authorization": "Basic !!!"},
            "400.008.01",
            "Invalid Authentication passed",
        ),
        ({}, {"Authorization": BASIC}, "400.008.02", "Invalid grant type passed"),
    ],
)
async def test_oauth_refuses_bad_credentials_and_grant_types(http, params, headers, code, message):
    response = await http.get("/oauth/v1/generate", params=params, headers=headers)
    assert response.status_code == 400
    assert is_daraja_error(response.json(), code, message)


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic abc", "Bearer"])
async def test_push_without_a_valid_bearer_token_is_invalid_access_token(http, listener, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.post(
        "/mpesa/stkpush/v1/processrequest", json=push_body(listener.url()), headers=headers
    )
    assert response.status_code == 404
    assert is_daraja_error(response.json(), "404.001.03", "Invalid Access Token")


async def test_tokens_expire_after_their_ttl():
    async with (
        running_simulator(token_ttl=0) as sim,
        httpx.AsyncClient(base_url=sim.base_url, trust_env=False) as http,
    ):
        bearer = await token(http)
        response = await http.post(
            "/mpesa/stkpushquery/v1/query", json={}, headers={"Authorization": f"Bearer {bearer}"}
        )
        assert response.json()["errorCode"] == "404.001.03"


async def test_push_success_answer_has_daraja_shape_and_string_codes(sim, http, listener):
    bearer = await token(http)
    response = await http.post(
        "/mpesa/stkpush/v1/processrequest",
        json=push_body(listener.url(), Amount="1", PhoneNumber=254708374149, PartyA=254708374149),
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "MerchantRequestID", "CheckoutRequestID", "ResponseCode", "ResponseDescription", "CustomerMessage",
    }  # fmt: skip
    assert body["ResponseCode"] == "0"
    assert body["ResponseDescription"] == "Success. Request accepted for processing"
    assert re.fullmatch(r"ws_CO_\d{26}", body["CheckoutRequestID"])
    assert body["CheckoutRequestID"].endswith("708374149")
    assert re.fullmatch(r"\d+-\d+-1", body["MerchantRequestID"])
    [received] = await listener.wait_for(1)
    raw = received.body.decode()
    assert '"ResultCode": 0' in raw  # an integer in callbacks
    assert '{"Name": "Balance"}' in raw  # Balance without Value, like the real thing
    stk = parse_stk_callback(received.body)
    assert stk.amount == 1 and isinstance(stk.metadata["TransactionDate"], int)
    assert isinstance(stk.metadata["PhoneNumber"], int)
    assert re.fullmatch(r"[A-Z]{2}[1-9A-V][A-Z0-9]{7}", stk.receipt)
    assert received.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"BusinessShortCode": "abc"}, "BusinessShortCode"),
        ({"Password": ""}, "Password"),
        ({"Timestamp": "2024-01-01"}, "Timestamp"),
        ({"Timestamp": "20241301120000"}, "Timestamp"),
        ({"TransactionType": "CustomerPay"}, "TransactionType"),
        ({"Amount": 0}, "Amount"),
        ({"Amount": 1.5}, "Amount"),
        ({"Amount": "ten"}, "Amount"),
        ({"Amount": 250_001}, "Amount"),
        ({"PartyA": "0708374149"}, "PartyA"),
        ({"PartyB": "12"}, "PartyB"),
        ({"PhoneNumber": "254808374149"}, "PhoneNumber"),
        ({"PhoneNumber": None}, "PhoneNumber"),
        ({"CallBackURL": "https://example.org/mpesa/cb"}, "CallBackURL"),
        ({"CallBackURL": "not a url"}, "CallBackURL"),
        ({"CallBackURL": "ftp://example.org/x"}, "CallBackURL"),
        ({"AccountReference": "SmilingSteps12"}, "AccountReference"),
        ({"AccountReference": ""}, "AccountReference"),
        ({"TransactionDesc": "A" * 14}, "TransactionDesc"),
        ({"TransactionDesc": ""}, "TransactionDesc"),
    ],
)
async def test_push_validation_errors_are_daraja_shaped(sim, http, listener, overrides, field):
    bearer = await token(http)
    response = await http.post(
        "/mpesa/stkpush/v1/processrequest",
        json=push_body(listener.url(), **overrides),
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 400
    assert is_daraja_error(response.json(), "400.002.02", f"Bad Request - Invalid {field}")
    assert sim.state.transactions == {}


async def test_wrong_password_and_unknown_shortcode_are_500_001_1001(http, listener):
    bearer = await token(http)
    headers = {"Authorization": f"Bearer {bearer}"}
    wrong = await http.post(
        "/mpesa/stkpush/v1/processrequest", json=push_body(listener.url(), Password="eHh4"), headers=headers
    )
    assert wrong.status_code == 500
    assert is_daraja_error(wrong.json(), "500.001.1001", "[MerchantValidate] - Wrong credentials")
    unknown = await http.post(
        "/mpesa/stkpush/v1/processrequest",
        json=push_body(listener.url(), BusinessShortCode="600000"),
        headers=headers,
    )
    assert unknown.status_code == 500
    assert is_daraja_error(unknown.json(), "500.001.1001", "Merchant does not exist")


async def test_query_answers_being_processed_then_the_final_result_as_strings(sim, http, listener):
    await sim.control("/control/next-outcome", {"outcome": "insufficient", "delay": 0.2})
    bearer = await token(http)
    headers = {"Authorization": f"Bearer {bearer}"}
    pushed = await http.post(
        "/mpesa/stkpush/v1/processrequest", json=push_body(listener.url()), headers=headers
    )
    checkout = pushed.json()["CheckoutRequestID"]
    query = {
        "BusinessShortCode": "174379",
        "Password": PASSWORD,
        "Timestamp": TIMESTAMP,
        "CheckoutRequestID": checkout,
    }
    pending = await http.post("/mpesa/stkpushquery/v1/query", json=query, headers=headers)
    assert pending.status_code == 500
    assert is_daraja_error(pending.json(), "500.001.1001", "The transaction is being processed")
    await listener.wait_for(1)
    final = await http.post("/mpesa/stkpushquery/v1/query", json=query, headers=headers)
    assert final.status_code == 200
    assert final.json() == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": pushed.json()["MerchantRequestID"],
        "CheckoutRequestID": checkout,
        "ResultCode": "1",
        "ResultDesc": "The balance is insufficient for the transaction.",
    }


async def test_callback_receiver_status_is_logged_and_never_retried(sim, http):
    async with callback_listener(status=500) as failing:
        bearer = await token(http)
        await http.post(
            "/mpesa/stkpush/v1/processrequest",
            json=push_body(failing.url()),
            headers={"Authorization": f"Bearer {bearer}"},
        )
        await failing.wait_for(1)
        await sim.wait_for(lambda: len(sim.callbacks()) == 1)
    [delivery] = sim.callbacks()
    assert delivery["status"] == 500 and delivery["error"] is None
    log = (await http.get("/control/log")).json()["entries"]
    assert [e["kind"] for e in log] == ["request", "request", "callback"]
    assert log[-1]["status"] == 500


async def test_unreachable_callback_url_is_logged_as_an_error(sim, http):
    bearer = await token(http)
    await http.post(
        "/mpesa/stkpush/v1/processrequest",
        json=push_body("http://127.0.0.1:9/hooks/lnm/x"),
        headers={"Authorization": f"Bearer {bearer}"},
    )
    await sim.wait_for(lambda: len(sim.callbacks()) == 1)
    [delivery] = sim.callbacks()
    assert delivery["status"] is None and delivery["error"]


async def test_log_never_contains_tokens_or_basic_credentials(sim, http, listener):
    bearer = await token(http)
    await http.post(
        "/mpesa/stkpush/v1/processrequest",
        json=push_body(listener.url()),
        headers={"Authorization": f"Bearer {bearer}"},
    )
    text = (await http.get("/control/log")).text
    assert bearer not in text and SIMULATOR_CONSUMER_SECRET not in text and BASIC not in text


async def test_control_api_validates_its_input(http):
    bad_outcome = await http.post("/control/next-outcome", json={"outcome": "explode"})
    assert bad_outcome.status_code == 400 and "success" in bad_outcome.json()["error"]
    bad_delay = await http.post("/control/next-outcome", json={"outcome": "success", "delay": -1})
    assert bad_delay.status_code == 400
    bad_fault = await http.post("/control/faults", json={"push_404": True})
    assert bad_fault.status_code == 400
    bad_type = await http.post("/control/faults", json={"slow_seconds": "x"})
    assert bad_type.status_code == 400
    unknown = await http.post("/control/resolve", json={"CheckoutRequestID": "nope", "outcome": "success"})
    assert unknown.status_code == 404


async def test_faults_merge_and_reset_clears_state_but_keeps_tokens(sim, http, listener):
    merged = await http.post("/control/faults", json={"push_503": True})
    merged = await http.post("/control/faults", json={"slow_seconds": 0.01})
    assert merged.json()["faults"]["push_503"] is True
    assert merged.json()["faults"]["slow_seconds"] == 0.01
    await http.post("/control/next-outcome", json={"outcome": "cancelled"})
    bearer = await token(http)
    assert (await http.post("/control/reset")).status_code == 200
    assert sim.state.faults["push_503"] is False
    assert not sim.state.next_outcomes and not sim.state.log
    response = await http.post(
        "/mpesa/stkpush/v1/processrequest",
        json=push_body(listener.url()),
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200


async def test_next_outcomes_are_consumed_in_order_one_per_push(sim, http, listener):
    for outcome in ("cancelled", "wrong_pin"):
        await http.post("/control/next-outcome", json={"outcome": outcome})
    bearer = await token(http)
    for _ in range(3):
        await http.post(
            "/mpesa/stkpush/v1/processrequest",
            json=push_body(listener.url()),
            headers={"Authorization": f"Bearer {bearer}"},
        )
    transactions = (await http.get("/control/transactions")).json()["transactions"]
    assert [t["outcome"] for t in transactions] == ["cancelled", "wrong_pin", "success"]


def test_simulator_imports_nothing_from_the_product():
    tree = ast.parse(Path(daraja_module.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"core", "bot", "webhooks", "admin_web", "smiling_steps", "tests"})
