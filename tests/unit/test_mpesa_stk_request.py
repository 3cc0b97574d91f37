"""STK request building: timestamps, Password, field rules, and the client's exact payload.

Nothing here opens a socket: the client runs over ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import SANDBOX_PASSKEY, load_settings
from core.mpesa import (
    DEFAULT_ACCOUNT_REFERENCE,
    DarajaClient,
    StkRequestInvalid,
    redact_checkout_id,
    safe_account_reference,
    safe_transaction_desc,
)
from core.mpesa.stk_request import (
    ACCOUNT_REFERENCE_MAX,
    MAX_AMOUNT,
    TRANSACTION_DESC_MAX,
    build_stk_push_payload,
    validate_account_reference,
    validate_callback_url,
    validate_transaction_desc,
)
from core.mpesa.timestamps import (
    NAIROBI,
    daraja_timestamp,
    parse_daraja_datetime,
    stk_password,
)

FORBIDDEN = re.compile(r"therap|counsel|mental|psych", re.IGNORECASE)
CALLBACK = "https://example.org/hooks/lnm/abc123"


class CapturingDaraja:
    """A MockTransport handler that plays Daraja and keeps every request body."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def pushes(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith("processrequest")]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/oauth/v1/generate"):
            return httpx.Response(200, json={"access_token": "tok", "expires_in": "3599"})
        return httpx.Response(
            200,
            json={
                "MerchantRequestID": "1-2-1",
                "CheckoutRequestID": "ws_CO_1",
                "ResponseCode": "0",
                "ResponseDescription": "Success. Request accepted for processing",
                "CustomerMessage": "Success. Request accepted for processing",
            },
        )


@pytest.fixture(scope="module")
def mock_daraja():
    """One client over a MockTransport on a private loop, shared by Hypothesis examples."""
    loop = asyncio.new_event_loop()
    handler = CapturingDaraja()
    client = DarajaClient(
        base_url="https://daraja.test",
        short_code="174379",
        passkey=SANDBOX_PASSKEY,
        consumer_key="k",
        consumer_secret="s",
        transport=httpx.MockTransport(handler),
    )
    yield loop, client, handler
    loop.run_until_complete(client.aclose())
    loop.close()


def push(mock_daraja, **kwargs) -> dict:
    loop, client, handler = mock_daraja
    before = len(handler.pushes())
    values = {"phone": "0708374149", "amount": 2500, "callback_url": CALLBACK, "transaction_desc": "BK1"}
    values.update(kwargs)
    loop.run_until_complete(client.stk_push(**values))
    assert len(handler.pushes()) == before + 1
    return handler.pushes()[-1]


# -- timestamps and Password -------------------------------------------------------------
def test_timestamp_is_nairobi_time_whatever_zone_the_moment_is_in():
    assert daraja_timestamp(datetime(2024, 1, 1, 21, 30, 5, tzinfo=UTC)) == "20240102003005"


def test_timestamp_refuses_a_naive_datetime():
    with pytest.raises(ValueError):
        daraja_timestamp(datetime(2024, 1, 1))  # noqa: DTZ001


def test_timestamp_of_now_is_within_seconds_of_nairobi_now():
    stamp = parse_daraja_datetime(daraja_timestamp())
    assert abs(stamp - datetime.now(NAIROBI)) < timedelta(seconds=3)


def test_password_matches_safaricoms_published_example():
    expected = (
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJh"
        "ZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3"
    )
    assert stk_password("174379", SANDBOX_PASSKEY, "20160216165627") == expected


@pytest.mark.parametrize("value", ["2019121910211", "20191219102115x", "20191399102115", 2019])
def test_parse_daraja_datetime_rejects_bad_values(value):
    with pytest.raises(ValueError):
        parse_daraja_datetime(value)


# -- field rules -----------------------------------------------------------------------
def test_payload_has_every_daraja_field_with_one_timestamp(mock_daraja):
    body = push(mock_daraja, phone="+254 708-374-149")
    assert set(body) == {
        "BusinessShortCode", "Password", "Timestamp", "TransactionType", "Amount", "PartyA",
        "PartyB", "PhoneNumber", "CallBackURL", "AccountReference", "TransactionDesc",
    }  # fmt: skip
    assert body["TransactionType"] == "CustomerPayBillOnline"
    assert body["PartyA"] == body["PhoneNumber"] == "254708374149"
    assert body["PartyB"] == body["BusinessShortCode"] == "174379"
    decoded = base64.b64decode(body["Password"]).decode()
    assert decoded == "174379" + SANDBOX_PASSKEY + body["Timestamp"]


def test_till_number_makes_it_a_buy_goods_push():
    payload = build_stk_push_payload(
        short_code="174379",
        passkey="p",
        timestamp="20240101120000",
        phone="0712345678",
        amount=10,
        callback_url=CALLBACK,
        account_reference="SmilingSteps",
        transaction_desc="BK1",
        till_number="5123456",
    )
    assert payload["TransactionType"] == "CustomerBuyGoodsOnline"
    assert payload["PartyB"] == "5123456"
    assert payload["BusinessShortCode"] == "174379"


def test_callback_url_is_stripped_of_surrounding_whitespace():
    assert validate_callback_url("  https://example.org/hooks/lnm/x \n") == "https://example.org/hooks/lnm/x"


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org/x", "example.org/hooks", "https://", "https://example.org/mpesa/cb",
     "https://MPESA.example.org/cb", "https://example.org/m-pesa", "https://exa mple.org/x", 42],
)  # fmt: skip
def test_bad_callback_urls_are_refused(url):
    with pytest.raises(StkRequestInvalid) as caught:
        validate_callback_url(url)
    assert caught.value.field == "CallBackURL"


@pytest.mark.parametrize("reference", ["", "SmilingSteps1", "Smiling Step", "Bk-1", "Therapy", None])
def test_bad_account_references_are_refused(reference):
    with pytest.raises(StkRequestInvalid) as caught:
        validate_account_reference(reference)
    assert caught.value.field == "AccountReference"


@pytest.mark.parametrize(
    "description", ["", "   ", "A" * 14, "psych session", "Counselling", "BK\n1", "Café", None]
)
def test_bad_transaction_descriptions_are_refused(description):
    with pytest.raises(StkRequestInvalid) as caught:
        validate_transaction_desc(description)
    assert caught.value.field == "TransactionDesc"


# Feature: mpesa-payment-integration, Property 12: STK Push Contains Business Name
@settings(max_examples=150)
@given(st.text(max_size=60), st.text(max_size=60))
def test_business_name_and_description_always_fit_daraja_limits(mock_daraja, reference, text):
    description = safe_transaction_desc(reference)
    assert 1 <= len(description) <= TRANSACTION_DESC_MAX
    assert validate_transaction_desc(description) == description
    account = safe_account_reference(text)
    assert 1 <= len(account) <= ACCOUNT_REFERENCE_MAX
    assert validate_account_reference(account) == account
    body = push(mock_daraja, transaction_desc=description)
    assert body["AccountReference"] == DEFAULT_ACCOUNT_REFERENCE == "SmilingSteps"
    assert len(body["TransactionDesc"]) <= TRANSACTION_DESC_MAX
    assert not FORBIDDEN.search(body["AccountReference"] + body["TransactionDesc"])


# Feature: mpesa-payment-integration, Property 13: STK Push Contains Correct Amount
@settings(max_examples=150)
@given(st.integers(min_value=1, max_value=MAX_AMOUNT))
def test_amount_sent_always_equals_the_price(mock_daraja, price):
    body = push(mock_daraja, amount=price)
    assert body["Amount"] == price
    assert type(body["Amount"]) is int


@settings(max_examples=100)
@given(
    st.integers(max_value=0)
    | st.integers(min_value=MAX_AMOUNT + 1)
    | st.floats()
    | st.booleans()
    | st.text(max_size=8)
    | st.none()
)
def test_amounts_that_are_not_whole_positive_shillings_are_refused_unsent(mock_daraja, amount):
    loop, client, handler = mock_daraja
    before = len(handler.requests)
    with pytest.raises(StkRequestInvalid) as caught:
        loop.run_until_complete(
            client.stk_push(phone="0708374149", amount=amount, callback_url=CALLBACK, transaction_desc="BK1")
        )
    assert caught.value.field == "Amount"
    assert len(handler.requests) == before


# Feature: mpesa-payment-integration, Property 44: Payment Data Uses TLS Encryption
def test_client_verifies_tls_and_refuses_anything_older_than_tls_1_2():
    client = DarajaClient(
        base_url="https://sandbox.safaricom.co.ke",
        short_code="174379",
        passkey="p",
        consumer_key="k",
        consumer_secret="s",
    )
    context = client.ssl_context
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    # The pooled transport really uses this context (httpx internals, checked defensively).
    pool = getattr(getattr(client._http, "_transport", None), "_pool", None)
    assert getattr(pool, "_ssl_context", context) is context
    asyncio.run(client.aclose())


# Feature: mpesa-payment-integration, Property 77: Sandbox Mode Uses Sandbox Credentials
def test_sandbox_settings_use_the_sandbox_host_shortcode_and_credentials():
    settings_ = load_settings(
        {"MPESA_ENVIRONMENT": "sandbox", "MPESA_CONSUMER_KEY": "k", "MPESA_CONSUMER_SECRET": "s"}
    )
    handler = CapturingDaraja()

    async def scenario() -> DarajaClient:
        client = DarajaClient.from_settings(settings_, transport=httpx.MockTransport(handler))
        async with client:
            await client.stk_push(
                phone="254708374149", amount=1, callback_url=CALLBACK, transaction_desc="BK1"
            )
        return client

    client = asyncio.run(scenario())
    assert client.base_url == "https://sandbox.safaricom.co.ke"
    assert client.short_code == "174379"
    assert {r.url.host for r in handler.requests} == {"sandbox.safaricom.co.ke"}
    oauth = handler.requests[0]
    assert oauth.headers["Authorization"] == "Basic " + base64.b64encode(b"k:s").decode()
    body = handler.pushes()[0]
    assert base64.b64decode(body["Password"]).decode() == "174379" + SANDBOX_PASSKEY + body["Timestamp"]


def test_base_url_works_with_or_without_trailing_slash():
    for base in ("https://daraja.test/prefix", "https://daraja.test/prefix/", " https://daraja.test/prefix "):
        handler = CapturingDaraja()

        async def scenario(base: str = base, handler: CapturingDaraja = handler) -> None:
            async with DarajaClient(
                base_url=base,
                short_code="174379",
                passkey="p",
                consumer_key="k",
                consumer_secret="s",
                transport=httpx.MockTransport(handler),
            ) as client:
                await client.stk_push(
                    phone="0708374149", amount=1, callback_url=CALLBACK, transaction_desc="x"
                )

        asyncio.run(scenario())
        assert [r.url.path for r in handler.requests] == [
            "/prefix/oauth/v1/generate",
            "/prefix/mpesa/stkpush/v1/processrequest",
        ]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("ws_CO_10122023133400273768130105", "ws_CO_10122023133400273*****0105"),
        ("ws_CO_22112022152650652748458100", "ws_CO_22112022152650652*****8100"),
        # a longer sequence number (the chaos run's simulator made these after 1 000 pushes)
        ("ws_CO_04122026102603002000703422281", "ws_CO_04122026102603002000*****2281"),
        ("ws_CO_27072017154747416", "ws_CO_27072017154747416"),  # old style: no phone inside
        ("anything", "anything"),
    ],
)
def test_checkout_ids_are_logged_without_the_embedded_phone_number(raw, shown):
    assert redact_checkout_id(raw) == shown
