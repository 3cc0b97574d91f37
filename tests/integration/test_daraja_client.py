"""DarajaClient against the local Daraja simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from datetime import datetime, timedelta

import pytest

from core.mpesa import (
    DarajaAuthFailed,
    DarajaMerchantNotFound,
    DarajaOAuthError,
    DarajaOutcomeUnknown,
    DarajaRejected,
    DarajaSubscriberBusy,
    DarajaUnavailable,
    DarajaWrongCredentials,
    StkRequestInvalid,
    parse_stk_callback,
)
from core.mpesa.timestamps import NAIROBI, parse_daraja_datetime
from simulators.daraja import SANDBOX_PASSKEY
from tests.support.daraja import callback_listener, closed_port, make_client, running_simulator

SUCCESS_PHONE = "254708374149"  # Safaricom's public sandbox test number (ends in 9)


@pytest.fixture
async def sim():
    async with running_simulator() as running:
        yield running


@pytest.fixture
async def listener():
    async with callback_listener() as running:
        yield running


@pytest.fixture
async def client(sim):
    async with make_client(sim.base_url) as daraja:
        yield daraja


async def push(client, listener, phone: str = SUCCESS_PHONE, amount: int = 2500, **kwargs):
    return await client.stk_push(
        phone=phone,
        amount=amount,
        callback_url=listener.url(),
        transaction_desc=kwargs.pop("transaction_desc", "BK-7F3A"),
        **kwargs,
    )


# -- happy path and outcomes -------------------------------------------------------------
async def test_accepted_push_is_followed_by_a_success_callback(sim, listener, client):
    accepted = await push(client, listener, amount=2500)
    assert sim.requests("stk_push")[-1]["body"]["Amount"] == 2500  # Property 13, on the wire
    assert accepted.checkout_request_id.startswith("ws_CO_")
    assert accepted.response_code == 0
    assert accepted.customer_message == "Success. Request accepted for processing"
    [received] = await listener.wait_for(1)
    assert received.path == "/hooks/lnm/s3cr3t"
    callback = parse_stk_callback(received.body)
    assert callback.checkout_request_id == accepted.checkout_request_id
    assert callback.merchant_request_id == accepted.merchant_request_id
    assert callback.is_success
    assert callback.amount == 2500
    assert callback.receipt is not None and len(callback.receipt) == 10 and callback.receipt.isalnum()
    assert callback.metadata["Balance"] is None
    assert callback.phone == SUCCESS_PHONE
    assert callback.transaction_date is not None
    assert abs(callback.transaction_date - datetime.now(NAIROBI)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("phone", "code", "outcome"),
    [
        ("254700000000", 0, "paid"),
        ("254700000008", 0, "paid"),
        ("254700000001", 1, "failed"),
        ("254700000002", 1032, "cancelled"),
        ("254700000003", 2001, "failed"),
        ("254700000004", 1037, "timed_out"),
        ("254110000002", 1032, "cancelled"),
    ],
)
async def test_phone_last_digit_outcomes_arrive_as_the_right_callback(
    sim, listener, client, phone, code, outcome
):
    accepted = await push(client, listener, phone=phone)
    [received] = await listener.wait_for(1)
    callback = parse_stk_callback(received.body)
    assert callback.checkout_request_id == accepted.checkout_request_id
    assert callback.result_code == code
    assert callback.result.outcome == outcome
    if code != 0:
        assert callback.metadata == {} and callback.amount is None and callback.receipt is None


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        ("cancelled", 1032),
        ("insufficient", 1),
        ("wrong_pin", 2001),
        ("unreachable", 1037),
        ("expired", 1019),
        ("subscriber_busy", 1001),
        ("system_error", 1025),
        ("unknown_code", 1031),
        ("string_code", "SFC_IC0003"),
        ("success", 0),
    ],
)
async def test_control_api_outcomes_arrive_as_the_right_callback(sim, listener, client, outcome, code):
    await sim.control("/control/next-outcome", {"outcome": outcome})
    accepted = await push(client, listener)  # the phone alone would mean success
    [received] = await listener.wait_for(1)
    callback = parse_stk_callback(received.body)
    assert callback.result_code == code
    query = await client.stk_query(accepted.checkout_request_id)
    assert (query.pending, query.result_code) == (False, code)


async def test_duplicate_callback_outcome_posts_the_same_body_twice(sim, listener, client):
    await push(client, listener, phone="254700000006")
    first, second = await listener.wait_for(2)
    assert first.body == second.body
    assert parse_stk_callback(first.body).is_success
    await sim.wait_for(lambda: len(sim.callbacks()) == 2)
    assert [c["status"] for c in sim.callbacks()] == [200, 200]


async def test_delayed_callback_arrives_late_but_query_knows_the_result_on_time(listener):
    async with running_simulator(callback_delay=0.05, late_delay=0.6) as sim:
        async with make_client(sim.base_url) as client:
            accepted = await push(client, listener, phone="254700000007")
            await asyncio.sleep(0.2)
            assert listener.received == []
            query = await client.stk_query(accepted.checkout_request_id)
            assert (query.pending, query.result_code) == (False, 0)
            [received] = await listener.wait_for(1, within=2.0)
            assert parse_stk_callback(received.body).is_success


async def test_no_callback_outcome_sends_nothing_but_query_reports_the_payment(sim, listener, client):
    accepted = await push(client, listener, phone="254700000005")
    await asyncio.sleep(0.3)
    assert listener.received == []
    assert sim.callbacks() == []
    query = await client.stk_query(accepted.checkout_request_id)
    assert (query.pending, query.result_code) == (False, 0)


async def test_query_while_pending_is_pending_and_after_the_result_is_final(sim, listener, client):
    await sim.control("/control/next-outcome", {"outcome": "cancelled", "delay": 0.5})
    accepted = await push(client, listener)
    pending = await client.stk_query(accepted.checkout_request_id)
    assert pending.pending and pending.result_code is None
    answered = sim.requests("stk_query")[-1]
    assert answered["status"] == 500
    assert answered["response"]["errorCode"] == "500.001.1001"
    await listener.wait_for(1)
    final = await client.stk_query(accepted.checkout_request_id)
    assert (final.pending, final.result_code) == (False, 1032)
    assert final.checkout_request_id == accepted.checkout_request_id
    assert isinstance(final.result_code, int)  # "1032" on the wire


async def test_query_answer_4999_is_pending(sim, listener, client):
    await sim.control("/control/faults", {"query_pending_4999": True})
    await sim.control("/control/next-outcome", {"outcome": "success", "delay": 5})
    accepted = await push(client, listener)
    result = await client.stk_query(accepted.checkout_request_id)
    assert result.pending and result.result_code is None
    assert sim.requests("stk_query")[-1]["status"] == 200


async def test_held_push_is_pending_until_resolved(sim, listener, client):
    await sim.control("/control/next-outcome", {"outcome": "hold"})
    accepted = await push(client, listener)
    await asyncio.sleep(0.2)
    assert (await client.stk_query(accepted.checkout_request_id)).pending
    await sim.control(
        "/control/resolve", {"CheckoutRequestID": accepted.checkout_request_id, "outcome": "wrong_pin"}
    )
    [received] = await listener.wait_for(1)
    assert parse_stk_callback(received.body).result_code == 2001


async def test_till_number_push_is_buy_goods_and_accepted(sim, listener):
    async with make_client(sim.base_url, till_number="5123456") as client:
        await push(client, listener)
    body = sim.requests("stk_push")[-1]["body"]
    assert body["TransactionType"] == "CustomerBuyGoodsOnline"
    assert body["PartyB"] == "5123456"
    assert sim.requests("stk_push")[-1]["status"] == 200


async def test_client_works_against_the_simulator_served_at_the_root(listener):
    async with running_simulator(prefix=None) as sim:
        for base in (sim.base_url, sim.base_url + "/"):
            async with make_client(base) as client:
                accepted = await push(client, listener)
                assert accepted.checkout_request_id
        assert {e["path"] for e in sim.requests("stk_push")} == {"/mpesa/stkpush/v1/processrequest"}


# -- OAuth token -------------------------------------------------------------------------
async def test_hundred_concurrent_pushes_share_one_token(sim, listener, client):
    phones = [f"2547100{n:04d}0" for n in range(100)]  # all end in 0: success
    results = await asyncio.gather(*(push(client, listener, phone=p) for p in phones))
    assert len({r.checkout_request_id for r in results}) == 100
    assert len(sim.requests("oauth")) == 1
    assert len(sim.requests("stk_push")) == 100
    assert all(e["status"] == 200 for e in sim.requests("stk_push"))


async def test_token_is_reused_then_refreshed_five_minutes_before_expiry(sim, listener):
    now = [1000.0]
    async with make_client(sim.base_url, clock=lambda: now[0]) as client:
        await push(client, listener)
        now[0] += 3599 - 300 - 1  # still inside the token's life minus the margin
        await push(client, listener)
        assert len(sim.requests("oauth")) == 1
        now[0] += 2  # now within 5 minutes of expiry: refresh before use
        await push(client, listener)
        assert len(sim.requests("oauth")) == 2


async def test_token_rejected_as_invalid_is_refreshed_and_the_push_replayed_once(sim, listener, client):
    await push(client, listener)
    await sim.control("/control/expire-tokens")
    accepted = await push(client, listener)
    pushes = sim.requests("stk_push")
    assert [p["status"] for p in pushes] == [200, 404, 200]
    assert pushes[1]["response"]["errorCode"] == "404.001.03"
    assert len(sim.requests("oauth")) == 2
    assert pushes[2]["checkout_request_id"] == accepted.checkout_request_id


async def test_a_token_refused_twice_is_not_replayed_a_third_time(sim, listener, client):
    await sim.control("/control/faults", {"invalid_token": True})
    with pytest.raises(DarajaUnavailable) as caught:
        await push(client, listener)
    assert caught.value.error_code == "404.001.03"
    assert len(sim.requests("stk_push")) == 2
    assert len(sim.requests("oauth")) == 2


async def test_concurrent_replays_after_expiry_refresh_the_token_once(sim, listener, client):
    await push(client, listener)
    await sim.control("/control/expire-tokens")
    await asyncio.gather(*(push(client, listener, phone=f"25471000{n:03d}0") for n in range(20)))
    assert len(sim.requests("oauth")) == 2


# -- Password / Timestamp ------------------------------------------------------------------
@pytest.fixture
def utc_process_zone():
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if previous is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = previous
    time.tzset()


async def test_password_and_timestamp_use_nairobi_time_even_when_the_process_is_utc(
    utc_process_zone, sim, listener, client
):
    assert time.localtime().tm_gmtoff == 0
    await push(client, listener)
    body = sim.requests("stk_push")[-1]["body"]
    stamp = body["Timestamp"]
    assert base64.b64decode(body["Password"]).decode() == "174379" + SANDBOX_PASSKEY + stamp
    assert abs(parse_daraja_datetime(stamp) - datetime.now(NAIROBI)) < timedelta(seconds=5)
    local_utc = time.strftime("%Y%m%d%H%M%S")  # what a naive implementation would send
    assert stamp != local_utc or datetime.now(NAIROBI).utcoffset() == timedelta(0)


# -- validation before sending ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("Amount", {"amount": 0}),
        ("Amount", {"amount": -10}),
        ("Amount", {"amount": 10.5}),
        ("Amount", {"amount": 2500.0}),
        ("Amount", {"amount": "2500"}),
        ("Amount", {"amount": True}),
        ("Amount", {"amount": 250_001}),
        ("PhoneNumber", {"phone": "0812345678"}),
        ("PhoneNumber", {"phone": "25470837414"}),
        ("PhoneNumber", {"phone": "hello"}),
        ("CallBackURL", {"callback_url": "https://example.org/mpesa/callback"}),
        ("CallBackURL", {"callback_url": "https://example.org/M-Pesa/cb"}),
        ("CallBackURL", {"callback_url": "ftp://example.org/hooks/lnm/x"}),
        ("CallBackURL", {"callback_url": "/hooks/lnm/x"}),
        ("CallBackURL", {"callback_url": "https://exa mple.org/x"}),
        ("AccountReference", {"account_reference": "SmilingSteps2"}),
        ("AccountReference", {"account_reference": "Smiling-Step"}),
        ("AccountReference", {"account_reference": ""}),
        ("AccountReference", {"account_reference": "TherapyCo"}),
        ("TransactionDesc", {"transaction_desc": "Booking BK-7F3A"}),
        ("TransactionDesc", {"transaction_desc": ""}),
        ("TransactionDesc", {"transaction_desc": "Therapy"}),
    ],
)
async def test_invalid_requests_are_refused_before_anything_is_sent(sim, listener, client, field, overrides):
    values = {
        "phone": SUCCESS_PHONE,
        "amount": 2500,
        "callback_url": listener.url(),
        "transaction_desc": "BK-7F3A",
    }
    values.update(overrides)
    with pytest.raises(StkRequestInvalid) as caught:
        await client.stk_push(**values)
    assert caught.value.field == field
    assert list(sim.state.log) == []  # not even an OAuth call


async def test_invalid_checkout_request_id_is_refused_before_querying(sim, client):
    with pytest.raises(StkRequestInvalid):
        await client.stk_query("")
    assert list(sim.state.log) == []


async def test_callback_url_with_surrounding_whitespace_is_sent_stripped(sim, listener, client):
    await client.stk_push(
        phone=SUCCESS_PHONE, amount=5, callback_url=f"  {listener.url()}\n", transaction_desc="BK1"
    )
    assert sim.requests("stk_push")[-1]["body"]["CallBackURL"] == listener.url()
    await listener.wait_for(1)


# -- error model ------------------------------------------------------------------------------
async def test_timed_out_push_is_outcome_unknown_and_never_retried(sim, listener):
    await sim.control("/control/faults", {"slow_seconds": 1.0})
    async with make_client(sim.base_url, timeout=0.3) as client:
        with pytest.raises(DarajaOutcomeUnknown):
            await push(client, listener)
        await asyncio.sleep(0.1)
        assert len(sim.requests("stk_push")) == 1
        # The push did reach the phone: the callback still comes.
        [received] = await listener.wait_for(1, within=3.0)
        assert parse_stk_callback(received.body).is_success


async def test_push_answered_503_is_unavailable(sim, listener, client):
    await sim.control("/control/faults", {"push_503": True})
    with pytest.raises(DarajaUnavailable) as caught:
        await push(client, listener)
    assert caught.value.http_status == 503
    assert len(sim.requests("stk_push")) == 1


async def test_system_busy_500_003_02_is_unavailable(sim, listener, client):
    await sim.control("/control/faults", {"push_busy": True})
    with pytest.raises(DarajaUnavailable) as caught:
        await push(client, listener)
    assert caught.value.error_code == "500.003.02"
    assert len(sim.requests("stk_push")) == 1


async def test_other_500_is_outcome_unknown_and_not_retried(sim, listener, client):
    await sim.control("/control/faults", {"push_500": True})
    with pytest.raises(DarajaOutcomeUnknown) as caught:
        await push(client, listener)
    assert caught.value.http_status == 500
    assert caught.value.request_id
    assert len(sim.requests("stk_push")) == 1
    await listener.wait_for(1)  # the simulator models "processed, answer lost"


async def test_connection_refused_is_unavailable(listener):
    async with make_client(f"http://127.0.0.1:{closed_port()}") as client:
        with pytest.raises(DarajaUnavailable):
            await push(client, listener)


async def test_oauth_outage_is_unavailable_after_three_tries_and_nothing_is_pushed(sim, listener, client):
    await sim.control("/control/faults", {"oauth_down": True})
    with pytest.raises(DarajaUnavailable) as caught:
        await push(client, listener)
    assert caught.value.http_status == 503
    assert len(sim.requests("oauth")) == 3
    assert sim.requests("stk_push") == []


async def test_concurrent_pushes_during_an_oauth_outage_share_one_failed_refresh(sim, listener, client):
    await sim.control("/control/faults", {"oauth_down": True})
    outcomes = await asyncio.gather(
        *(push(client, listener, phone=f"25471000{n:03d}0") for n in range(50)), return_exceptions=True
    )
    assert all(isinstance(o, DarajaUnavailable) for o in outcomes)
    assert len(sim.requests("oauth")) == 3  # one refresh with its retries, not 50
    await sim.control("/control/faults", {"oauth_down": False})
    assert (await push(client, listener)).checkout_request_id  # and it recovers afterwards


async def test_wrong_consumer_secret_fails_auth_without_retrying(sim, listener):
    async with make_client(sim.base_url, consumer_secret="wrong") as client:
        with pytest.raises(DarajaAuthFailed) as caught:
            await push(client, listener)
    assert caught.value.error_code == "400.008.01"
    assert isinstance(caught.value, DarajaUnavailable)  # nothing was pushed
    assert len(sim.requests("oauth")) == 1


async def test_wrong_passkey_is_a_wrong_credentials_rejection(sim, listener):
    async with make_client(sim.base_url, passkey="not-the-passkey") as client:
        with pytest.raises(DarajaWrongCredentials) as caught:
            await push(client, listener)
    assert isinstance(caught.value, DarajaRejected)
    assert caught.value.error_code == "500.001.1001"
    assert caught.value.error_message == "[MerchantValidate] - Wrong credentials"
    assert caught.value.request_id


async def test_unknown_shortcode_is_merchant_not_found(sim, listener):
    async with make_client(sim.base_url, short_code="600000") as client:
        with pytest.raises(DarajaMerchantNotFound):
            await push(client, listener)


async def test_second_push_to_a_busy_phone_is_subscriber_busy(sim, listener, client):
    await sim.control("/control/faults", {"subscriber_lock": True})
    await sim.control("/control/next-outcome", {"outcome": "success", "delay": 5})
    await push(client, listener)
    with pytest.raises(DarajaSubscriberBusy):
        await push(client, listener)


async def test_query_is_retried_three_times_then_unavailable(sim, listener, client):
    accepted = await push(client, listener)
    await sim.control("/control/faults", {"query_503": True})
    with pytest.raises(DarajaUnavailable):
        await client.stk_query(accepted.checkout_request_id)
    assert len(sim.requests("stk_query")) == 3


async def test_query_during_an_oauth_outage_does_not_multiply_oauth_retries(sim, listener, client):
    accepted = await push(client, listener)
    await sim.control("/control/faults", {"oauth_down": True})
    async with make_client(sim.base_url) as fresh:  # no cached token
        with pytest.raises(DarajaOAuthError):
            await fresh.stk_query(accepted.checkout_request_id)
    assert len(sim.requests("oauth")) == 1 + 3
    assert len(sim.requests("stk_query")) == 0


async def test_query_recovers_when_a_retry_succeeds(sim, listener):
    async with make_client(sim.base_url, retry_base_delay=0.3) as client:
        accepted = await push(client, listener)
        await listener.wait_for(1)
        await sim.control("/control/faults", {"query_503": True})

        async def heal_after_first_failure() -> None:
            await sim.wait_for(lambda: len(sim.requests("stk_query")) == 1)
            await sim.control("/control/faults", {"query_503": False})

        healer = asyncio.create_task(heal_after_first_failure())
        result = await client.stk_query(accepted.checkout_request_id)
        await healer
    assert (result.pending, result.result_code) == (False, 0)
    assert [q["status"] for q in sim.requests("stk_query")] == [503, 200]


async def test_query_for_an_unknown_checkout_id_is_rejected_without_retry(sim, client):
    with pytest.raises(DarajaRejected) as caught:
        await client.stk_query("ws_CO_000000000000000000")
    assert caught.value.error_code == "400.002.02"
    assert len(sim.requests("stk_query")) == 1


# -- connectivity, PINs ----------------------------------------------------------------------
# Feature: mpesa-payment-integration, Property 41: Connectivity Test Verifies Credentials
async def test_connectivity_check_reports_ok_with_latency_and_a_failure_with_a_reason(sim, listener):
    async with make_client(sim.base_url) as client:
        await push(client, listener)
        result = await client.check_connectivity()
        assert result.ok and result.error is None and result.latency_ms >= 0
        assert len(sim.requests("oauth")) == 2  # a fresh token, not the cached one
    async with make_client(sim.base_url, consumer_secret="wrong") as client:
        result = await client.check_connectivity()
        assert not result.ok
        assert "400.008.01" in result.error and "wrong" not in result.error
    async with make_client(f"http://127.0.0.1:{closed_port()}") as client:
        result = await client.check_connectivity()
        assert not result.ok and "ConnectError" in result.error


# Feature: mpesa-payment-integration, Property 48: No PIN Storage
async def test_no_pin_is_ever_asked_for_sent_or_stored(sim, listener, client):
    for phone in ("254700000000", "254700000003", "254700000006"):
        await push(client, listener, phone=phone)
    await listener.wait_for(4)
    accepted = await push(client, listener)
    await client.stk_query(accepted.checkout_request_id)
    snapshot = await sim.control("/control/log")
    transactions = await sim.control("/control/transactions")

    def keys(value) -> set[str]:
        if isinstance(value, dict):
            return {k.lower() for k in value} | set().union(*(keys(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(*(keys(v) for v in value)) if value else set()
        return set()

    everything = keys(snapshot) | keys(transactions)
    everything |= set().union(*(keys(parse_stk_callback(r.body).metadata) for r in listener.received))
    assert "pin" not in everything and not any("pin" in key for key in everything)
    assert not any(hasattr(tx, "pin") for tx in sim.state.transactions.values())


async def test_logs_never_show_phone_token_or_password(sim, listener, client, caplog):
    caplog.set_level("DEBUG", logger="core.mpesa")
    accepted = await push(client, listener)
    await client.stk_query(accepted.checkout_request_id)
    text = caplog.text
    body = sim.requests("stk_push")[-1]["body"]
    assert "4149" in text  # the masked phone is there...
    assert SUCCESS_PHONE not in text and "708374149" not in text  # ...the number is not
    assert body["Password"] not in text and SANDBOX_PASSKEY not in text
    assert client.tokens._token not in text
