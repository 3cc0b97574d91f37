"""parse_stk_callback: every real-world shape parses; anything else is InvalidCallback."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.mpesa import InvalidCallback, StkCallback, parse_stk_callback
from core.mpesa.callback import MAX_BODY_BYTES

SAMPLES = Path("/work/shared/samples/real-world-callbacks/stk_callbacks")
SAMPLE_FILES = sorted(SAMPLES.glob("*.json"))
NAIROBI = ZoneInfo("Africa/Nairobi")


def sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def success_body(amount: object = 2500) -> dict:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": "ws_CO_191220191020363925",
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": amount},
                        {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20191219102115},
                        {"Name": "PhoneNumber", "Value": 254708374149},
                    ]
                },
            }
        }
    }


def test_the_sample_directory_is_there():
    assert len(SAMPLE_FILES) >= 10


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_every_real_world_sample_parses(path):
    raw = path.read_bytes()
    parsed = parse_stk_callback(raw)
    assert isinstance(parsed, StkCallback)
    assert parsed.checkout_request_id.startswith("ws_CO_")
    assert parsed == parse_stk_callback(json.loads(raw))  # bytes and dict agree
    if parsed.is_success:
        assert parsed.amount == 1
        assert parsed.receipt and len(parsed.receipt) == 10
        assert parsed.transaction_date is not None
        assert parsed.phone and parsed.phone.startswith("254")


def test_official_success_with_decimal_amount():
    parsed = parse_stk_callback(sample("daraja_docs_success_amount_decimal"))
    assert parsed.result_code == 0
    assert parsed.amount == 1
    assert parsed.amount_raw == 1.0
    assert parsed.receipt == "NLJ7RT61SV"
    assert parsed.transaction_date == datetime(2019, 12, 19, 10, 21, 15, tzinfo=NAIROBI)
    assert parsed.transaction_date.utcoffset().total_seconds() == 3 * 3600
    assert parsed.phone == "254708374149"
    assert parsed.merchant_request_id == "29115-34620561-1"


def test_balance_without_value_is_kept_as_none_in_metadata():
    parsed = parse_stk_callback(sample("osenco_mpesa_success_balance_without_value"))
    assert parsed.metadata["Balance"] is None
    assert parsed.amount == 1 and parsed.receipt == "LGR7OWQX0R"


def test_cancelled_callback_has_no_metadata():
    parsed = parse_stk_callback(sample("daraja_docs_failure_1032_canceled"))
    assert parsed.result_code == 1032
    assert parsed.result.outcome == "cancelled"
    assert (parsed.amount, parsed.receipt, parsed.transaction_date, parsed.phone) == (None,) * 4
    assert parsed.metadata == {}


def test_non_numeric_result_code_stays_a_string_and_is_a_failure():
    parsed = parse_stk_callback(sample("osen_wc_mpesa_issue48_resultcode_string"))
    assert parsed.result_code == "SFC_IC0003"
    assert not parsed.is_success
    assert parsed.result.outcome == "failed" and not parsed.result.known


def test_unknown_code_with_extra_keys_is_a_generic_failure():
    parsed = parse_stk_callback(sample("tinypesa_relay_1031_extra_fields"))
    assert parsed.result_code == 1031
    assert parsed.amount is None  # the relay's own "Amount" key is not CallbackMetadata
    assert not parsed.result.known


def test_fractional_amount_is_parsed_but_marked_not_whole():
    parsed = parse_stk_callback(success_body(1.5))
    assert parsed.is_success
    assert parsed.amount is None
    assert parsed.amount_raw == 1.5
    assert parsed.amount_not_whole


@pytest.mark.parametrize(
    ("value", "whole"),
    [(2500, 2500), (2500.0, 2500), ("2500", 2500), ("2500.00", 2500), (0, None), (-5, None),
     ("abc", None), (1e30, None)],
)  # fmt: skip
def test_amounts_compare_numerically(value, whole):
    parsed = parse_stk_callback(success_body(value))
    assert parsed.amount == whole
    assert parsed.amount_raw == value


def test_result_code_as_numeric_string_is_normalised():
    body = success_body()
    body["Body"]["stkCallback"]["ResultCode"] = "0"
    assert parse_stk_callback(body).result_code == 0


def test_unknown_top_level_and_item_keys_are_ignored():
    body = success_body()
    body["Extra"] = "x"
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"].append({"Name": "New", "Value": 1})
    parsed = parse_stk_callback(body)
    assert parsed.metadata["New"] == 1 and parsed.amount == 2500


def test_unparseable_transaction_date_is_none_but_kept_raw():
    body = success_body()
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"][3]["Value"] = 20191399999999
    parsed = parse_stk_callback(body)
    assert parsed.transaction_date is None
    assert parsed.metadata["TransactionDate"] == 20191399999999


def _mutated(path: tuple, value: object) -> dict:
    body = success_body()
    node = body
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


_DELETE = object()
_STK = ("Body", "stkCallback")
_ITEMS = (*_STK, "CallbackMetadata", "Item")

MALFORMED: dict[str, object] = {
    "not json": b"{not json",
    "empty": b"",
    "json array": b"[]",
    "json string": b'"hello"',
    "nan literal": b'{"Body": NaN}',
    "infinite number": b'{"Body": {"stkCallback": {"ResultCode": 1e999}}}',
    "invalid utf-8": b'{"Body": "\xff\xfe"}',
    "huge integer": b'{"a": ' + b"9" * 5000 + b"}",
    "no Body": {"body": {}},
    "Body not object": {"Body": []},
    "no stkCallback": {"Body": {}},
    "stkCallback not object": {"Body": {"stkCallback": "x"}},
    "no ResultCode": _mutated((*_STK, "ResultCode"), _DELETE),
    "ResultCode null": _mutated((*_STK, "ResultCode"), None),
    "ResultCode bool": _mutated((*_STK, "ResultCode"), False),
    "ResultCode float": _mutated((*_STK, "ResultCode"), 0.5),
    "ResultCode list": _mutated((*_STK, "ResultCode"), [0]),
    "ResultCode empty": _mutated((*_STK, "ResultCode"), ""),
    "no ResultDesc": _mutated((*_STK, "ResultDesc"), _DELETE),
    "ResultDesc int": _mutated((*_STK, "ResultDesc"), 5),
    "no CheckoutRequestID": _mutated((*_STK, "CheckoutRequestID"), _DELETE),
    "CheckoutRequestID int": _mutated((*_STK, "CheckoutRequestID"), 123),
    "CheckoutRequestID blank": _mutated((*_STK, "CheckoutRequestID"), "  "),
    "CheckoutRequestID long": _mutated((*_STK, "CheckoutRequestID"), "w" * 500),
    "MerchantRequestID null": _mutated((*_STK, "MerchantRequestID"), None),
    "CallbackMetadata list": _mutated((*_STK, "CallbackMetadata"), []),
    "Item object": _mutated((*_STK, "CallbackMetadata", "Item"), {"Name": "Amount"}),
    "Item entry without Name": _mutated((*_ITEMS, 0), {"Value": 1}),
    "Item entry a string": _mutated((*_ITEMS, 0), "Amount"),
    "Value nested": _mutated((*_ITEMS, 0), {"Name": "Amount", "Value": {"x": 1}}),
    "Amount bool": _mutated((*_ITEMS, 0), {"Name": "Amount", "Value": True}),
    "receipt number": _mutated((*_ITEMS, 1), {"Name": "MpesaReceiptNumber", "Value": 12}),
    "too deep": {"Body": {"stkCallback": {"ResultCode": 0, "x": [[[[[[1]]]]]]}}},
    "very deep": b"[" * 30_000 + b"]" * 30_000,
    "deep dict": json.loads("[" * 500 + "]" * 500),
    "oversized": b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bodies_raise_invalid_callback(body):
    with pytest.raises(InvalidCallback) as caught:
        parse_stk_callback(body)
    assert caught.value.reason


def test_a_valid_body_at_the_size_limit_still_parses():
    body = success_body()
    body["pad"] = ""
    size = len(json.dumps(body).encode())
    body["pad"] = "x" * (MAX_BODY_BYTES - size)
    raw = json.dumps(body).encode()
    assert len(raw) == MAX_BODY_BYTES
    assert parse_stk_callback(raw).amount == 2500


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
daraja_keys = st.sampled_from(
    ["Body", "stkCallback", "ResultCode", "ResultDesc", "MerchantRequestID",
     "CheckoutRequestID", "CallbackMetadata", "Item", "Name", "Value", "Amount"]
)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises_anything_but_invalid_callback(value):
    for body in (value, json.dumps(value).encode()):
        try:
            parse_stk_callback(body)
        except InvalidCallback:
            pass


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_invalid_callback(raw):
    try:
        parse_stk_callback(raw)
    except InvalidCallback:
        pass


_SHAPE_PATH = ("Body", "stkCallback", "CallbackMetadata", "Item", 0)


@settings(max_examples=200)
@given(
    st.sampled_from(SAMPLE_FILES),
    st.integers(0, len(_SHAPE_PATH)),
    daraja_keys,
    json_values,
)
def test_mutated_real_callbacks_never_raise_anything_but_invalid_callback(path, depth, key, value):
    body = json.loads(path.read_bytes())
    node = body
    # Walk down the Daraja shape `depth` steps (as far as it goes), then overwrite there.
    for step in _SHAPE_PATH[:depth]:
        if isinstance(node, dict) and isinstance(step, str) and isinstance(node.get(step), dict | list):
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and node:
            node = node[step]
    if isinstance(node, dict):
        node[key] = value
    elif node:
        node[0] = value
    try:
        parsed = parse_stk_callback(body)
    except InvalidCallback:
        return
    assert parsed.amount is None or parsed.amount >= 1
