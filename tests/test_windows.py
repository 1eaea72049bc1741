"""ModelWindow: panes, sliding time windows, count windows, caps, merges, bounded state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modeltrace.drift.reference import Reference
from modeltrace.drift.windows import ModelWindow


@pytest.fixture(scope="module")
def reference() -> Reference:
    rng = np.random.default_rng(0)
    n = 3000
    return Reference.from_data(
        {"x": rng.normal(size=n), "y": rng.uniform(size=n), "c": rng.choice(["a", "b"], n)},
        predictions=rng.random(n),
        reservoir_size=200,
    )


def batch(n: int, seed: int, value: float | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.full(n, value) if value is not None else rng.normal(size=n)
    return {"x": x, "y": rng.uniform(size=n), "c": rng.choice(["a", "b", "new"], n)}


def test_panes_slide_and_expire_with_time(reference: Reference) -> None:
    window = ModelWindow(reference, pane_seconds=60, window_seconds=300)
    for minute in range(10):  # one batch of 10 rows per minute, x = minute
        window.update(batch(10, minute, value=float(minute)), np.ones(10), None, minute * 60 + 1)
    # watermark 541 s: panes ending after 241 s remain, i.e. minutes 4..9
    assert [p.key for p in window.panes] == [240.0, 300.0, 360.0, 420.0, 480.0, 540.0]
    merged = window.current()
    assert merged["x"].n == 60 and window.rows == 60
    assert sorted(set(merged["x"].reservoir_values().tolist())) == [4, 5, 6, 7, 8, 9]
    assert window.bounds() == (240.0, 541.0)
    # reading with a later "now" only merges what is still inside, without dropping
    assert window.current(now=541 + 120)["x"].n == 40
    assert len(window.panes) == 6
    assert window.expire(541 + 120) == 2
    assert window.panes[0].key == 360.0


def test_late_data_is_counted_not_stored(reference: Reference) -> None:
    window = ModelWindow(reference, pane_seconds=60, window_seconds=300)
    window.update(batch(5, 1), np.ones(5), None, 10_000)
    assert window.update(batch(7, 2), np.ones(7), None, 10_000 - 1000) == 0
    assert window.counters.late_rows == 7 and window.rows == 5
    # slightly out of order but still inside the window: accepted into its pane
    assert window.update(batch(3, 3), np.ones(3), None, 10_000 - 100) == 3
    assert window.rows == 8


def test_count_window_keeps_the_last_n_rows(reference: Reference) -> None:
    window = ModelWindow(reference, count=1000)  # panes of 100 rows
    for i in range(30):
        window.update(batch(70, i, value=float(i)), np.ones(70), None, float(i))
    assert window.rows == 1000
    assert all(p.rows == 100 for p in window.panes)
    values = np.concatenate([np.full(70, float(i)) for i in range(30)])[-1000:]
    merged = window.current()
    expected = reference["x"].new_sketch()
    expected.update(values, np.ones(values.size))
    np.testing.assert_array_equal(merged["x"].counts, expected.counts)
    assert window.expire(1e12) == 0  # count windows do not expire with time


def test_weights_are_respected(reference: Reference) -> None:
    window = ModelWindow(reference)
    rates = np.array([0.5, 0.5, 1.0, 0.25])
    window.update(
        {"c": np.array(["a", "a", "b", "b"])}, 1.0 / rates, ["t1", "t2", "t3", "t4"], 100.0
    )
    merged = window.current()["c"]
    np.testing.assert_array_equal(merged.counts, [4.0, 5.0, 0.0])
    assert merged.n == 4 and window.weight == 9.0
    assert "x" not in window.current()  # absent columns are not counted as missing


def test_unknown_and_capped_features_are_counted_never_stored(reference: Reference) -> None:
    window = ModelWindow(reference, max_features=2)  # tracks x and y only
    assert window.tracked_features == ["x", "y"]
    for i in range(50):
        columns = batch(10, i)
        columns.update({f"surprise_{i}": np.ones(10)})
        window.update(columns, np.ones(10), None, 100.0 + i)
    assert window.counters.capped_feature_rows == 500  # "c"
    assert window.counters.capped_features == ["c"]
    assert window.counters.unknown_feature_rows == 500
    assert len(window.counters.unknown_features) == 20  # a bounded list of names
    assert set(window.current()) == {"x", "y"}


def test_serialized_state_does_not_grow_with_traffic(reference: Reference) -> None:
    window = ModelWindow(reference, pane_seconds=60, window_seconds=600)
    sizes = []
    rng = np.random.default_rng(5)
    for step in range(60):  # one hour of traffic, 30 s apart
        n = int(rng.integers(200, 400))
        ids = [f"{step:04d}{i:028x}" for i in range(n)]
        columns = batch(n, step)
        columns["__prediction__"] = rng.random(n)
        window.update(columns, np.ones(n), ids, 1000.0 + 30 * step)
        sizes.append(len(window.to_bytes()))
    assert len(window.panes) <= 11
    assert max(sizes[30:]) < 1.15 * min(sizes[30:])  # flat once the window is full
    assert len(json.dumps(window.to_state())) < 2_000_000


def test_state_round_trip(reference: Reference) -> None:
    window = ModelWindow(reference, pane_seconds=60, window_seconds=300)
    for i in range(8):
        window.update(batch(20, i), np.ones(20), [f"t{i}-{j}" for j in range(20)], 60.0 * i)
    window.update({"zzz": np.ones(2)}, np.ones(2), None, 480.0)
    for state in (json.loads(json.dumps(window.to_state())), window.to_bytes()):
        restored = ModelWindow.from_state(state, reference)
        assert restored.seed == window.seed  # the random streams continue
        assert restored.counters == window.counters
        assert restored.bounds() == window.bounds()
        now, then = restored.current(), window.current()
        assert set(now) == set(then)
        for name in now:
            np.testing.assert_array_equal(now[name].counts, then[name].counts)
            assert now[name].exemplars(1) == then[name].exemplars(1)
        restored.update(batch(5, 99), np.ones(5), None, 500.0)
        assert restored.rows == window.rows + 5


def test_state_of_another_reference_or_format_is_refused(reference: Reference) -> None:
    window = ModelWindow(reference)
    other = Reference.from_data({"x": np.arange(10.0)})
    with pytest.raises(ValueError, match="other bins"):
        ModelWindow.from_state(window.to_state(), other)
    with pytest.raises(ValueError, match=r"not a modeltrace\.window"):
        ModelWindow.from_state({"format": "something"}, reference)
    with pytest.raises(ValueError, match="not readable"):
        ModelWindow.from_state(b"garbage", reference)


def test_two_replicas_merge_to_one_fed_everything(reference: Reference) -> None:
    whole = ModelWindow(reference, pane_seconds=60, window_seconds=600)
    left = ModelWindow(reference, pane_seconds=60, window_seconds=600, seed=1)
    right = ModelWindow(reference, pane_seconds=60, window_seconds=600, seed=2)
    for i in range(20):
        columns = batch(30, i)
        ids = [f"t{i}-{j}" for j in range(30)]
        whole.update(columns, np.full(30, 2.0), ids, 30.0 * i)
        (left if i % 2 else right).update(columns, np.full(30, 2.0), ids, 30.0 * i)
    left.merge(right)
    assert left.rows == whole.rows and left.weight == whole.weight
    assert [p.key for p in left.panes] == [p.key for p in whole.panes]
    merged, expected = left.current(), whole.current()
    for name in expected:
        np.testing.assert_array_equal(merged[name].counts, expected[name].counts)
        assert merged[name].missing == expected[name].missing
        assert merged[name].unseen == expected[name].unseen


def test_count_windows_merge_by_time(reference: Reference) -> None:
    left, right = ModelWindow(reference, count=100), ModelWindow(reference, count=100)
    left.update(batch(60, 1, value=1.0), np.ones(60), None, 1.0)
    right.update(batch(60, 2, value=2.0), np.ones(60), None, 2.0)
    left.merge(right)
    assert left.rows == 100  # the last 100 rows: 40 of left's then 60 of right's
    values = left.current()["x"].reservoir_values()
    assert np.sum(values == 2.0) == 60 and np.sum(values == 1.0) == 40


def test_invalid_batches_are_rejected(reference: Reference) -> None:
    window = ModelWindow(reference)
    with pytest.raises(ValueError, match="column 'x' must be 1-D with 3 values"):
        window.update({"x": np.ones(2)}, np.ones(3), None, 1.0)
    with pytest.raises(ValueError, match="finite and > 0"):
        window.update({"x": np.ones(2)}, np.array([1.0, -1.0]), None, 1.0)
    with pytest.raises(ValueError, match="timestamp"):
        window.update({"x": np.ones(1)}, np.ones(1), None, float("nan"))
    with pytest.raises(ValueError, match="window_seconds"):
        ModelWindow(reference, pane_seconds=600, window_seconds=60)
    with pytest.raises(ValueError, match="count"):
        ModelWindow(reference, count=0)
    assert window.rows == 0


def test_unseeded_replicas_sample_independently(reference: Reference) -> None:
    left, right = ModelWindow(reference), ModelWindow(reference)
    assert left.seed != right.seed
    x = np.random.default_rng(3).normal(size=2000)
    left.update({"x": x}, np.ones(x.size), None, 1.0)
    right.update({"x": x}, np.ones(x.size), None, 1.0)
    kept_left = set(left.current()["x"].reservoir_values().tolist())
    kept_right = set(right.current()["x"].reservoir_values().tolist())
    assert kept_left != kept_right


class _PerSliceCodes(ModelWindow):
    """The window before category codes were computed once per batch: every pane's
    sketches and joint rows factorise their own slice of each categorical column."""

    def _category_codes(self, arrays):  # type: ignore[no-untyped-def]
        return {}


@pytest.mark.parametrize("mode", ["count", "time"])
def test_category_codes_once_per_batch_give_the_per_slice_state(mode: str) -> None:
    rng = np.random.default_rng(5)
    n_ref = 4000
    ref_pool = np.array(["a", "b", "c", "é", "d" * 30, None, ""], dtype=object)
    reference = Reference.from_data(
        {
            "colour": list(ref_pool[rng.integers(0, ref_pool.size, n_ref)]),
            "size": list(rng.integers(0, 4, n_ref)),  # integers, forced categorical
            "x": rng.normal(size=n_ref).tolist(),
            "y": rng.exponential(size=n_ref).tolist(),
        },
        categorical=["colour", "size"],
    )
    # Live data: missing values, unseen categories, a trailing NUL, mixed types.
    live_pool = np.array(["a", "b", "é", "unseen", "a\x00", None, "", 7, "d" * 30], dtype=object)
    options = (
        {"count": 900, "pane_rows": 250}
        if mode == "count"
        else {"pane_seconds": 10.0, "window_seconds": 60.0}
    )
    windows = [
        cls(reference, seed=3, row_reservoir_size=300, **options)  # type: ignore[arg-type]
        for cls in (ModelWindow, _PerSliceCodes)
    ]
    for i in range(6):
        n = int(rng.integers(1, 700))
        columns = {
            "colour": live_pool[rng.integers(0, live_pool.size, n)],
            "size": np.array([int(v) if v < 5 else None for v in rng.integers(0, 6, n)], object),
            "x": rng.normal(0.3, 1.0, n),
            "unknown": np.array(["q"] * n, dtype=object),
        }
        weights = rng.uniform(1.0, 3.0, n)
        ids = [f"{i:02d}{j:030x}" for j in range(n)]
        for window in windows:
            window.update(columns, weights, ids, 1000.0 + 7.0 * i)
    fast, slow = windows
    assert fast.to_bytes() == slow.to_bytes()
    joint = fast.joint_rows()
    assert joint is not None and len(joint) > 0
    sketch = fast.current()["colour"]
    assert sketch.unseen_raw > 0 and sketch.missing_raw > 0
