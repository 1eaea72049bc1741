"""CBPE: estimated performance follows covariate shift, misses concept shift."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from modeltrace.drift.cbpe import (
    LIMITATION,
    Calibration,
    ProbabilityCalibrator,
    compare_with_realized,
    estimate_performance,
    fit_calibration,
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _binary_world(rng, n, shift=0.0, concept_flip=False, slope=2.0):
    """Labels drawn from P(y=1|x) = sigmoid(slope * x); the model knows that function."""
    x = rng.normal(shift, 1.0, n)
    p_true = _sigmoid(slope * x)
    p_label = 1 - p_true if concept_flip else p_true
    y = (rng.random(n) < p_label).astype(int)
    return x, y, p_true


def test_estimate_tracks_accuracy_under_covariate_shift() -> None:
    rng = np.random.default_rng(1)
    for shift in (0.0, 0.8, -1.5):
        _, y, p_model = _binary_world(rng, 20_000, shift=shift)
        pred = (p_model >= 0.5).astype(int)
        top = np.where(pred == 1, p_model, 1 - p_model)  # ml.prediction.score
        w = 1 / rng.choice([1.0, 0.5, 0.2], size=y.shape[0])
        est = estimate_performance(top, predictions=pred, weights=w)
        realized_acc = skm.accuracy_score(y, pred, sample_weight=w)
        realized_f1 = skm.f1_score(y, pred, average="macro", sample_weight=w)
        assert est.metrics["accuracy"] == pytest.approx(realized_acc, abs=0.015)
        assert est.metrics["f1_macro"] == pytest.approx(realized_f1, abs=0.02)
        lo, hi = est.accuracy_interval
        assert lo <= realized_acc <= hi
    # the shift really changed realized accuracy (so the test means something)
    _, y0, p0 = _binary_world(rng, 20_000, shift=0.0)
    _, y1, p1 = _binary_world(rng, 20_000, shift=-1.5)
    acc0 = np.mean((p0 >= 0.5) == y0)
    acc1 = np.mean((p1 >= 0.5) == y1)
    assert acc1 - acc0 > 0.05


def test_estimate_is_visibly_wrong_under_concept_shift() -> None:
    rng = np.random.default_rng(2)
    _, y, p_model = _binary_world(rng, 20_000, concept_flip=True)
    pred = (p_model >= 0.5).astype(int)
    est = estimate_performance(p_model, score_kind="positive", classes=[0, 1])
    realized = {"accuracy": skm.accuracy_score(y, pred)}
    diff = compare_with_realized(est, realized)
    assert diff["accuracy"]["error"] > 0.4  # ~0.76 estimated vs ~0.24 realized
    assert "concept shift" in LIMITATION
    assert est.to_dict()["limitation"] == LIMITATION


def test_multiclass_probability_vectors() -> None:
    rng = np.random.default_rng(3)
    n, k = 30_000, 3
    centres = np.array([[0, 0], [2, 0], [0, 2]])

    def world(shift):
        x = rng.normal(size=(n, 2)) + shift
        logits = -0.5 * ((x[:, None, :] - centres[None]) ** 2).sum(axis=2)
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = np.array([rng.choice(k, p=p) for p in proba[:3000]])
        return proba[:3000], y

    for shift in (np.array([1.0, 1.0]), np.array([0.0, 1.5])):
        proba, y = world(shift)
        pred = proba.argmax(axis=1)
        est = estimate_performance(proba, score_kind="proba", classes=[0, 1, 2])
        assert est.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=0.03)
        realized_f1 = skm.f1_score(y, pred, average="macro")
        assert est.metrics["f1_macro"] == pytest.approx(realized_f1, abs=0.04)
        realized_recall = skm.recall_score(y, pred, average="macro")
        assert est.metrics["recall_macro"] == pytest.approx(realized_recall, abs=0.04)
        matrix = np.array(est.expected_confusion_matrix)
        assert matrix.sum() == pytest.approx(3000)
        # columns of the expected matrix are exactly the prediction counts
        np.testing.assert_allclose(matrix.sum(axis=0), np.bincount(pred, minlength=3))


def test_multiclass_top_confidence_gives_accuracy_and_precision_only() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    pred = proba.argmax(axis=1)
    est = estimate_performance(proba.max(axis=1), predictions=pred)
    assert est.metrics["accuracy"] == pytest.approx(np.mean([0.7, 0.6, 0.6, 0.5]))
    assert est.per_class["0"]["precision"] == pytest.approx(0.6)
    assert "recall_macro" not in est.metrics
    assert "f1_macro" not in est.metrics


def test_calibration_repairs_an_overconfident_model() -> None:
    rng = np.random.default_rng(4)
    _, y_ref, p_ref = _binary_world(rng, 20_000)
    _, y_cur, p_cur = _binary_world(rng, 20_000, shift=1.0)

    def overconfident(p):
        return _sigmoid(3 * np.log(p / (1 - p)))  # sharper than the truth

    raw_ref, raw_cur = overconfident(p_ref), overconfident(p_cur)
    pred_cur = (raw_cur >= 0.5).astype(int)
    realized = skm.accuracy_score(y_cur, pred_cur)
    naive = estimate_performance(raw_cur, score_kind="positive", classes=[0, 1])
    assert naive.metrics["accuracy"] - realized > 0.05
    for method in ("isotonic", "histogram"):
        cal = fit_calibration(
            raw_ref, y_ref, score_kind="positive", classes=[0, 1], method=method, n_bins=20
        )
        est = estimate_performance(raw_cur, score_kind="positive", calibration=cal)
        assert est.calibrated
        assert est.metrics["accuracy"] == pytest.approx(realized, abs=0.02)
        restored = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
        np.testing.assert_allclose(restored.apply(raw_cur[:50]), cal.apply(raw_cur[:50]))


def test_top_score_calibration_against_correctness() -> None:
    rng = np.random.default_rng(5)
    _, y_ref, p_ref = _binary_world(rng, 10_000)
    pred_ref = (p_ref >= 0.5).astype(int)
    top_ref = np.where(pred_ref == 1, p_ref, 1 - p_ref)
    squashed = 0.5 + (top_ref - 0.5) * 0.3  # underconfident scores
    cal = fit_calibration(squashed, y_ref, predictions=pred_ref)
    est = estimate_performance(squashed, predictions=pred_ref, calibration=cal)
    assert est.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y_ref, pred_ref), abs=0.01)


def test_isotonic_map_matches_sklearn_with_weights() -> None:
    rng = np.random.default_rng(6)
    s = np.round(rng.random(500), 2)  # with ties
    y = (rng.random(500) < s**2).astype(int)
    w = rng.choice([1.0, 2.0, 5.0], size=500)
    ours = ProbabilityCalibrator.fit(s, y, weights=w)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(s, y, sample_weight=w)
    grid = np.linspace(-0.1, 1.1, 241)
    np.testing.assert_allclose(ours.transform(grid), theirs.predict(grid), atol=1e-12)


def test_histogram_map_is_weighted_bin_mean() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    w = np.array([1, 1, 2, 1, 1, 1, 1, 3])
    cal = ProbabilityCalibrator.fit(s, y, weights=w, method="histogram", n_bins=2)
    left = (2 * 1) / (1 + 1 + 2 + 1)
    right = (1 + 1 + 3) / (1 + 1 + 1 + 3)
    np.testing.assert_allclose(cal.transform([0.05, 0.35, 0.95]), [left, left, right])


def test_estimate_is_labelled_and_json() -> None:
    est = estimate_performance([0.9, 0.8, 0.6], predictions=["a", "b", "a"])
    data = json.loads(json.dumps(est.to_dict()))
    assert data["kind"] == "estimated"
    assert data["method"] == "cbpe"
    assert data["metrics"]["accuracy"] == pytest.approx(2.3 / 3)
    assert data["classes"] == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": [0.5, 1.2], "predictions": [0, 1]}, "probabilities"),
        ({"scores": [0.5, 0.7]}, "needs the predictions"),
        ({"scores": [0.5, 0.7], "predictions": [0]}, "rows"),
        ({"scores": [[0.5, 0.5]], "score_kind": "proba"}, "needs classes"),
        ({"scores": [0.5], "score_kind": "positive", "classes": [0, 1, 2]}, "two classes"),
        ({"scores": [0.5], "predictions": [3], "classes": [0, 1]}, "not one of the classes"),
        ({"scores": [0.5], "predictions": [1], "weights": [0.0]}, "positive weight"),
    ],
)
def test_invalid_input_is_refused_precisely(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_performance(**kwargs)
