"""Pure parts of the dashboard's figures: the median from a histogram, failure labels."""

from __future__ import annotations

import statistics
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from core.services.reporting.dashboard import failure_reason, histogram_median


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=60))
def test_the_histogram_median_is_the_median_of_the_values(values: list[int]) -> None:
    counts: Counter[float] = Counter(float(v) for v in values)
    assert histogram_median(counts) == statistics.median(values)


def test_no_values_have_no_median() -> None:
    assert histogram_median(Counter()) is None


def test_failure_labels_name_the_result_code_and_its_meaning() -> None:
    assert failure_reason("FAILED", "1") == "Insufficient balance (1)"
    assert failure_reason("FAILED", "SFC_IC0003").endswith("(SFC_IC0003)")
    assert failure_reason("TIMED_OUT", None) == "No answer before the deadline"
    assert failure_reason("FAILED", None) == "Failed without a result code"
