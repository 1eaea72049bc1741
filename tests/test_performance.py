"""Realized performance metrics checked against scikit-learn with the same sample weights."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from modeltrace.drift import performance as perf
from modeltrace.drift.performance import (
    BootstrapSettings,
    PerformanceReport,
    classification_performance,
    regression_performance,
)

FAST = BootstrapSettings(resamples=60, time_budget_s=2.0, seed=1)


def _weights(rng: np.random.Generator, n: int) -> np.ndarray:
    # 1 / sample rate, sample rates drawn from a few typical values
    return 1.0 / rng.choice([1.0, 0.5, 0.1, 0.25], size=n)


def _binary_data(rng: np.random.Generator, n: int = 400):
    y = rng.integers(0, 2, n)
    p_pos = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    pred = (p_pos >= 0.5).astype(int)
    return y, pred, p_pos, _weights(rng, n)


def test_binary_classification_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    y, pred, p_pos, w = _binary_data(rng)
    report = classification_performance(
        y, pred, weights=w, scores=p_pos, score_kind="positive", bootstrap=FAST
    )
    r = report.realized
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w))
    for ours, avg_name in (("precision_macro", "precision"), ("recall_macro", "recall")):
        fn = getattr(skm, f"{avg_name}_score")
        expected = fn(y, pred, average="macro", sample_weight=w, zero_division=0)
        assert r[ours] == pytest.approx(expected)
    assert r["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro", sample_weight=w))
    assert r["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p_pos, sample_weight=w))
    assert r["log_loss"] == pytest.approx(skm.log_loss(y, p_pos, sample_weight=w))
    cm = skm.confusion_matrix(y, pred, sample_weight=w)
    np.testing.assert_allclose(np.array(report.confusion_matrix), cm)
    per_f1 = skm.f1_score(y, pred, average=None, sample_weight=w)
    assert report.per_class["1"]["f1"] == pytest.approx(per_f1[1])
    assert report.per_class["0"]["support"] == pytest.approx(w[y == 0].sum())


def test_top_class_confidence_converts_to_positive_probability() -> None:
    rng = np.random.default_rng(4)
    y, pred, p_pos, w = _binary_data(rng)
    top = np.where(pred == 1, p_pos, 1 - p_pos)  # what ml.prediction.score carries
    report = classification_performance(y, pred, weights=w, scores=top, bootstrap=FAST)
    assert report.realized["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p_pos, sample_weight=w))
    assert report.realized["log_loss"] == pytest.approx(skm.log_loss(y, p_pos, sample_weight=w))


def test_string_labels_and_explicit_positive_label() -> None:
    rng = np.random.default_rng(5)
    y, pred, p_pos, w = _binary_data(rng)
    names = np.array(["stay", "churn"])  # "churn" (index 0 when sorted) is the positive class
    report = classification_performance(
        names[y],
        names[pred],
        weights=w,
        scores=p_pos,
        score_kind="positive",
        positive_label="churn",
        bootstrap=FAST,
    )
    assert report.classes == ["churn", "stay"]
    expected = skm.roc_auc_score(names[y] == "churn", p_pos, sample_weight=w)
    assert report.realized["roc_auc"] == pytest.approx(expected)


def test_multiclass_matches_sklearn() -> None:
    rng = np.random.default_rng(6)
    n, k = 600, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    w = _weights(rng, n)
    report = classification_performance(
        y, pred, weights=w, scores=proba, score_kind="proba", classes=[0, 1, 2, 3], bootstrap=FAST
    )
    r = report.realized
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w))
    assert r["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro", sample_weight=w))
    assert r["recall_macro"] == pytest.approx(
        skm.recall_score(y, pred, average="macro", sample_weight=w)
    )
    expected_auc = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", sample_weight=w)
    assert r["roc_auc"] == pytest.approx(expected_auc)
    assert r["log_loss"] == pytest.approx(skm.log_loss(y, proba, sample_weight=w))
    np.testing.assert_allclose(
        np.array(report.confusion_matrix), skm.confusion_matrix(y, pred, sample_weight=w)
    )


def test_multiclass_with_top_confidence_only_has_no_auc() -> None:
    y = np.array([0, 1, 2, 2, 1, 0])
    pred = np.array([0, 1, 1, 2, 1, 2])
    report = classification_performance(y, pred, scores=np.full(6, 0.7), bootstrap=FAST)
    assert "roc_auc" not in report.realized
    assert "log_loss" not in report.realized
    assert report.realized["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 2),
            st.floats(0.0, 1.0),
            st.sampled_from([1.0, 2.0, 4.0, 10.0]),
        ),
        min_size=2,
        max_size=60,
    )
)
def test_property_classification_and_auc_match_sklearn(data) -> None:
    y, pred, score, w = (np.array(col) for col in zip(*data, strict=True))
    assert perf.accuracy(y, pred, weights=w) == pytest.approx(
        skm.accuracy_score(y, pred, sample_weight=w)
    )
    labels, cm = perf.confusion_matrix(y, pred, weights=w)
    np.testing.assert_allclose(
        cm, skm.confusion_matrix(y, pred, sample_weight=w, labels=np.unique(np.r_[y, pred]))
    )
    np.testing.assert_array_equal(labels, np.unique(np.r_[y, pred]))
    per = perf.scores_from_confusion(cm)
    np.testing.assert_allclose(
        per.f1,
        skm.f1_score(y, pred, labels=labels, average=None, sample_weight=w, zero_division=0),
    )
    np.testing.assert_allclose(
        per.precision,
        skm.precision_score(y, pred, labels=labels, average=None, sample_weight=w, zero_division=0),
    )
    positive = y == 1
    auc = perf.roc_auc_binary(positive, score, weights=w)
    if positive.any() and (~positive).any():
        assert auc == pytest.approx(skm.roc_auc_score(positive, score, sample_weight=w))
    else:
        assert auc is None


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.floats(-1e3, 1e3),
            st.floats(-1e3, 1e3),
            st.sampled_from([1.0, 2.0, 5.0]),
        ),
        min_size=2,
        max_size=60,
    )
)
def test_property_regression_matches_sklearn(data) -> None:
    y, p, w = (np.array(col) for col in zip(*data, strict=True))
    got = perf.regression_metrics(y, p, weights=w)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p, sample_weight=w))
    assert got["rmse"] == pytest.approx(
        skm.root_mean_squared_error(y, p, sample_weight=w), rel=1e-9, abs=1e-9
    )
    assert got["mape"] == pytest.approx(
        skm.mean_absolute_percentage_error(y, p, sample_weight=w), rel=1e-9
    )
    assert got["r2"] == pytest.approx(skm.r2_score(y, p, sample_weight=w), rel=1e-7, abs=1e-7)


def test_regression_report_and_slos() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(10, 3, 500)
    p = y + rng.normal(0, 1, 500)
    w = _weights(rng, 500)
    report = regression_performance(
        y,
        p,
        weights=w,
        n_predictions=float(w.sum()) * 4,
        thresholds={"rmse": 0.5, "r2": 0.5, "mae": {"max": 5.0}},
        bootstrap=FAST,
    )
    assert report.realized["rmse"] == pytest.approx(
        skm.root_mean_squared_error(y, p, sample_weight=w)
    )
    assert report.label_coverage == pytest.approx(0.25)
    assert report.slo["rmse"].breached is True  # RMSE ~1 > 0.5
    assert report.slo["r2"].breached is False  # R2 ~0.9 >= 0.5
    assert report.slo["mae"].breached is False
    assert report.breached == ["rmse"]
    lo, hi = report.intervals["rmse"]
    assert lo < report.realized["rmse"] < hi
    assert report.interval_methods["rmse"] == "bootstrap"
    assert report.effective_sample_size == pytest.approx(w.sum() ** 2 / (w**2).sum())


def test_to_dict_is_json_and_round_trips() -> None:
    rng = np.random.default_rng(9)
    y, pred, p_pos, w = _binary_data(rng, 200)
    report = classification_performance(
        y,
        pred,
        weights=w,
        scores=p_pos,
        score_kind="positive",
        n_predictions=float(w.sum()) * 2,
        thresholds={"accuracy": 0.99, "log_loss": 5.0},
        bootstrap=FAST,
    ).with_estimate({"accuracy": 0.7, "kind": "estimated"})
    data = json.loads(json.dumps(report.to_dict()))
    assert data["realized"]["accuracy"] == pytest.approx(report.realized["accuracy"])
    assert data["label_coverage"] == pytest.approx(0.5)
    assert data["slo"]["accuracy"]["breached"] is True
    assert data["slo"]["log_loss"]["breached"] is False
    assert data["breached"] == ["accuracy"]
    assert data["intervals"]["accuracy"]["method"] == "wilson"
    assert data["estimated"]["accuracy"] == 0.7
    assert data["classes"] == [0, 1]
    again = PerformanceReport.from_dict(data)
    assert again.to_dict() == data
    assert set(report.gauges()) == {
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "roc_auc",
        "log_loss",
    }


def test_empty_window_gives_empty_report_with_unknown_slos() -> None:
    report = classification_performance([], [], n_predictions=100.0, thresholds={"accuracy": 0.9})
    assert report.realized == {}
    assert report.label_coverage == 0.0
    assert report.slo["accuracy"].breached is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_true": [1, 0], "y_pred": [1]}, "rows"),
        ({"y_true": ["1", "0"], "y_pred": [1, 0]}, "strings"),
        ({"y_true": [1.0, float("nan")], "y_pred": [1, 0]}, "NaN"),
        ({"y_true": [1, 0], "y_pred": [1, 0], "weights": [1, -1]}, "non-negative"),
        ({"y_true": [1, 0], "y_pred": [1, 0], "scores": [0.5, 1.5]}, "probabilities"),
        ({"y_true": [1, 0], "y_pred": [1, 0], "thresholds": {"acc": 0.9}}, "unknown"),
        ({"y_true": [1, 0], "y_pred": [1, 0], "thresholds": {"accuracy": "x"}}, "number"),
        (
            {"y_true": [0, 1, 2], "y_pred": [0, 1, 2], "scores": [[0.5, 0.5]] * 3},
            "2-D|columns|1-D",
        ),
        ({"y_true": [1, 0], "y_pred": [1, 0], "classes": [0]}, "not in classes"),
    ],
)
def test_invalid_input_is_refused_precisely(kwargs, message) -> None:
    if "scores" in kwargs and isinstance(kwargs["scores"][0], list):
        kwargs = {**kwargs, "score_kind": "proba", "classes": [0, 1, 2]}
    with pytest.raises(ValueError, match=message):
        classification_performance(**kwargs, bootstrap=FAST)


def test_wilson_matches_textbook_formula() -> None:
    # Wilson (1927): (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    p, n, z = 0.8, 50, stats.norm.ppf(0.975)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert perf.wilson_interval(p, n) == pytest.approx((centre - half, centre + half))


def test_wilson_with_kish_size_covers_weighted_accuracy() -> None:
    """Simulation: rows captured at mixed sample rates, weighted 1/rate."""
    rng = np.random.default_rng(11)
    true_accuracy = 0.8
    trials, covered = 400, 0
    for _ in range(trials):
        n_calls = 3000
        rates = rng.choice([0.02, 0.1, 0.3], size=n_calls)
        # accuracy depends on the traffic segment, which correlates with the sample rate
        seg_acc = np.where(rates == 0.02, 0.7, np.where(rates == 0.1, 0.85, 0.9))
        correct = rng.random(n_calls) < seg_acc
        captured = rng.random(n_calls) < rates
        w = 1 / rates[captured]
        acc = float(np.dot(w, correct[captured]) / w.sum())
        lo, hi = perf.wilson_interval(acc, perf.kish_effective_size(w))
        population = float(np.mean(seg_acc))
        covered += lo <= population <= hi
    assert abs(np.mean([0.7, 0.85, 0.9]) - true_accuracy) < 0.02
    assert 0.91 <= covered / trials <= 0.99


def test_bootstrap_interval_coverage_by_simulation() -> None:
    rng = np.random.default_rng(12)
    trials, covered = 120, 0
    true_mae = math.sqrt(2 / math.pi)  # E|N(0,1)|
    for seed in range(trials):
        err = rng.normal(0, 1, 150)
        y = rng.normal(0, 1, 150) + 5
        report = regression_performance(
            y, y + err, bootstrap=BootstrapSettings(resamples=200, time_budget_s=5, seed=seed)
        )
        lo, hi = report.intervals["mae"]
        covered += lo <= true_mae <= hi
    assert 0.86 <= covered / trials <= 0.99


def test_bootstrap_is_seeded_and_bounded_in_time() -> None:
    rng = np.random.default_rng(13)
    y, pred, p_pos, w = _binary_data(rng, 300)
    a = classification_performance(y, pred, weights=w, scores=p_pos, score_kind="positive")
    b = classification_performance(y, pred, weights=w, scores=p_pos, score_kind="positive")
    assert a.intervals == b.intervals
    assert a.bootstrap_resamples == 200
    big = 400_000
    yb = rng.integers(0, 2, big)
    slow = regression_performance(
        yb.astype(float),
        yb + rng.normal(size=big),
        bootstrap=BootstrapSettings(resamples=10_000, time_budget_s=0.3, min_resamples=2),
    )
    assert 0 < slow.bootstrap_resamples < 10_000
