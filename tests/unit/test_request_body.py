"""JSON depth is measured before parsing, in linear time, and deep or broken JSON is a ValueError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhooks.request_body import load_json, nesting_depth

TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\ az\n\u00e9'), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_the_measured_depth_is_the_real_depth_whatever_the_strings_hold(value: Any) -> None:
    assert nesting_depth(json.dumps(value).encode()) == _depth(value)
    assert nesting_depth(json.dumps(value, ensure_ascii=False).encode()) == _depth(value)


@pytest.mark.parametrize(
    "raw", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[" * 100_000]
)
def test_json_nested_deeper_than_the_limit_is_refused_before_parsing(raw: bytes) -> None:
    with pytest.raises(ValueError, match="nested deeper than 32"):
        load_json(raw, max_depth=32)


def test_json_at_the_limit_is_parsed() -> None:
    assert load_json(b"[" * 32 + b"]" * 32, max_depth=32) == json.loads(b"[" * 32 + b"]" * 32)


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"1" * 5000, b'"unterminated', b""])
def test_broken_json_is_a_value_error_with_a_short_reason(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        load_json(raw)


@pytest.mark.timeout(30)  # a hang guard, not a speed check: a quadratic scan would take many minutes
@pytest.mark.parametrize(
    ("raw", "depth"),
    [(b'"' + b'\\"' * 250_000, 0), (b'[["' + b"\\" * 500_000, 2)],
    ids=["escaped-quotes", "backslashes"],
)
def test_unterminated_strings_in_half_a_megabyte_end_the_scan_in_one_pass(raw: bytes, depth: int) -> None:
    assert nesting_depth(raw) == depth
    with pytest.raises(ValueError):
        load_json(raw)
