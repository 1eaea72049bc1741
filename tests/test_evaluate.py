"""evaluate_window: known-truth drift scenarios, weights, data quality, overrides, links."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from modeltrace.drift.evaluate import evaluate_window, gained_bins
from modeltrace.drift.reference import Reference
from modeltrace.drift.report import DriftReport
from modeltrace.drift.windows import ModelWindow
from modeltrace.semconv import PREDICTION_FEATURE

N_REF = 5000
FEATURES = ["mean_shift", "variance", "stable", "uniform", "mix", "colour"]


def draw(n: int, seed: int, *, shift: float = 0.0, scale: float = 1.0, mix: bool = False,
         prediction_shift: float = 0.0) -> dict[str, np.ndarray]:  # fmt: skip
    rng = np.random.default_rng(seed)
    p_mix = [0.2, 0.3, 0.5] if mix else [0.5, 0.3, 0.2]
    return {
        "mean_shift": rng.normal(10.0 + shift, 2.0, n),
        "variance": rng.normal(0.0, scale, n),
        "stable": rng.exponential(1.0, n),
        "uniform": rng.uniform(-1, 1, n),
        "mix": rng.choice(["a", "b", "c"], n, p=p_mix),
        "colour": rng.choice(["red", "green", "blue", "grey"], n),
        PREDICTION_FEATURE: np.clip(rng.beta(2, 5, n) + prediction_shift, 0, 1),
    }


@pytest.fixture(scope="module")
def reference() -> Reference:
    data = draw(N_REF, seed=0)
    predictions = data.pop(PREDICTION_FEATURE)
    return Reference.from_data(data, predictions=predictions)


def window_of(reference: Reference, columns: dict[str, np.ndarray], weights=None) -> ModelWindow:
    n = len(next(iter(columns.values())))
    window = ModelWindow(reference, seed=0)
    ids = [f"trace-{i}" for i in range(n)]
    window.update(columns, np.ones(n) if weights is None else weights, ids, 1_000.0)
    return window


def evaluate(reference: Reference, window: ModelWindow, **kwargs) -> DriftReport:
    start, end = window.bounds()
    return evaluate_window(
        reference,
        window.current(),
        model="credit",
        version="1",
        window_start=start,
        window_end=end,
        counters=window.counters,
        now=2_000.0,
        **kwargs,
    )


@pytest.mark.parametrize("n", [600, 5000])  # the test-based and the distance-based defaults
def test_no_drift_flags_nothing(reference: Reference, n: int) -> None:
    report = evaluate(reference, window_of(reference, draw(n, seed=1)))
    assert [f.name for f in report.features] == [*FEATURES, PREDICTION_FEATURE]
    assert report.drifted_features == []
    assert report.drift_share == 0.0 and not report.dataset_drift
    assert report.n_samples == n and report.n_evaluated == len(FEATURES)
    assert report.quality == []
    assert all(f.exemplar_trace_ids == [] for f in report.features)


@pytest.mark.parametrize("n", [600, 5000])
def test_mean_variance_and_mix_changes_flag_exactly_those(reference: Reference, n: int) -> None:
    current = draw(n, seed=2, shift=1.0, scale=2.0, mix=True)  # shift = 0.5 sigma
    report = evaluate(reference, window_of(reference, current))
    assert sorted(report.drifted_features) == ["mean_shift", "mix", "variance"]
    assert report.drift_share == pytest.approx(3 / 6)
    assert report.dataset_drift  # 0.5 >= 0.5
    expected_methods = (
        ("ks", "chi_square") if n <= 1000 else ("wasserstein_normed", "jensen_shannon")
    )
    assert report.feature("mean_shift").method == expected_methods[0]
    assert report.feature("mix").method == expected_methods[1]
    strict = evaluate(reference, window_of(reference, current), drift_share_threshold=0.6)
    assert not strict.dataset_drift


def test_prediction_drift_is_flagged_but_not_in_the_share(reference: Reference) -> None:
    report = evaluate(reference, window_of(reference, draw(2000, seed=3, prediction_shift=0.2)))
    assert report.drifted_features == [PREDICTION_FEATURE]
    assert report.feature(PREDICTION_FEATURE).drifted
    assert report.drift_share == 0.0 and not report.dataset_drift


def test_scores_match_scipy(reference: Reference) -> None:
    current = draw(600, seed=4, shift=0.4)
    report = evaluate(reference, window_of(reference, current))
    entry = report.feature("mean_shift")
    expected = stats.ks_2samp(reference["mean_shift"].reservoir, current["mean_shift"])
    assert entry.score == pytest.approx(expected.statistic, abs=1e-12)
    # The reference's sample stands for all its valid rows (n_valid), so the
    # p-value uses that size: scipy's asymptotic formula with en = n*m/(n+m).
    n_ref, n_cur = reference["mean_shift"].n_valid, current["mean_shift"].size
    en = n_ref * n_cur / (n_ref + n_cur)
    assert entry.p_value == pytest.approx(
        stats.kstwo.sf(expected.statistic, np.round(en)), rel=0.05
    )
    counts_ref = reference["mix"].counts
    counts_cur = np.array([np.sum(current["mix"] == c) for c in ("a", "b", "c")] + [0])
    keep = (counts_ref + counts_cur) > 0
    chi2 = stats.chi2_contingency(np.vstack([counts_ref[keep], counts_cur[keep]]), correction=False)
    assert report.feature("mix").score == pytest.approx(chi2.statistic, rel=1e-6)
    large = draw(5000, seed=5, shift=0.4)
    large_window = window_of(reference, large)
    report = evaluate(reference, large_window)
    window = large_window.current()["mean_shift"]
    ref_sample = reference["mean_shift"].reservoir
    distance = stats.wasserstein_distance(ref_sample, window.reservoir_values(), None,
                                          window.reservoir_weights())  # fmt: skip
    assert report.feature("mean_shift").score == pytest.approx(distance / ref_sample.std())


def test_weights_one_over_sample_rate_are_respected(reference: Reference) -> None:
    # Production sampled rows above the median at rate 0.5: unweighted, the window
    # looks shifted down; weighted by 1/rate it matches the reference again.
    full = draw(4000, seed=6)
    x = full["mean_shift"]
    high = x > 10.0
    keep = ~high | (np.arange(x.size) % 2 == 0)
    sampled = {k: v[keep] for k, v in full.items()}
    weights = np.where(high[keep], 2.0, 1.0)
    flat = evaluate(reference, window_of(reference, sampled))
    weighted = evaluate(reference, window_of(reference, sampled, weights))
    assert flat.feature("mean_shift").drifted
    assert not weighted.feature("mean_shift").drifted
    assert weighted.n_samples == int(keep.sum())


def test_exemplars_come_from_the_bins_that_gained_most(reference: Reference) -> None:
    current = draw(800, seed=7, shift=3.0)
    report = evaluate(reference, window_of(reference, current))
    entry = report.feature("mean_shift")
    assert entry.drifted and 1 <= len(entry.exemplar_trace_ids) <= 5
    # independent gain computation: the reference's bins with numpy
    feature = reference["mean_shift"]
    edges = feature.edges
    x = current["mean_shift"]
    inner = np.histogram(x[(x >= edges[0]) & (x <= edges[-1])], bins=edges)[0]
    cur = np.array([np.sum(x < edges[0]), *inner, np.sum(x > edges[-1])], dtype=float)
    gain = cur / cur.sum() - feature.counts / feature.counts.sum()
    top = int(np.argmax(gain))
    assert gained_bins(feature.counts, cur)[0] == top
    first = int(entry.exemplar_trace_ids[0].removeprefix("trace-"))
    low = edges[top - 1] if top >= 1 else -np.inf
    high = edges[top] if top <= edges.size - 1 else np.inf
    assert low <= x[first] <= high
    for trace_id in entry.exemplar_trace_ids:
        row = int(trace_id.removeprefix("trace-"))
        assert x[row] > edges[0]  # every linked row sits in a bin that gained mass
    assert report.feature("stable").exemplar_trace_ids == []


def test_data_quality_signals_are_reported_separately(reference: Reference) -> None:
    current = draw(1000, seed=8)
    current["stable"] = current["stable"].astype(object)
    current["stable"][:200] = None  # 20 % missing (reference: 0 %)
    current["uniform"][:100] = 5.0  # 10 % out of the reference range
    current["colour"][:150] = "purple"  # 15 % never seen in training
    current["extra"] = np.ones(1000)  # not in the reference
    report = evaluate(reference, window_of(reference, current))
    signals = {(q.feature, q.signal) for q in report.quality}
    assert signals == {
        ("stable", "missing_ratio_increase"),
        ("uniform", "out_of_range"),
        ("colour", "unseen_categories"),
        (None, "unknown_features"),
    }
    assert report.feature("stable").missing_ratio == pytest.approx(0.2)
    assert report.feature("stable").reference_missing_ratio == 0.0
    assert report.feature("uniform").out_of_range_ratio == pytest.approx(0.1, abs=0.005)
    assert report.feature("colour").unseen_ratio == pytest.approx(0.15)
    assert report.feature("stable").n_current == 800


def test_empty_all_missing_and_absent_features(reference: Reference) -> None:
    empty = evaluate_window(reference, {}, model="m", version="1")
    assert empty.features == [] and empty.drift_share == 0.0 and not empty.dataset_drift
    assert empty.quality == [] and empty.n_samples == 0
    current = {"stable": np.full(50, np.nan), "uniform": np.zeros(50)}
    report = evaluate(reference, window_of(reference, current))
    stable = report.feature("stable")
    assert not stable.enough_data and not stable.drifted and stable.missing_ratio == 1.0
    assert report.n_evaluated == 1  # only "uniform" had a verdict
    signals = {(q.feature, q.signal) for q in report.quality}
    assert ("stable", "no_valid_values") in signals
    assert ("mean_shift", "absent") in signals
    with pytest.raises(KeyError, match="mean_shift"):
        report.feature("mean_shift")


def test_overrides_per_feature_and_for_all(reference: Reference) -> None:
    window = window_of(reference, draw(3000, seed=9, shift=0.3))
    report = evaluate(
        reference,
        window,
        overrides={"*": {"method": "psi"}, "mean_shift": {"method": "ks", "threshold": 0.01}},
    )
    assert report.feature("mean_shift").method == "ks"
    assert report.feature("mean_shift").threshold == 0.01
    assert report.feature("stable").method == "psi"
    assert report.feature("mix").method == "psi"  # a counts method fits categoricals too
    only_threshold = evaluate(reference, window, overrides={"stable": {"threshold": 10.0}})
    assert only_threshold.feature("stable").threshold == 10.0
    assert not only_threshold.feature("stable").drifted
    samples_everywhere = evaluate(reference, window, overrides={"*": {"method": "wasserstein"}})
    assert samples_everywhere.feature("mix").method == "jensen_shannon"  # default kept
    with pytest.raises(ValueError, match="categorical feature 'mix'"):
        evaluate(reference, window, overrides={"mix": {"method": "ks"}})
    with pytest.raises(ValueError, match="unknown drift method"):
        evaluate(reference, window, overrides={"*": {"method": "magic"}})
    with pytest.raises(ValueError, match="not in the reference"):
        evaluate(reference, window, overrides={"nope": {"method": "psi"}})
    with pytest.raises(ValueError, match="significance level"):
        evaluate(reference, window, overrides={"stable": {"method": "ks", "threshold": 5}})
    with pytest.raises(ValueError, match="unknown keys"):
        evaluate(reference, window, overrides={"stable": {"metod": "ks"}})


def test_report_round_trips_through_strict_json(reference: Reference) -> None:
    window = window_of(reference, draw(700, seed=10, shift=2.0, mix=True))
    report = evaluate(reference, window)
    text = json.dumps(report.to_dict(), allow_nan=False)
    restored = DriftReport.from_dict(json.loads(text))
    assert restored == report
    assert restored.window_start == 900.0 and restored.window_end == 1000.0
    assert restored.generated_at == 2_000.0
    assert restored.feature("mean_shift").exemplar_trace_ids
    with pytest.raises(ValueError, match="misses field 'model'"):
        DriftReport.from_dict({k: v for k, v in report.to_dict().items() if k != "model"})
