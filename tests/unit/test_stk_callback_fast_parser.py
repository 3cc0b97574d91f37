"""parse_callback_fields (the intake's lean door) decides every body as parse_stk_callback does.

The fast path (a typed msgspec decode of the Daraja layout) may only accept faster: same
values for what it accepts, the reference parser's very refusal (same reason) for the rest.
Checked on every real-world sample and on generated, mutated and hostile bodies.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from core.mpesa import InvalidCallback, parse_stk_callback
from core.mpesa.callback import CallbackFields, _fast_fields, parse_callback_fields
from tests.support.fuzz import Body, stk_bodies

SAMPLES = Path("/work/shared/samples/real-world-callbacks/stk_callbacks")
SAMPLE_FILES = sorted(SAMPLES.glob("*.json"))


def reference(body: bytes) -> CallbackFields | str:
    try:
        return CallbackFields.of(parse_stk_callback(body))
    except InvalidCallback as exc:
        return f"refused: {exc}"


def fast(body: bytes) -> CallbackFields | str:
    try:
        return parse_callback_fields(body)
    except InvalidCallback as exc:
        return f"refused: {exc}"


def same(a: CallbackFields | str, b: CallbackFields | str) -> bool:
    """Equal, with the raw Amount's type too (1 and 1.0 compare equal, but read differently)."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a == b and type(a.amount_raw) is type(b.amount_raw) and type(a.result_code) is type(b.result_code)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_every_real_world_sample_gives_the_reference_parsers_fields(path: Path) -> None:
    raw = path.read_bytes()
    assert same(fast(raw), reference(raw))


def test_the_daraja_layout_takes_the_fast_path() -> None:
    raw = (SAMPLES / "daraja_docs_success_amount_decimal.json").read_bytes()
    assert _fast_fields(raw) is not None  # not vacuous: the typed decoder accepts the common body


@pytest.mark.parametrize(
    "change",
    [
        lambda stk: stk.update(Extra={"a": {"b": {"c": {"d": [1]}}}}),  # unknown and deep
        lambda stk: stk.update(ResultCode=0.0),
        lambda stk: stk.update(ResultCode=True),
        lambda stk: stk.update(ResultCode="  "),
        lambda stk: stk.update(CheckoutRequestID="   "),
        lambda stk: stk.update(CheckoutRequestID="x" * 101),
        lambda stk: stk["CallbackMetadata"]["Item"].append({"Name": "Amount", "Value": [1]}),
        lambda stk: stk["CallbackMetadata"]["Item"].insert(0, {"Name": "Amount", "Value": "2,500"}),
        lambda stk: stk["CallbackMetadata"]["Item"].extend([{"Name": "x"}] * 51),
        lambda stk: stk["CallbackMetadata"].update(Item=None),
        lambda stk: stk.update(CallbackMetadata=None),
        lambda stk: stk["CallbackMetadata"]["Item"][0].update(Value=True),
    ],
)
def test_odd_bodies_are_decided_as_the_reference_parser_decides(change) -> None:  # type: ignore[no-untyped-def]
    body = json.loads((SAMPLES / "daraja_docs_success_amount_decimal.json").read_bytes())
    change(body["Body"]["stkCallback"])
    raw = json.dumps(body).encode()
    assert same(fast(raw), reference(raw))


def test_an_integer_pythons_json_refuses_is_refused_as_before() -> None:
    body = json.loads((SAMPLES / "daraja_docs_success_amount_decimal.json").read_bytes())
    body["Body"]["stkCallback"]["CallbackMetadata"]["Item"].append({"Name": "Big", "Value": 7})
    raw = json.dumps(body).replace('"Value": 7}', '"Value": ' + "9" * 5000 + "}").encode()
    assert fast(raw) == reference(raw) == "refused: body is not valid JSON (ValueError)"


# Feature: mpesa-payment-integration, Property 20: callback validation (the fast door agrees)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stk_bodies())
def test_generated_and_hostile_bodies_are_decided_as_the_reference_parser_decides(body: Body) -> None:
    assert same(fast(body.data), reference(body.data))
