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
from hypothesis import example, given, settings
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
@example(items=["\x00"])  # a category, though a numpy str array reads it as ""
@example(items=["\x00", b"\x00", None, ""])
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


def _numeric_batch(rng: np.random.Generator, n: int, reference: Reference) -> dict[str, Any]:
    """Columns hitting every case: edges exactly, the maximum, out of range, NaN, inf."""
    columns: dict[str, np.ndarray] = {}
    for name, feature in reference.features.items():
        if feature.kind != "numeric":
            columns[name] = rng.choice(["a", "b", "z", ""], n).astype(object)
            continue
        assert feature.edges is not None
        x = rng.normal(feature.mean or 0.0, 1.5 * (feature.std or 1.0), n)
        at_edges = rng.random(n) < 0.2
        x[at_edges] = rng.choice(feature.edges, int(at_edges.sum()))
        x[rng.random(n) < 0.05] = np.nan
        x[rng.random(n) < 0.01] = np.inf
        x[rng.random(n) < 0.01] = -np.inf
        columns[name] = x
    return columns


def _reference_for_batches() -> Reference:
    rng = np.random.default_rng(11)
    data = {f"x{i}": rng.normal(i, 1 + i, 3000) for i in range(6)}
    data["constant"] = np.full(3000, 2.5)
    data["integers"] = rng.integers(0, 40, 3000).astype(np.float64)
    data["colour"] = rng.choice(["a", "b", "c"], 3000).astype(object)
    return Reference.from_data(data, categorical=["colour"], row_sample_size=0)


def test_batched_window_update_equals_one_update_per_feature() -> None:
    """All numeric features in one pass: the same sketches (counts, counters, sample,
    random state, exemplars) as feeding each feature on its own."""
    from modeltrace.drift.windows import ModelWindow

    reference = _reference_for_batches()
    rng = np.random.default_rng(12)
    together = ModelWindow(reference, seed=7, reservoir_size=50)
    apart = ModelWindow(reference, seed=7, reservoir_size=50)
    for step, n in enumerate([1, 2, 3, 700, 5000, 40, 2000]):
        columns = _numeric_batch(rng, n, reference)
        weights = rng.choice([1.0, 2.0, 10.0], n)
        trace_ids = [rng.choice(["", f"{rng.integers(0, 300):032x}"]) for _ in range(n)]
        ts = 1000.0 + step
        together.update(columns, weights, trace_ids, ts)
        for name, values in columns.items():
            apart.update({name: values}, weights, trace_ids, ts)
    ours, theirs = together.panes, apart.panes
    assert [p.key for p in ours] == [p.key for p in theirs]
    for mine, other in zip(ours, theirs, strict=True):
        assert set(mine.sketches) == set(reference.features)
        for name, sketch in mine.sketches.items():
            assert sketch.to_dict() == other.sketches[name].to_dict(), name
    state = together.current()["x1"]
    assert state.out_of_range_raw > 0 and state.missing_raw > 0
    assert any(state.exemplars(b) for b in range(state.binning.n_bins))


def test_exemplars_of_a_batch_equal_remembering_row_by_row() -> None:
    from modeltrace.drift.sketches import update_numeric_sketches

    reference = _reference_for_batches()
    rng = np.random.default_rng(13)
    names = [n for n, f in reference.features.items() if f.kind == "numeric"]
    batched = [reference.features[n].new_sketch(exemplars_per_bin=4) for n in names]
    by_row = [reference.features[n].new_sketch(exemplars_per_bin=4) for n in names]
    for n in (1200, 10, 300):
        columns = _numeric_batch(rng, n, reference)
        # Distinct, non-blank ids: then the last rows of each bin are what
        # remembering row by row keeps.
        trace_ids = [f"{n:08x}{row:024x}" for row in range(n)]
        update_numeric_sketches(batched, [columns[m] for m in names], np.ones(n), trace_ids)
        for row in range(n):  # one-row batches take the plain remember-each-row path
            for sketch, name in zip(by_row, names, strict=True):
                sketch.update(columns[name][row : row + 1], np.ones(1), trace_ids[row : row + 1])
    for mine, other in zip(batched, by_row, strict=True):
        for b in range(mine.binning.n_bins):
            assert mine.exemplars(b) == other.exemplars(b)
        np.testing.assert_array_equal(mine.counts, other.counts)


def test_exemplars_of_drifting_batches_equal_remembering_row_by_row() -> None:
    """Batches sorted by value (a drift within the batch): most bins have no rows in
    the batch's tail, so their exemplars come from earlier rows."""
    from modeltrace.drift.sketches import update_numeric_sketches

    reference = _reference_for_batches()
    rng = np.random.default_rng(14)
    names = [n for n, f in reference.features.items() if f.kind == "numeric"]
    batched = [reference.features[n].new_sketch(exemplars_per_bin=3) for n in names]
    by_row = [reference.features[n].new_sketch(exemplars_per_bin=3) for n in names]
    for n, descending in ((2000, False), (900, True)):
        columns = _numeric_batch(rng, n, reference)
        columns = {m: np.sort(v)[::-1] if descending else np.sort(v) for m, v in columns.items()}
        trace_ids = [f"{n:08x}{row:024x}" for row in range(n)]
        update_numeric_sketches(batched, [columns[m] for m in names], np.ones(n), trace_ids)
        for row in range(n):
            for sketch, name in zip(by_row, names, strict=True):
                sketch.update(columns[name][row : row + 1], np.ones(1), trace_ids[row : row + 1])
    remembered = 0
    for mine, other in zip(batched, by_row, strict=True):
        for b in range(mine.binning.n_bins):
            assert mine.exemplars(b) == other.exemplars(b)
            remembered += len(mine.exemplars(b))
        np.testing.assert_array_equal(mine.counts, other.counts)
    assert remembered > 3 * len(names)
