"""FeatureSketch: binning, counters, weights, exact merges, the weighted sample, state."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any
from unittest import mock

import numpy as np
import pytest
from scipy import stats

from modeltrace.drift.sketches import Binning, FeatureSketch, category_codes, category_key

EDGES = np.array([0.0, 1.0, 2.0, 3.0])


def numeric_sketch(**kwargs: object) -> FeatureSketch:
    return FeatureSketch(Binning("numeric", edges=EDGES), **kwargs)  # type: ignore[arg-type]


def categorical_sketch() -> FeatureSketch:
    binning = Binning("categorical", categories=("a", "b"), known=frozenset({"a", "b", "c"}))
    return FeatureSketch(binning)


def test_numeric_bins_underflow_inner_overflow_against_numpy_histogram() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 4.0, size=5000)
    x[:4] = [0.0, 3.0, 1.0, 2.0]  # the edges themselves
    sketch = numeric_sketch()
    sketch.update(x, np.ones(x.size))
    inner, _ = np.histogram(x[(x >= 0) & (x <= 3)], bins=EDGES)  # last bin closed, like ours
    expected = [np.sum(x < 0), *inner, np.sum(x > 3)]
    np.testing.assert_array_equal(sketch.counts, expected)
    assert sketch.out_of_range == np.sum(x < 0) + np.sum(x > 3)
    assert sketch.n == sketch.n_valid == 5000


def test_missing_nan_none_and_infinities() -> None:
    sketch = numeric_sketch()
    values = np.array([0.5, np.nan, None, np.inf, -np.inf, "", 2.5], dtype=object)
    sketch.update(values, np.array([1, 2, 3, 1, 1, 4, 1], dtype=float))
    assert sketch.n == 7
    assert sketch.missing_raw == 3 and sketch.missing == 9.0  # NaN, None, "" weighted 2+3+4
    np.testing.assert_array_equal(sketch.counts, [1, 1, 0, 1, 1])  # -inf under, +inf over
    assert sketch.out_of_range_raw == 2
    # infinities are counted in bins but kept out of the raw-value sample
    assert sorted(sketch.reservoir_values().tolist()) == [0.5, 2.5]
    assert sketch.weight == 13.0 and sketch.valid_weight == 4.0


def test_weights_count_one_over_sample_rate() -> None:
    sketch = numeric_sketch()
    sample_rate = np.array([0.5, 1.0, 0.25])
    sketch.update(np.array([0.5, 0.5, 2.5]), 1.0 / sample_rate)
    np.testing.assert_array_equal(sketch.counts, [0, 3, 0, 4, 0])
    assert sketch.n == 3 and sketch.weight == 7.0
    assert sketch.effective_n == pytest.approx(7.0**2 / (4 + 1 + 16))


def test_categorical_other_unseen_missing_and_key_normalisation() -> None:
    sketch = categorical_sketch()
    values = np.array(["a", "b", "c", "zzz", "", None, "a"], dtype=object)
    sketch.update(values, np.array([1, 1, 1, 2, 1, 1, 1], dtype=float))
    np.testing.assert_array_equal(sketch.counts, [2, 1, 3])  # "c" and "zzz" fall in other
    assert sketch.unseen == 2.0 and sketch.unseen_raw == 1  # only "zzz" was never seen
    assert sketch.missing_raw == 2
    assert category_key(1.0) == category_key(1) == category_key(np.int64(1)) == "1"
    assert category_key(True) == "True" and category_key(float("nan")) is None


def test_categorical_numeric_arrays_map_like_text() -> None:
    binning = Binning("categorical", categories=("1", "2"), known=frozenset({"1", "2"}))
    sketch = FeatureSketch(binning)
    sketch.update(np.array([1.0, 2.0, np.nan, 3.0]), np.ones(4))
    sketch.update(np.array([1, 1]), np.ones(2))
    np.testing.assert_array_equal(sketch.counts, [3, 1, 1])
    assert sketch.missing_raw == 1 and sketch.unseen_raw == 1


def test_merge_of_halves_equals_one_sketch_fed_everything() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(1.5, 1.0, size=4000)
    x[::50] = np.nan
    w = rng.choice([1.0, 2.0, 4.0], size=x.size)
    ids = [f"t{i}" for i in range(x.size)]
    whole = numeric_sketch()
    whole.update(x, w, ids)
    a, b = numeric_sketch(seed=1), numeric_sketch(seed=2)
    a.update(x[:2000], w[:2000], ids[:2000])
    b.update(x[2000:], w[2000:], ids[2000:])
    merged = a.merge(b)
    np.testing.assert_allclose(merged.counts, whole.counts, rtol=0, atol=1e-9)
    for attr in ("n", "missing_raw", "out_of_range_raw", "n_valid"):
        assert getattr(merged, attr) == getattr(whole, attr)
    for attr in ("weight", "missing", "out_of_range", "effective_n"):
        assert getattr(merged, attr) == pytest.approx(getattr(whole, attr), rel=1e-12)
    for bin_index in range(5):  # the later half's exemplars are the recent ones
        assert merged.exemplars(bin_index) == whole.exemplars(bin_index)


def test_merge_keeps_the_top_priorities_of_the_union() -> None:
    a, b = numeric_sketch(reservoir_size=50, seed=3), numeric_sketch(reservoir_size=50, seed=4)
    rng = np.random.default_rng(5)
    a.update(rng.uniform(0, 3, 40), np.ones(40))
    b.update(rng.uniform(0, 3, 40), np.full(40, 2.0))
    union = np.concatenate([a._res_priorities, b._res_priorities])
    values = np.concatenate([a._res_values, b._res_values])
    top = np.argsort(-union)[:50]
    merged = a.copy().merge(b)
    assert sorted(merged.reservoir_values().tolist()) == sorted(values[top].tolist())
    assert merged.reservoir_values().size == 50


def test_weighted_sample_matches_the_weighted_distribution() -> None:
    # Values 0..2 in equal raw numbers but weights 1, 2 and 5: the sample, with its
    # estimated weights, must reproduce shares 1/8, 2/8, 5/8 (chi-square test),
    # for a single sketch and for a merge of two halves.
    rng = np.random.default_rng(6)
    values = np.repeat([0.5, 1.5, 2.5], 20000)
    weights = np.repeat([1.0, 2.0, 5.0], 20000)
    order = rng.permutation(values.size)
    values, weights = values[order], weights[order]
    expected = np.array([1, 2, 5]) / 8
    whole = numeric_sketch(reservoir_size=1000, seed=7)
    whole.update(values, weights)
    a, b = numeric_sketch(reservoir_size=1000, seed=8), numeric_sketch(reservoir_size=1000, seed=9)
    a.update(values[::2], weights[::2])
    b.update(values[1::2], weights[1::2])
    for sketch in (whole, a.merge(b)):
        sample = sketch.reservoir_values()
        assert sample.size == 1000
        # priority sampling: inclusion is ~ proportional to weight, so the raw
        # sample itself follows the weighted distribution
        observed = np.array([np.sum(sample == v) for v in (0.5, 1.5, 2.5)])
        assert stats.chisquare(observed, expected * 1000).pvalue > 0.001
        est = sketch.reservoir_weights()
        est_total = [est[sample == v].sum() for v in (0.5, 1.5, 2.5)]
        np.testing.assert_allclose(np.array(est_total) / np.sum(est_total), expected, atol=0.04)
        assert np.sum(est) == pytest.approx(weights.sum(), rel=0.1)


def test_small_samples_keep_everything_with_exact_weights() -> None:
    sketch = numeric_sketch(reservoir_size=10)
    sketch.update(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 4.0]))
    order = np.argsort(sketch.reservoir_values())
    np.testing.assert_array_equal(sketch.reservoir_values()[order], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(sketch.reservoir_weights()[order], [1.0, 2.0, 4.0])


def test_reservoir_and_exemplars_are_bounded() -> None:
    sketch = numeric_sketch(reservoir_size=100, exemplars_per_bin=3)
    rng = np.random.default_rng(10)
    for batch in range(20):
        x = rng.uniform(-1, 4, 500)
        sketch.update(x, np.ones(500), [f"b{batch}-{i}" for i in range(500)])
    assert sketch.reservoir_values().size == 100
    assert all(len(sketch.exemplars(b)) == 3 for b in range(5))
    assert all(t.startswith("b19-") for t in sketch.exemplars(2))  # the most recent


def test_seeded_sketches_are_reproducible() -> None:
    x = np.random.default_rng(11).normal(size=3000)
    one, two = numeric_sketch(seed=42), numeric_sketch(seed=42)
    one.update(x, np.ones(x.size))
    two.update(x, np.ones(x.size))
    np.testing.assert_array_equal(one.reservoir_values(), two.reservoir_values())


def test_state_round_trip_through_json_continues_identically() -> None:
    rng = np.random.default_rng(12)
    sketch = numeric_sketch(reservoir_size=20)
    sketch.update(rng.normal(1.5, 1, 100), np.ones(100), [f"t{i}" for i in range(100)])
    restored = FeatureSketch.from_dict(json.loads(json.dumps(sketch.to_dict())))
    more = rng.normal(1.5, 1, 100)
    sketch.update(more, np.ones(100))
    restored.update(more, np.ones(100))
    np.testing.assert_array_equal(restored.counts, sketch.counts)
    np.testing.assert_array_equal(restored.reservoir_values(), sketch.reservoir_values())
    assert restored.exemplars(2) == sketch.exemplars(2)
    bare = sketch.to_dict(include_binning=False)
    assert "binning" not in bare
    with pytest.raises(ValueError, match="no binning"):
        FeatureSketch.from_dict(bare)
    assert FeatureSketch.from_dict(bare, binning=sketch.binning).n == sketch.n


def test_invalid_input_is_rejected_precisely() -> None:
    sketch = numeric_sketch()
    with pytest.raises(ValueError, match="as long as values"):
        sketch.update(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="finite and > 0"):
        sketch.update(np.ones(2), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="1-D"):
        sketch.update(np.ones((2, 2)), np.ones(2))
    with pytest.raises(ValueError, match="trace_ids"):
        sketch.update(np.ones(2), np.ones(2), ["only-one"])
    with pytest.raises(ValueError, match="different bins"):
        sketch.merge(FeatureSketch(Binning("numeric", edges=np.array([0.0, 5.0]))))
    with pytest.raises(ValueError, match="strictly increasing"):
        Binning("numeric", edges=np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="counts"):
        broken = sketch.to_dict()
        broken["counts"] = [1.0]
        FeatureSketch.from_dict(broken)
    assert sketch.n == 0  # nothing was half-applied


def _python_lines(run: Callable[[], object]) -> int:
    """Python lines executed while ``run`` runs (a trace hook counts them)."""
    lines = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    sys.settrace(trace)
    try:
        run()
    finally:
        sys.settrace(None)
    return lines


def test_numeric_update_is_vectorised() -> None:
    """Python work per update does not grow with the rows: numpy does the per-row work."""
    rng = np.random.default_rng(13)
    calls = {}
    for n in (1_000, 200_000):
        sketch = numeric_sketch()
        x = rng.normal(1.5, 1, n)
        ids = [f"{i:032x}" for i in range(n)]
        calls[n] = _python_lines(lambda: sketch.update(x, np.ones(n), ids))  # noqa: B023
        assert sketch.n == n
    assert calls[200_000] <= calls[1_000] + 100, calls  # a loop over rows: 200,000 more


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("pool", ["text", "text_missing", "nul", "mixed"])
def test_category_codes_agree_with_category_key(pool: str, shared: bool) -> None:
    """``category_codes`` (hashing, grouping by object when rows share objects) gives
    every row the key ``category_key`` gives it, ``-1`` exactly where it is missing."""
    pools = {
        "text": ["a", "bb", "é", "日本", "a " * 3],
        "text_missing": ["a", "bb", "", None, "ü"],
        "nul": ["a", "a\x00", "b", None],
        "mixed": ["1", 1, 1.0, True, None, "x", float("nan"), 2.5],
    }
    rng = np.random.default_rng(7)
    picks = rng.integers(0, len(pools[pool]), 3000).tolist()
    items = [pools[pool][i] for i in picks]
    if not shared:  # a distinct object per row, as pandas/arrow gives them
        items = [v.encode().decode() if isinstance(v, str) else v for v in items]
    values = np.empty(len(items), dtype=object)
    values[:] = items
    keys, codes = category_codes(values)
    assert codes.shape == (len(items),)
    for item, code in zip(items, codes.tolist(), strict=True):
        expected = category_key(item)
        if pool == "nul" and isinstance(item, str):
            expected = item.rstrip("\x00") or None  # numpy's str arrays drop trailing NULs
        if expected is None:
            assert code == -1
        else:
            assert keys[code] == expected
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("seed", range(3))
def test_categorical_exemplars_in_one_pass_equal_one_update_per_sketch(seed: int) -> None:
    """``update_categorical_sketches`` (exemplars of all features from one pass over
    their offset bins) leaves every sketch as one ``update_checked`` per sketch does:
    counts, missing, unseen and exemplars, with or without known category codes, over
    batches smaller and larger than the exemplar limit, weights, blank and repeated
    trace ids, missing and unseen values and batches sorted by value."""
    from modeltrace.drift.sketches import update_categorical_sketches

    rng = np.random.default_rng(seed)
    vocabularies = [("a", "b"), ("x", "y", "z", "w"), ("p",), ("u", "v", "t")]

    def sketches() -> list[FeatureSketch]:
        return [
            FeatureSketch(
                Binning("categorical", categories=v, known=frozenset(v) | {"seen"}),
                exemplars_per_bin=3,
            )
            for v in vocabularies
        ]

    batched, apart = sketches(), sketches()
    for n in (2, 3, 40, 700, 1, 5000, 9):
        columns = []
        for v in vocabularies:
            pool = np.array([*v, "seen", "new", None, ""], dtype=object)
            column = pool[rng.integers(0, pool.size, n)]
            if rng.random() < 0.3:
                column = np.array(sorted(column, key=str), dtype=object)
            columns.append(column)
        w = rng.choice([0.5, 1.0, 4.0], n)
        ids = [rng.choice(["", f"{rng.integers(0, n):032x}"]) for _ in range(n)]
        use_codes = bool(rng.random() < 0.5)
        codes = [category_codes(c) if use_codes else None for c in columns]
        update_categorical_sketches(batched, columns, w, ids, codes)
        for sketch, column in zip(apart, columns, strict=True):
            sketch.update(column, w, ids)
    remembered = 0
    for mine, theirs in zip(batched, apart, strict=True):
        assert mine.to_dict() == theirs.to_dict()
        remembered += sum(len(mine.exemplars(b)) for b in range(mine.binning.n_bins))
    assert remembered > 3 * len(vocabularies)
    assert any(s.missing_raw and s.unseen_raw for s in batched)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counted_edges_give_the_searchsorted_bins(seed: int) -> None:
    """``assign_numeric`` counts the edges below each value for few edges and many
    values: the same bins as the binary searches (NaN missing, the maximum itself in
    the last inner bin, larger values and +inf in the overflow bin, -0.0 as 0.0)."""
    from modeltrace.drift import sketches

    rng = np.random.default_rng(seed)
    for n_edges in (2, 11, 64, 65):
        x = rng.normal(size=4000)
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_edges)))
        edges = np.unique(np.append(np.round(edges[:-1], 1), edges[-1]))
        x[:50] = np.nan
        x[50:100] = edges[-1]
        x[100:200] = rng.choice(edges, size=100)
        x[200:210] = np.inf
        x[210:220] = -np.inf
        x[220:230] = -0.0
        binning = Binning("numeric", edges=edges)
        got = binning.assign_numeric(x)
        with mock.patch.object(sketches, "_COUNTED_EDGES", 0):
            expected = binning.assign_numeric(x)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
