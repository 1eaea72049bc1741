"""Differential tests of the vectorised drift paths against per-value references.

``category_keys`` keys object columns by type and distinct value instead of one
``category_key`` call per value; ``ModelWindow.update`` updates all the features
of a batch together. Both must give exactly what the per-value / per-feature
paths give: the references below are the former implementations.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from modeltrace.drift.reference import Reference
from modeltrace.drift.sketches import category_key, category_keys


def _category_keys_per_value(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The former object-column path: ``category_key`` on every value."""
    normalised = [category_key(v) for v in values.tolist()]
    missing = np.fromiter((k is None for k in normalised), dtype=bool, count=len(normalised))
    keys = np.array([k if k is not None else "" for k in normalised], dtype=object)
    return keys.astype(str) if keys.size else np.array([], dtype=str), missing


def _object_column(items: list[Any]) -> np.ndarray:
    column = np.empty(len(items), dtype=object)
    column[:] = items
    return column


# Values that collide under == but not under category_key (True/1/1.0, Decimals),
# missing markers, numpy scalars, huge ints, bytes, non-integral floats.
CELL = st.one_of(
    st.sampled_from(["a", "b", "", "1", "True", "1.5", "é", "a\x00"]),
    st.none(),
    st.just(math.nan),
    st.sampled_from([0, 1, -1, 2**70, True, False, 0.0, -0.0, 1.0, 1.5, 1e300, math.inf]),
    st.integers(-3, 3).map(np.int64),
    st.sampled_from([0.1, 2.0, math.nan]).map(np.float32),
    st.booleans().map(np.bool_),
    st.sampled_from([b"a", b"", b"\xff"]),
    st.sampled_from([Decimal("1.0"), Decimal("1.00")]),
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(CELL, max_size=40))
def test_object_category_keys_equal_the_per_value_path(items: list[Any]) -> None:
    column = _object_column(items)
    keys, missing = category_keys(column)
    expected_keys, expected_missing = _category_keys_per_value(column)
    assert keys.dtype.kind == "U"
    assert keys.tolist() == expected_keys.tolist()
    np.testing.assert_array_equal(missing, expected_missing)


def test_common_shapes_of_object_columns_equal_the_per_value_path() -> None:
    rng = np.random.default_rng(3)
    texts = rng.choice(["red", "green", "blue", ""], 5000).astype(object)
    with_none = texts.copy()
    with_none[rng.random(5000) < 0.1] = None
    as_extracted = with_none.copy()  # the OTLP decoders' text columns: str, float or None
    as_extracted[rng.random(5000) < 0.1] = 2.0
    as_extracted[rng.random(5000) < 0.05] = 0.25
    for column in (texts, with_none, as_extracted, rng.integers(0, 5, 5000).astype(object)):
        keys, missing = category_keys(column)
        expected_keys, expected_missing = _category_keys_per_value(column)
        assert keys.tolist() == expected_keys.tolist()
        np.testing.assert_array_equal(missing, expected_missing)
        assert int(missing.sum()) == sum(category_key(v) is None for v in column.tolist())


def test_reference_of_object_columns_equals_one_of_prenormalised_text() -> None:
    """The reference build on raw object columns equals the build on the same columns
    keyed value by value beforehand (text columns take the separate ``U`` path)."""
    rng = np.random.default_rng(5)
    n = 4000
    raw: dict[str, np.ndarray] = {}
    for i in range(4):
        column = rng.choice([f"v{j}" for j in range(6 + i)], n).astype(object)
        column[rng.random(n) < 0.05] = None
        column[rng.random(n) < 0.03] = ""
        column[rng.random(n) < 0.02] = math.nan
        column[rng.random(n) < 0.05] = 3.0
        raw[f"c{i}"] = column
    prenormalised = {name: _category_keys_per_value(col)[0] for name, col in raw.items()}
    names = list(raw)
    built = Reference.from_data(pd.DataFrame(raw), categorical=names).to_dict()
    expected = Reference.from_data(prenormalised, categorical=names).to_dict()
    for ours, theirs in zip(built["features"], expected["features"], strict=True):
        assert ours == theirs
    assert built["rows"] == expected["rows"]
