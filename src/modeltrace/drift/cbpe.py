"""Performance estimated without labels: confidence-based performance estimation (CBPE).

The idea (NannyML's CBPE): when a classifier's scores are calibrated, a score
of 0.8 on the predicted class means the prediction is right 80% of the time.
The expected accuracy of a window is then the weighted mean of the
predicted-class probabilities, and the expected confusion matrix is

    E[C[i, j]] = sum over rows predicted j of  w * P(y = i | x)

from which expected precision, recall and F1 per class follow (as ratios of
expected counts). Rows weigh ``1 / ml.sample.rate``, as everywhere.

Inputs (``score_kind``, as in ``modeltrace.drift.performance``):

* ``"proba"``: full probability vectors, columns in ``classes`` order; every
  metric is estimated.
* ``"positive"``: a binary positive-class probability; every metric.
* ``"top"``: the predicted class's confidence only (``ml.prediction.score``).
  Binary: converted exactly to the positive-class probability. More classes:
  only accuracy and per-class precision are determined (recall needs to know
  where the missing probability mass goes), so recall and F1 are left out.

Calibration: scores straight from a model are often not calibrated.
:func:`fit_calibration` learns a monotone map (isotonic regression by pool
adjacent violators, or histogram binning, weighted, numpy only) on a labelled
reference set; :func:`estimate_performance` applies it before estimating.

Limitation: CBPE assumes ``P(y | x)`` is the same in production as on the
reference. It follows covariate shift (the inputs move, the relationship holds)
but is blind to concept shift (the relationship changes): the scores then stay
confident while the model is wrong, and the estimate stays high. It is an
estimate, labelled as such (``"kind": "estimated"``); compare it with realized
performance once labels arrive (:func:`compare_with_realized`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from modeltrace.drift.performance import (
    ACCURACY,
    F1_MACRO,
    PRECISION_MACRO,
    RECALL_MACRO,
    ScoreKind,
    as_1d,
    probabilities,
    scores_from_confusion,
    validate_weights,
    weighted_counts,
)

CalibrationMethod = Literal["isotonic", "histogram"]

LIMITATION = (
    "Estimated from the model's own scores (CBPE): valid while the scores are calibrated "
    "and P(label | features) is unchanged. It follows covariate shift but not concept "
    "shift, under which it can stay high while the model is wrong; compare it with "
    "realized performance once labels arrive."
)


# --------------------------------------------------------------------------
# one-dimensional calibration maps
# --------------------------------------------------------------------------


def _pool_adjacent_violators(
    values: NDArray[np.float64], weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Weighted least-squares non-decreasing fit of ``values`` (in order)."""
    means: list[float] = []
    mass: list[float] = []
    sizes: list[int] = []
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(v)
        mass.append(w)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            total = mass[-2] + mass[-1]
            merged = (means[-2] * mass[-2] + means[-1] * mass[-1]) / total
            size = sizes[-2] + sizes[-1]
            del means[-1], mass[-1], sizes[-1]
            means[-1], mass[-1], sizes[-1] = merged, total, size
    return np.repeat(np.asarray(means), sizes)


@dataclass(frozen=True)
class ProbabilityCalibrator:
    """A monotone map from a raw score to a calibrated probability.

    ``isotonic``: linear interpolation between ``knots`` (the distinct
    reference scores) and their isotonic fit, clipped outside the range.
    ``histogram``: a step function, ``values[i]`` on ``[edges[i], edges[i+1])``.
    """

    method: CalibrationMethod
    knots: tuple[float, ...]
    values: tuple[float, ...]

    @classmethod
    def fit(
        cls,
        scores: ArrayLike,
        outcomes: ArrayLike,
        *,
        weights: ArrayLike | None = None,
        method: CalibrationMethod = "isotonic",
        n_bins: int = 10,
    ) -> ProbabilityCalibrator:
        """Learn the map from scores and 0/1 outcomes (was the event observed)."""
        s = probabilities(as_1d(scores, "scores"), 1)
        y = as_1d(outcomes, "outcomes").astype(np.float64)
        if y.shape[0] != s.shape[0]:
            raise ValueError(f"outcomes has {y.shape[0]} rows, expected {s.shape[0]}")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("outcomes must be 0/1")
        w = validate_weights(weights, s.shape[0])
        keep = w > 0
        s, y, w = s[keep], y[keep], w[keep]
        if s.shape[0] == 0:
            raise ValueError("calibration needs at least one row with a positive weight")
        if method == "isotonic":
            uniq, inverse = np.unique(s, return_inverse=True)
            mass = weighted_counts(inverse, weights=w)
            rate = weighted_counts(inverse, weights=w * y) / mass
            fitted = _pool_adjacent_violators(rate, mass)
            return cls("isotonic", tuple(uniq.tolist()), tuple(fitted.tolist()))
        if method == "histogram":
            if n_bins < 1:
                raise ValueError("n_bins must be >= 1")
            inner = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1)[1:-1]))
            idx = np.searchsorted(inner, s, side="right")
            mass = weighted_counts(idx, weights=w, minlength=inner.shape[0] + 1)
            hits = weighted_counts(idx, weights=w * y, minlength=inner.shape[0] + 1)
            edges = np.concatenate([[0.0], inner, [1.0]])
            centres = (edges[:-1] + edges[1:]) / 2
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = np.where(mass > 0, hits / mass, centres)
            return cls("histogram", tuple(inner.tolist()), tuple(rate.tolist()))
        raise ValueError(f"unknown calibration method {method!r} (isotonic, histogram)")

    def transform(self, scores: ArrayLike) -> NDArray[np.float64]:
        s = np.asarray(scores, dtype=np.float64)
        knots = np.asarray(self.knots)
        values = np.asarray(self.values)
        if self.method == "isotonic":
            return np.interp(s, knots, values)
        return values[np.searchsorted(knots, s, side="right")]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "knots": list(self.knots), "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbabilityCalibrator:
        method = data["method"]
        if method not in ("isotonic", "histogram"):
            raise ValueError(f"unknown calibration method {method!r}")
        knots = tuple(float(v) for v in data["knots"])
        values = tuple(float(v) for v in data["values"])
        expected = len(knots) if method == "isotonic" else len(knots) + 1
        if len(values) != expected:
            raise ValueError(f"{method} calibrator needs {expected} values, got {len(values)}")
        return cls(method, knots, values)


# --------------------------------------------------------------------------
# calibration of a classifier's scores
# --------------------------------------------------------------------------


def _json_label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Calibration:
    """Calibration of one model's scores, fitted on a labelled reference set.

    ``"top"`` and ``"positive"`` scores get one map; ``"proba"`` one map per
    class column (one-vs-rest), rows renormalised to sum to 1 afterwards.
    """

    score_kind: ScoreKind
    classes: list[Any]
    calibrators: list[ProbabilityCalibrator]

    def apply(self, scores: ArrayLike) -> NDArray[np.float64]:
        if self.score_kind != "proba":
            return self.calibrators[0].transform(probabilities(scores, 1))
        proba = probabilities(scores, 2)
        if proba.shape[1] != len(self.calibrators):
            raise ValueError(
                f"scores has {proba.shape[1]} columns, the calibration {len(self.calibrators)}"
            )
        out = np.column_stack(
            [cal.transform(proba[:, j]) for j, cal in enumerate(self.calibrators)]
        )
        sums = out.sum(axis=1, keepdims=True)
        uniform = np.full_like(out, 1.0 / out.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sums > 0, out / np.where(sums > 0, sums, 1.0), uniform)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score_kind": self.score_kind,
            "classes": [_json_label(c) for c in self.classes],
            "calibrators": [c.to_dict() for c in self.calibrators],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        kind = data["score_kind"]
        if kind not in ("top", "positive", "proba"):
            raise ValueError(f"unknown score_kind {kind!r}")
        return cls(
            kind,
            list(data["classes"]),
            [ProbabilityCalibrator.from_dict(c) for c in data["calibrators"]],
        )


def _positive(classes: Sequence[Any], positive_label: Any) -> Any:
    if len(classes) != 2:
        raise ValueError(f"a binary task needs exactly two classes, got {len(classes)}")
    if positive_label is None:
        return sorted(classes)[-1]
    if positive_label not in classes:
        raise ValueError(f"positive_label {positive_label!r} is not one of the classes")
    return positive_label


def fit_calibration(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    predictions: ArrayLike | None = None,
    score_kind: ScoreKind = "top",
    classes: Sequence[Any] | None = None,
    positive_label: Any = None,
    weights: ArrayLike | None = None,
    method: CalibrationMethod = "isotonic",
    n_bins: int = 10,
) -> Calibration:
    """Fit the calibration of a model's scores on a reference set with labels.

    ``"top"`` needs ``predictions`` (the outcome is "prediction was right");
    ``"positive"`` needs two ``classes`` (the outcome is "label is positive");
    ``"proba"`` needs ``classes`` in column order.
    """
    y = as_1d(labels, "labels")
    n = y.shape[0]
    if score_kind == "top":
        if predictions is None:
            raise ValueError("score_kind='top' needs the predictions to calibrate against")
        pred = as_1d(predictions, "predictions")
        if pred.shape[0] != n:
            raise ValueError(f"predictions has {pred.shape[0]} rows, expected {n}")
        cal = ProbabilityCalibrator.fit(
            scores, y == pred, weights=weights, method=method, n_bins=n_bins
        )
        known = list(classes) if classes is not None else np.unique(np.r_[y, pred]).tolist()
        return Calibration("top", known, [cal])
    if classes is None:
        raise ValueError(f"score_kind={score_kind!r} needs classes")
    if score_kind == "positive":
        positive = _positive(list(classes), positive_label)
        cal = ProbabilityCalibrator.fit(
            scores, y == positive, weights=weights, method=method, n_bins=n_bins
        )
        ordered = [c for c in classes if c != positive] + [positive]
        return Calibration("positive", ordered, [cal])
    if score_kind == "proba":
        proba = probabilities(scores, 2)
        if proba.shape != (n, len(classes)):
            raise ValueError(f"scores must have shape ({n}, {len(classes)}), got {proba.shape}")
        cals = [
            ProbabilityCalibrator.fit(
                proba[:, j], y == c, weights=weights, method=method, n_bins=n_bins
            )
            for j, c in enumerate(classes)
        ]
        return Calibration("proba", list(classes), cals)
    raise ValueError(f"unknown score_kind {score_kind!r} (top, positive, proba)")


# --------------------------------------------------------------------------
# the estimate
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PerformanceEstimate:
    """Expected performance of a window from calibrated scores: an estimate, not a measure.

    ``accuracy_interval`` is the sampling interval of the expected accuracy
    *assuming the scores are calibrated*; it says nothing about concept shift.
    """

    metrics: dict[str, float]
    classes: list[Any]
    per_class: dict[str, dict[str, float]]
    expected_confusion_matrix: list[list[float]] | None
    accuracy_interval: tuple[float, float]
    confidence_level: float
    n_rows: int
    weighted_rows: float
    calibrated: bool
    score_kind: ScoreKind
    limitation: str = field(default=LIMITATION)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.accuracy_interval
        return {
            "kind": "estimated",
            "method": "cbpe",
            "metrics": dict(self.metrics),
            "intervals": {ACCURACY: {"low": lo, "high": hi, "method": "cbpe-sampling"}},
            "confidence_level": self.confidence_level,
            "classes": [_json_label(c) for c in self.classes],
            "per_class": self.per_class,
            "expected_confusion_matrix": self.expected_confusion_matrix,
            "n_rows": self.n_rows,
            "weighted_rows": self.weighted_rows,
            "calibrated": self.calibrated,
            "score_kind": self.score_kind,
            "limitation": self.limitation,
        }


def _codes(values: NDArray[Any], classes: Sequence[Any]) -> NDArray[np.intp]:
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(values.shape[0], dtype=np.intp)
    for i, v in enumerate(values.tolist()):
        code = index.get(v)
        if code is None:
            raise ValueError(f"prediction {v!r} is not one of the classes {list(classes)!r}")
        out[i] = code
    return out


def estimate_performance(
    scores: ArrayLike,
    *,
    predictions: ArrayLike | None = None,
    score_kind: ScoreKind = "top",
    classes: Sequence[Any] | None = None,
    positive_label: Any = None,
    weights: ArrayLike | None = None,
    calibration: Calibration | None = None,
    decision_threshold: float = 0.5,
    confidence: float = 0.95,
) -> PerformanceEstimate:
    """Estimate accuracy, precision, recall and F1 of unlabelled rows from their scores.

    Predictions default to the argmax (``"proba"``) or to the positive class
    when its probability reaches ``decision_threshold`` (``"positive"``);
    ``"top"`` needs them. With ``calibration`` (whose ``score_kind`` must
    match) scores are calibrated first.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if calibration is not None:
        if calibration.score_kind != score_kind:
            raise ValueError(
                f"calibration was fitted on score_kind={calibration.score_kind!r}, "
                f"not {score_kind!r}"
            )
        if classes is None:
            classes = calibration.classes
    raw = np.asarray(scores, dtype=np.float64)
    n = raw.shape[0] if raw.ndim else 1
    w = validate_weights(weights, n)
    pred = None if predictions is None else as_1d(predictions, "predictions")
    if pred is not None and pred.shape[0] != n:
        raise ValueError(f"predictions has {pred.shape[0]} rows, expected {n}")
    s = raw if calibration is None else calibration.apply(raw)

    proba: NDArray[np.float64] | None
    top: NDArray[np.float64]
    if score_kind == "proba":
        if classes is None:
            raise ValueError("score_kind='proba' needs classes (the column order)")
        labels = list(classes)
        proba = probabilities(s, 2)
        if proba.shape[1] != len(labels):
            raise ValueError(f"scores has {proba.shape[1]} columns, classes {len(labels)}")
        pred_codes = proba.argmax(axis=1) if pred is None else _codes(pred, labels)
        top = proba[np.arange(n), pred_codes]
    elif score_kind == "positive":
        if classes is None:
            raise ValueError("score_kind='positive' needs the two classes")
        positive = _positive(list(classes), positive_label)
        labels = [c for c in classes if c != positive] + [positive]
        p_pos = probabilities(s, 1)
        proba = np.column_stack([1 - p_pos, p_pos])
        if pred is None:
            pred_codes = (p_pos >= decision_threshold).astype(np.intp)
        else:
            pred_codes = _codes(pred, labels)
        top = proba[np.arange(n), pred_codes]
    elif score_kind == "top":
        if pred is None:
            raise ValueError("score_kind='top' needs the predictions")
        top = probabilities(s, 1)
        labels = list(classes) if classes is not None else np.unique(pred).tolist()
        pred_codes = _codes(pred, labels)
        proba = None
        if len(labels) == 2:
            proba = np.empty((n, 2))
            proba[np.arange(n), pred_codes] = top
            proba[np.arange(n), 1 - pred_codes] = 1 - top
    else:
        raise ValueError(f"unknown score_kind {score_kind!r} (top, positive, proba)")

    total = float(w.sum())
    if n == 0 or total <= 0:
        raise ValueError("estimate_performance needs at least one row with a positive weight")
    expected_accuracy = float(np.dot(w, top) / total)
    # Each row is right with probability top: a weighted sum of Bernoulli variables.
    sd = math.sqrt(float(np.dot(w * w, top * (1 - top)))) / total
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    interval = (max(0.0, expected_accuracy - z * sd), min(1.0, expected_accuracy + z * sd))
    k = len(labels)
    metrics = {ACCURACY: expected_accuracy}
    per_class: dict[str, dict[str, float]] = {}
    matrix_out: list[list[float]] | None = None
    if proba is not None:
        onehot = np.zeros((n, k))
        onehot[np.arange(n), pred_codes] = 1.0
        matrix = (proba * w[:, None]).T @ onehot  # rows: expected true class, cols: predicted
        per = scores_from_confusion(matrix)
        present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
        metrics[PRECISION_MACRO] = float(per.precision[present].mean())
        metrics[RECALL_MACRO] = float(per.recall[present].mean())
        metrics[F1_MACRO] = float(per.f1[present].mean())
        matrix_out = matrix.tolist()
        for i, label in enumerate(labels):
            per_class[str(_json_label(label))] = {
                "precision": float(per.precision[i]),
                "recall": float(per.recall[i]),
                "f1": float(per.f1[i]),
                "support": float(per.support[i]),
            }
    else:
        # Top-class confidence of a multiclass model: expected right / predicted per class.
        predicted = weighted_counts(pred_codes, weights=w, minlength=k)
        right = weighted_counts(pred_codes, weights=w * top, minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(predicted > 0, right / predicted, 0.0)
        seen = predicted > 0
        metrics[PRECISION_MACRO] = float(precision[seen].mean())
        for i, label in enumerate(labels):
            per_class[str(_json_label(label))] = {"precision": float(precision[i])}
    return PerformanceEstimate(
        metrics=metrics,
        classes=labels,
        per_class=per_class,
        expected_confusion_matrix=matrix_out,
        accuracy_interval=interval,
        confidence_level=confidence,
        n_rows=n,
        weighted_rows=total,
        calibrated=calibration is not None,
        score_kind=score_kind,
    )


def compare_with_realized(
    estimate: PerformanceEstimate | Mapping[str, float], realized: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """Per metric both have: estimated, realized and ``estimated - realized``."""
    est = estimate.metrics if isinstance(estimate, PerformanceEstimate) else estimate
    return {
        name: {
            "estimated": est[name],
            "realized": realized[name],
            "error": est[name] - realized[name],
        }
        for name in est
        if name in realized
    }
