"""The speed paths of the window keep its results: ``current()``'s cached merge of
the older panes and ``FeatureSketch.copy`` give exactly the state a fresh merge
(a window restored from its state, which has no cache) gives."""

from __future__ import annotations

import json

import numpy as np

from modeltrace.drift import Reference
from modeltrace.drift.sketches import FeatureSketch
from modeltrace.drift.windows import ModelWindow

PANE = 300.0


def _state(sketches: dict[str, FeatureSketch]) -> str:
    return json.dumps(
        {name: s.to_dict(include_binning=False) for name, s in sketches.items()}, sort_keys=True
    )


def _fresh_current(window: ModelWindow, now: float | None = None) -> str:
    """Every live pane merged in order, from the window's saved state (no cache)."""
    restored = ModelWindow.from_state(window.to_state(), window.reference)
    panes = restored.panes
    if now is not None:
        panes = [p for p in panes if p.key + PANE > now - restored.window_seconds]
    merged: dict[str, FeatureSketch] = {}
    for name in restored.tracked_features:
        for pane in panes:
            sketch = pane.sketches.get(name)
            if sketch is None:
                continue
            if name in merged:
                merged[name].merge(sketch)
            else:
                merged[name] = FeatureSketch.from_dict(sketch.to_dict())
    return _state(merged)


def _batch(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    columns = {"a": rng.normal(size=n), "b": rng.choice(["x", "y", "z"], n).astype(object)}
    columns["a"][rng.random(n) < 0.1] = np.nan
    return columns, rng.uniform(1.0, 4.0, n), [f"{i:032x}" for i in rng.integers(0, 10**6, n)]


def test_current_equals_a_fresh_merge_through_updates_late_rows_and_merges() -> None:
    rng = np.random.default_rng(11)
    reference = Reference.from_data(
        {"a": rng.normal(size=2000), "b": rng.choice(["x", "y"], 2000)}, feature_names=["a", "b"]
    )
    window = ModelWindow(reference, pane_seconds=PANE, window_seconds=12 * PANE, seed=5)
    t0 = 1_700_000_000.0
    for step in range(8):
        window.update(*_batch(rng, 50), t0 + step * PANE)
        assert _state(window.current()) == _fresh_current(window)
        assert _state(window.current()) == _fresh_current(window)  # cached path
    window.update(*_batch(rng, 30), t0 + 2 * PANE)  # late rows into an older pane
    assert _state(window.current()) == _fresh_current(window)
    window.update(*_batch(rng, 30), t0 + 7 * PANE)  # the newest pane only
    assert _state(window.current()) == _fresh_current(window)
    assert _state(window.current(now=t0 + 17 * PANE)) == _fresh_current(window, t0 + 17 * PANE)
    other = ModelWindow(reference, pane_seconds=PANE, window_seconds=12 * PANE, seed=6)
    other.update(*_batch(rng, 40), t0 + 3 * PANE)
    window.merge(other)  # changes an older pane through _merge_pane
    assert _state(window.current()) == _fresh_current(window)
    window.update(*_batch(rng, 20), t0 + 20 * PANE)  # expires the first panes
    assert _state(window.current()) == _fresh_current(window)


def test_sketch_copy_is_the_state_round_trip() -> None:
    rng = np.random.default_rng(2)
    reference = Reference.from_data({"a": rng.normal(size=500)}, feature_names=["a"])
    sketch = reference.features["a"].new_sketch(reservoir_size=30, seed=9)
    sketch.update(rng.normal(size=200), np.ones(200), [f"t{i}" for i in range(200)])
    copy = sketch.copy()
    round_trip = FeatureSketch.from_dict(sketch.to_dict())
    assert json.dumps(copy.to_dict(), sort_keys=True) == json.dumps(
        round_trip.to_dict(), sort_keys=True
    )
    values, weights = rng.normal(size=100), rng.uniform(1, 2, 100)
    copy.update(values, weights)
    round_trip.update(values, weights)
    assert json.dumps(copy.to_dict(), sort_keys=True) == json.dumps(
        round_trip.to_dict(), sort_keys=True
    )
    # independent: the original did not move
    assert sketch.n == 200 and copy.n == 300
