"""Realized model performance on the labelled sample of a window, with intervals and SLOs.

Pure numpy functions that the aggregator calls once delayed labels are joined
to captured predictions. Every captured row counts with its weight
``1 / ml.sample.rate``, so the metrics estimate the performance over all
predictions, not only over the captured ones.

Classification: accuracy, precision / recall / F1 (macro and per class), the
weighted confusion matrix (rows are true labels, columns predicted labels, as
in scikit-learn), ROC AUC (binary, or one-vs-rest macro) and log loss when
probabilities are known. Regression: MAE, RMSE, MAPE, R2. The formulas are the
ones of scikit-learn with ``sample_weight`` (undefined precision/recall count
as 0, macro averages run over the classes seen in the labels or predictions,
MAPE divides by ``max(|y|, machine epsilon)``, a constant target gives
R2 = 1 if predicted exactly, else 0).

Scores (``score_kind``):

* ``"top"``: a 1-D confidence of the predicted class (what ``ml.prediction.score``
  carries: the max probability). For a binary task it converts exactly to the
  positive-class probability; for more classes ROC AUC and log loss are left out.
* ``"positive"``: a 1-D probability of the positive class (binary only).
* ``"proba"``: a 2-D matrix of class probabilities, columns in ``classes`` order.

Confidence intervals: accuracy gets a Wilson score interval whose sample size
is Kish's effective size ``(sum w)^2 / sum w^2``; every other metric gets a
seeded percentile bootstrap over rows, bounded by a number of resamples and a
wall-clock budget (fewer than ``BootstrapSettings.min_resamples`` finished
resamples give no interval rather than a misleading one).

SLOs: ``thresholds={"accuracy": 0.9, "rmse": 3.0}`` is read with the metric's
direction (higher is better for accuracy, precision, recall, F1, ROC AUC, R2;
lower for log loss, MAE, RMSE, MAPE); an explicit ``{"min": x}`` or
``{"max": x}`` overrides it. A metric that could not be computed is reported
with ``breached = None``.

``PerformanceReport.to_dict()`` is the JSON the service answers on
``GET .../performance``: ``{"task", "realized": {...}, "intervals": {...},
"label_coverage", "slo": {...}, "breached": [...], "estimated": {...} | None, ...}``;
``PerformanceReport.gauges()`` gives the values to publish as
``ml.model.performance`` with ``ml.performance.metric`` = the metric name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Task = Literal["classification", "regression"]
ScoreKind = Literal["top", "positive", "proba"]
Direction = Literal["min", "max"]

# Metric names, used as keys of ``realized`` and as ``ml.performance.metric`` values.
ACCURACY = "accuracy"
PRECISION_MACRO = "precision_macro"
RECALL_MACRO = "recall_macro"
F1_MACRO = "f1_macro"
ROC_AUC = "roc_auc"
LOG_LOSS = "log_loss"
MAE = "mae"
RMSE = "rmse"
MAPE = "mape"
R2 = "r2"

CLASSIFICATION_METRICS: tuple[str, ...] = (
    ACCURACY,
    PRECISION_MACRO,
    RECALL_MACRO,
    F1_MACRO,
    ROC_AUC,
    LOG_LOSS,
)
REGRESSION_METRICS: tuple[str, ...] = (MAE, RMSE, MAPE, R2)

# "min": the metric must stay at or above the threshold; "max": at or below it.
DEFAULT_DIRECTIONS: dict[str, Direction] = {
    ACCURACY: "min",
    PRECISION_MACRO: "min",
    RECALL_MACRO: "min",
    F1_MACRO: "min",
    ROC_AUC: "min",
    R2: "min",
    LOG_LOSS: "max",
    MAE: "max",
    RMSE: "max",
    MAPE: "max",
}

_EPS64 = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------


def as_1d(values: ArrayLike, name: str) -> NDArray[Any]:
    """``values`` as a 1-D array (a scalar becomes one element)."""
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def validate_weights(weights: ArrayLike | None, n: int) -> NDArray[np.float64]:
    """Row weights as a float array of length ``n`` (ones when ``None``).

    Weights are ``1 / ml.sample.rate``: finite and non-negative.
    """
    if weights is None:
        return np.ones(n, dtype=np.float64)
    try:
        w = as_1d(weights, "weights").astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"weights must be numbers: {exc}") from None
    if w.shape[0] != n:
        raise ValueError(f"weights has {w.shape[0]} rows, expected {n}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    return w


def _is_textual(arr: NDArray[Any]) -> bool:
    if arr.dtype.kind in "USa":
        return True
    if arr.dtype.kind == "O":
        return any(isinstance(v, (str, bytes)) for v in arr[: min(arr.shape[0], 64)])
    return False


def _validate_labels(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
    t = as_1d(y_true, "y_true")
    p = as_1d(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} rows but y_pred has {p.shape[0]}")
    if t.shape[0] and _is_textual(t) != _is_textual(p):
        which = ("y_true", "y_pred") if _is_textual(t) else ("y_pred", "y_true")
        raise ValueError(
            f"{which[0]} holds strings but {which[1]} holds numbers: labels are compared "
            "with ==, so normalise their type before computing performance"
        )
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.dtype.kind == "f" and np.any(np.isnan(arr)):
            raise ValueError(f"{name} holds NaN: drop unlabelled rows first")
        if arr.dtype.kind == "O" and any(v is None for v in arr):
            raise ValueError(f"{name} holds None: drop unlabelled rows first")
    return t, p


def _validate_numeric(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = as_1d(values, name)
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers for a regression task") from None
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite (drop unlabelled rows first)")
    return out


def probabilities(
    values: ArrayLike, ndim: int, n: int | None = None, name: str = "scores"
) -> NDArray[np.float64]:
    """``values`` as an ``ndim``-D float array of probabilities (``n`` rows when given)."""
    try:
        s = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers") from None
    if s.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D for this score_kind, got shape {s.shape}")
    if n is not None and s.shape[0] != n:
        raise ValueError(f"{name} has {s.shape[0]} rows, expected {n}")
    if not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(s > 1):
        raise ValueError(f"{name} must be probabilities in [0, 1]")
    return s


# --------------------------------------------------------------------------
# classification metrics
# --------------------------------------------------------------------------


def weighted_counts(
    codes: NDArray[np.intp], weights: NDArray[np.float64], minlength: int = 0
) -> NDArray[np.float64]:
    """Sum of ``weights`` per integer code (``np.bincount`` typed as float)."""
    return np.asarray(np.bincount(codes, weights=weights, minlength=minlength), dtype=np.float64)


def class_labels(y_true: ArrayLike, y_pred: ArrayLike) -> NDArray[Any]:
    """The sorted union of the labels seen in ``y_true`` and ``y_pred``."""
    t, p = _validate_labels(y_true, y_pred)
    return np.unique(np.concatenate([t, p]))


def _codes(values: NDArray[Any], classes: NDArray[Any], name: str) -> NDArray[np.intp]:
    sorter = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes, values, sorter=sorter)
    pos = np.clip(pos, 0, classes.shape[0] - 1)
    codes = sorter[pos]
    if values.shape[0] and not np.all(classes[codes] == values):
        unknown = values[classes[codes] != values][0]
        raise ValueError(f"{name} holds label {unknown!r}, not in classes")
    return codes.astype(np.intp)


def confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    classes: ArrayLike | None = None,
) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """Weighted confusion matrix: ``(classes, matrix)``, rows true, columns predicted."""
    t, p = _validate_labels(y_true, y_pred)
    w = validate_weights(weights, t.shape[0])
    labels = np.unique(np.concatenate([t, p])) if classes is None else as_1d(classes, "classes")
    if labels.shape[0] == 0:
        return labels, np.zeros((0, 0))
    k = labels.shape[0]
    ti = _codes(t, labels, "y_true")
    pi = _codes(p, labels, "y_pred")
    matrix = weighted_counts(ti * k + pi, weights=w, minlength=k * k).reshape(k, k)
    return labels, matrix


def accuracy(y_true: ArrayLike, y_pred: ArrayLike, *, weights: ArrayLike | None = None) -> float:
    """Weighted share of rows whose prediction equals the label."""
    t, p = _validate_labels(y_true, y_pred)
    w = validate_weights(weights, t.shape[0])
    total = float(w.sum())
    if total <= 0:
        raise ValueError("accuracy needs at least one row with a positive weight")
    return float(np.dot(w, t == p) / total)


@dataclass(frozen=True)
class ClassScores:
    """Per-class precision, recall, F1 and (weighted) support, classes in order."""

    precision: NDArray[np.float64]
    recall: NDArray[np.float64]
    f1: NDArray[np.float64]
    support: NDArray[np.float64]


def scores_from_confusion(matrix: NDArray[np.float64]) -> ClassScores:
    """Precision, recall and F1 per class from a (possibly expected) confusion matrix.

    Undefined ratios (no predicted / no true rows of a class) are 0, as
    scikit-learn's ``zero_division=0``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    predicted = m.sum(axis=0)
    actual = m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        denom = predicted + actual
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return ClassScores(precision=precision, recall=recall, f1=f1, support=actual)


def roc_auc_binary(
    y_positive: ArrayLike, scores: ArrayLike, *, weights: ArrayLike | None = None
) -> float | None:
    """Weighted ROC AUC: the probability that a positive outranks a negative (ties 1/2).

    ``y_positive`` is a boolean per row. Equals the trapezoidal area under the
    weighted ROC curve; ``None`` when one of the two classes has no weight.
    """
    y = as_1d(y_positive, "y_positive").astype(bool)
    s = as_1d(scores, "scores").astype(np.float64)
    w = validate_weights(weights, y.shape[0])
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"scores has {s.shape[0]} rows, expected {y.shape[0]}")
    uniq, inverse = np.unique(s, return_inverse=True)
    pos = weighted_counts(inverse, weights=w * y, minlength=uniq.shape[0])
    neg = weighted_counts(inverse, weights=w * ~y, minlength=uniq.shape[0])
    total_pos = float(pos.sum())
    total_neg = float(neg.sum())
    if total_pos <= 0 or total_neg <= 0:
        return None
    neg_below = np.cumsum(neg) - neg
    return float(np.dot(pos, neg_below + 0.5 * neg) / (total_pos * total_neg))


def roc_auc_ovr(
    true_codes: NDArray[np.intp], proba: NDArray[np.float64], *, weights: ArrayLike | None = None
) -> float | None:
    """One-vs-rest macro ROC AUC over the columns of ``proba``.

    Classes with no weighted positive or negative row are left out of the
    average (scikit-learn would refuse); ``None`` when none is left.
    """
    w = validate_weights(weights, true_codes.shape[0])
    values = []
    for k in range(proba.shape[1]):
        auc = roc_auc_binary(true_codes == k, proba[:, k], weights=w)
        if auc is not None:
            values.append(auc)
    return float(np.mean(values)) if values else None


def log_loss(
    true_codes: NDArray[np.intp], proba: NDArray[np.float64], *, weights: ArrayLike | None = None
) -> float:
    """Weighted cross-entropy of the true class's probability (clipped to machine epsilon)."""
    w = validate_weights(weights, true_codes.shape[0])
    p_true = proba[np.arange(true_codes.shape[0]), true_codes]
    p_true = np.clip(p_true, _EPS64, 1 - _EPS64)
    return float(-np.dot(w, np.log(p_true)) / w.sum())


def positive_class_probability(
    top_scores: ArrayLike, y_pred: ArrayLike, positive_label: Any
) -> NDArray[np.float64]:
    """Binary task: the positive-class probability from the predicted class's confidence."""
    s = np.asarray(top_scores, dtype=np.float64)
    p = as_1d(y_pred, "y_pred")
    return np.where(p == positive_label, s, 1.0 - s)


# --------------------------------------------------------------------------
# regression metrics
# --------------------------------------------------------------------------


def _regression_values(
    t: NDArray[np.float64], p: NDArray[np.float64], w: NDArray[np.float64]
) -> dict[str, float]:
    total = float(w.sum())
    err = p - t
    sq = float(np.dot(w, err * err))
    mean_t = float(np.dot(w, t) / total)
    dev = t - mean_t
    ss_tot = float(np.dot(w, dev * dev))
    # A constant target: R2 is 1 if predicted exactly, else 0 (scikit-learn's force_finite).
    perfect = 1.0 if sq == 0 else 0.0
    r2 = 1.0 - sq / ss_tot if ss_tot > 0 else perfect
    return {
        MAE: float(np.dot(w, np.abs(err)) / total),
        RMSE: math.sqrt(sq / total),
        MAPE: float(np.dot(w, np.abs(err) / np.maximum(np.abs(t), _EPS64)) / total),
        R2: r2,
    }


def regression_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, *, weights: ArrayLike | None = None
) -> dict[str, float]:
    """Weighted MAE, RMSE, MAPE (a fraction, not a percentage) and R2."""
    t = _validate_numeric(y_true, "y_true")
    p = _validate_numeric(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} rows but y_pred has {p.shape[0]}")
    w = validate_weights(weights, t.shape[0])
    if w.sum() <= 0:
        raise ValueError("regression metrics need at least one row with a positive weight")
    return _regression_values(t, p, w)


# --------------------------------------------------------------------------
# intervals
# --------------------------------------------------------------------------


def kish_effective_size(weights: ArrayLike) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 for no weight)."""
    w = np.asarray(weights, dtype=np.float64)
    sq = float(np.dot(w, w))
    return float(w.sum()) ** 2 / sq if sq > 0 else 0.0


def wilson_interval(proportion: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion observed on (an effective) ``n`` trials."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if not 0 <= proportion <= 1:
        raise ValueError("proportion must be in [0, 1]")
    if n <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    z2n = z * z / n
    centre = (proportion + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(proportion * (1 - proportion) / n + z2n / (4 * n)) / (1 + z2n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class BootstrapSettings:
    """Bounds of the percentile bootstrap: resamples, wall-clock budget, seed."""

    resamples: int = 200
    time_budget_s: float = 1.0
    seed: int = 0
    min_resamples: int = 50

    def __post_init__(self) -> None:
        if self.resamples < 0:
            raise ValueError("resamples must be >= 0")
        if not self.time_budget_s > 0:
            raise ValueError("time_budget_s must be > 0")
        if self.min_resamples < 2:
            raise ValueError("min_resamples must be >= 2")


def bootstrap_intervals(
    statistic: Callable[[NDArray[np.intp]], Mapping[str, float | None]],
    n: int,
    *,
    confidence: float,
    settings: BootstrapSettings,
) -> tuple[dict[str, tuple[float, float]], int]:
    """Percentile intervals of each value ``statistic(row_indices)`` returns.

    Rows are resampled with replacement; stops at ``settings.resamples`` or
    when the time budget is spent. Returns ``(intervals, resamples_done)``;
    metrics with fewer than ``min_resamples`` defined values get no interval.
    """
    if n == 0 or settings.resamples == 0:
        return {}, 0
    rng = np.random.default_rng(settings.seed)
    deadline = time.monotonic() + settings.time_budget_s
    samples: dict[str, list[float]] = {}
    done = 0
    while done < settings.resamples and time.monotonic() < deadline:
        idx = rng.integers(0, n, size=n)
        for name, value in statistic(idx).items():
            if value is not None and math.isfinite(value):
                samples.setdefault(name, []).append(value)
        done += 1
    alpha = 1 - confidence
    out: dict[str, tuple[float, float]] = {}
    for name, values in samples.items():
        if len(values) >= settings.min_resamples:
            lo, hi = np.quantile(np.asarray(values), [alpha / 2, 1 - alpha / 2])
            out[name] = (float(lo), float(hi))
    return out, done


# --------------------------------------------------------------------------
# SLOs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SloStatus:
    """One SLO: the threshold, its direction, the realized value and the verdict."""

    metric: str
    threshold: float
    direction: Direction
    value: float | None
    breached: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "direction": self.direction,
            "value": self.value,
            "breached": self.breached,
        }


SloSpec = Mapping[str, "float | Mapping[str, float]"]


def parse_thresholds(thresholds: SloSpec | None) -> dict[str, tuple[float, Direction]]:
    """Validate ``{"metric": x}`` / ``{"metric": {"min"|"max": x}}`` into (threshold, direction)."""
    out: dict[str, tuple[float, Direction]] = {}
    for metric, spec in (thresholds or {}).items():
        if metric not in DEFAULT_DIRECTIONS:
            known = ", ".join(sorted(DEFAULT_DIRECTIONS))
            raise ValueError(f"unknown performance metric {metric!r} in thresholds ({known})")
        direction: Direction
        if isinstance(spec, Mapping):
            if len(spec) != 1 or next(iter(spec)) not in ("min", "max"):
                raise ValueError(
                    f"threshold of {metric!r} must be a number, {{'min': x}} or {{'max': x}}"
                )
            key, value = next(iter(spec.items()))
            direction = "min" if key == "min" else "max"
        else:
            direction, value = DEFAULT_DIRECTIONS[metric], spec
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"threshold of {metric!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"threshold of {metric!r} must be finite")
        out[metric] = (float(value), direction)
    return out


def evaluate_slos(
    realized: Mapping[str, float], thresholds: SloSpec | None
) -> dict[str, SloStatus]:
    """Each threshold against the realized value: breached, not, or None when unknown."""
    out = {}
    for metric, (threshold, direction) in parse_thresholds(thresholds).items():
        value = realized.get(metric)
        breached: bool | None
        if value is None:
            breached = None
        elif direction == "min":
            breached = value < threshold
        else:
            breached = value > threshold
        out[metric] = SloStatus(metric, threshold, direction, value, breached)
    return out


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------


def _json_label(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class PerformanceReport:
    """Realized performance of one model version over one window's labelled rows.

    ``estimated`` is left to the caller: the service attaches the CBPE estimate
    (``modeltrace.drift.cbpe``) with :meth:`with_estimate`.
    """

    task: Task
    realized: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    interval_methods: dict[str, str]
    confidence_level: float
    n_labelled: int
    weighted_labelled: float
    effective_sample_size: float
    n_predictions: float | None
    label_coverage: float | None
    slo: dict[str, SloStatus] = field(default_factory=dict)
    classes: list[Any] = field(default_factory=list)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion_matrix: list[list[float]] | None = None
    bootstrap_resamples: int = 0
    estimated: dict[str, Any] | None = None

    @property
    def breached(self) -> list[str]:
        """Metrics whose SLO is breached."""
        return [name for name, status in self.slo.items() if status.breached]

    def gauges(self) -> dict[str, float]:
        """Values for the ``ml.model.performance`` gauge, keyed by ``ml.performance.metric``."""
        return {k: v for k, v in self.realized.items() if math.isfinite(v)}

    def with_estimate(self, estimate: Mapping[str, Any] | None) -> PerformanceReport:
        """A copy carrying an estimate (e.g. ``PerformanceEstimate.to_dict()``)."""
        return replace(self, estimated=dict(estimate) if estimate is not None else None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "realized": {k: _finite_or_none(v) for k, v in self.realized.items()},
            "intervals": {
                k: {"low": lo, "high": hi, "method": self.interval_methods.get(k, "")}
                for k, (lo, hi) in self.intervals.items()
            },
            "confidence_level": self.confidence_level,
            "label_coverage": self.label_coverage,
            "n_labelled": self.n_labelled,
            "weighted_labelled": self.weighted_labelled,
            "effective_sample_size": self.effective_sample_size,
            "n_predictions": self.n_predictions,
            "slo": {k: s.to_dict() for k, s in self.slo.items()},
            "breached": self.breached,
            "bootstrap_resamples": self.bootstrap_resamples,
            "estimated": self.estimated,
        }
        if self.task == "classification":
            out["classes"] = [_json_label(c) for c in self.classes]
            out["per_class"] = self.per_class
            out["confusion_matrix"] = self.confusion_matrix
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerformanceReport:
        """Inverse of :meth:`to_dict` (realized values of ``None`` are dropped)."""
        slo = {
            k: SloStatus(k, float(v["threshold"]), v["direction"], v["value"], v["breached"])
            for k, v in data.get("slo", {}).items()
        }
        intervals = data.get("intervals", {})
        return cls(
            task=data["task"],
            realized={k: float(v) for k, v in data["realized"].items() if v is not None},
            intervals={k: (float(v["low"]), float(v["high"])) for k, v in intervals.items()},
            interval_methods={k: str(v.get("method", "")) for k, v in intervals.items()},
            confidence_level=float(data["confidence_level"]),
            n_labelled=int(data["n_labelled"]),
            weighted_labelled=float(data["weighted_labelled"]),
            effective_sample_size=float(data["effective_sample_size"]),
            n_predictions=data.get("n_predictions"),
            label_coverage=data.get("label_coverage"),
            slo=slo,
            classes=list(data.get("classes", [])),
            per_class=dict(data.get("per_class", {})),
            confusion_matrix=data.get("confusion_matrix"),
            bootstrap_resamples=int(data.get("bootstrap_resamples", 0)),
            estimated=data.get("estimated"),
        )


def label_coverage(weighted_labelled: float, n_predictions: float | None) -> float | None:
    """Share of the window's predictions that have a label, in [0, 1].

    Both sides in the same unit: the weighted count (sum of ``1/ml.sample.rate``)
    of labelled captured rows, and the weighted count of predictions.
    """
    if n_predictions is None:
        return None
    if not math.isfinite(n_predictions) or n_predictions < 0:
        raise ValueError("n_predictions must be a finite number >= 0")
    if n_predictions == 0:
        return 0.0 if weighted_labelled == 0 else 1.0
    return min(1.0, weighted_labelled / n_predictions)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")


def _empty_report(
    task: Task, n_predictions: float | None, thresholds: SloSpec | None, confidence: float
) -> PerformanceReport:
    return PerformanceReport(
        task=task,
        realized={},
        intervals={},
        interval_methods={},
        confidence_level=confidence,
        n_labelled=0,
        weighted_labelled=0.0,
        effective_sample_size=0.0,
        n_predictions=n_predictions,
        label_coverage=label_coverage(0.0, n_predictions),
        slo=evaluate_slos({}, thresholds),
    )


def _probability_matrix(
    scores: ArrayLike,
    score_kind: ScoreKind,
    pred_codes: NDArray[np.intp],
    labels: NDArray[Any],
    positive_code: int | None,
) -> NDArray[np.float64] | None:
    """Class-probability matrix (columns = labels) when the scores determine it."""
    n = pred_codes.shape[0]
    if score_kind == "proba":
        proba = probabilities(scores, 2, n)
        if proba.shape[1] != labels.shape[0]:
            raise ValueError(
                f"scores has {proba.shape[1]} columns but there are {labels.shape[0]} classes"
            )
        return proba
    s = probabilities(scores, 1, n)
    if labels.shape[0] != 2 or positive_code is None:
        if score_kind == "positive":
            raise ValueError("score_kind='positive' needs a binary task with two classes")
        return None  # top-class confidence of a multiclass model: AUC/log loss unknown
    if score_kind == "top":
        s = np.where(pred_codes == positive_code, s, 1.0 - s)
    proba = np.empty((n, 2))
    proba[:, positive_code] = s
    proba[:, 1 - positive_code] = 1.0 - s
    return proba


def classification_performance(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    score_kind: ScoreKind = "top",
    classes: Sequence[Any] | ArrayLike | None = None,
    positive_label: Any = None,
    n_predictions: float | None = None,
    thresholds: SloSpec | None = None,
    confidence: float = 0.95,
    bootstrap: BootstrapSettings | None = None,
) -> PerformanceReport:
    """Realized classification performance of the labelled rows of a window.

    ``classes`` fixes the label order (needed for ``score_kind="proba"``, whose
    columns follow it); by default the sorted union of seen labels. For a
    binary task the positive label is ``positive_label`` or the greater class.
    """
    _check_confidence(confidence)
    settings = bootstrap or BootstrapSettings()
    t, p = _validate_labels(y_true, y_pred)
    w = validate_weights(weights, t.shape[0])
    if t.shape[0] == 0 or w.sum() <= 0:
        return _empty_report("classification", n_predictions, thresholds, confidence)
    if classes is None:
        labels = np.unique(np.concatenate([t, p]))
    else:
        labels = as_1d(classes, "classes")
        if np.unique(labels).shape[0] != labels.shape[0]:
            raise ValueError("classes must not repeat")
    true_codes = _codes(t, labels, "y_true")
    pred_codes = _codes(p, labels, "y_pred")
    positive_code: int | None = None
    if labels.shape[0] == 2:
        if positive_label is None:
            positive_code = int(np.argsort(labels, kind="stable")[-1])
        else:
            matches = np.flatnonzero(labels == positive_label)
            if matches.shape[0] != 1:
                raise ValueError(f"positive_label {positive_label!r} is not one of the classes")
            positive_code = int(matches[0])
    proba = (
        None
        if scores is None
        else _probability_matrix(scores, score_kind, pred_codes, labels, positive_code)
    )
    k = labels.shape[0]

    def metrics_of(idx: NDArray[np.intp] | None) -> dict[str, float | None]:
        tc = true_codes if idx is None else true_codes[idx]
        pc = pred_codes if idx is None else pred_codes[idx]
        ww = w if idx is None else w[idx]
        total = float(ww.sum())
        if total <= 0:
            return {}
        matrix = weighted_counts(tc * k + pc, weights=ww, minlength=k * k).reshape(k, k)
        per = scores_from_confusion(matrix)
        present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
        values: dict[str, float | None] = {
            ACCURACY: float(np.trace(matrix) / total),
            PRECISION_MACRO: float(per.precision[present].mean()),
            RECALL_MACRO: float(per.recall[present].mean()),
            F1_MACRO: float(per.f1[present].mean()),
        }
        if proba is not None:
            pr = proba if idx is None else proba[idx]
            if k == 2 and positive_code is not None:
                values[ROC_AUC] = roc_auc_binary(
                    tc == positive_code, pr[:, positive_code], weights=ww
                )
            else:
                values[ROC_AUC] = roc_auc_ovr(tc, pr, weights=ww)
            values[LOG_LOSS] = log_loss(tc, pr, weights=ww)
        return values

    point = metrics_of(None)
    realized = {name: v for name, v in point.items() if v is not None}
    matrix = weighted_counts(true_codes * k + pred_codes, weights=w, minlength=k * k).reshape(k, k)
    per = scores_from_confusion(matrix)
    per_class = {
        str(_json_label(label)): {
            "precision": float(per.precision[i]),
            "recall": float(per.recall[i]),
            "f1": float(per.f1[i]),
            "support": float(per.support[i]),
        }
        for i, label in enumerate(labels)
    }
    ess = kish_effective_size(w)
    intervals = {ACCURACY: wilson_interval(realized[ACCURACY], ess, confidence)}
    methods = {ACCURACY: "wilson"}

    def others(idx: NDArray[np.intp]) -> dict[str, float | None]:
        values = metrics_of(idx)
        values.pop(ACCURACY, None)
        return values

    boot, done = bootstrap_intervals(others, t.shape[0], confidence=confidence, settings=settings)
    for name, interval in boot.items():
        if name in realized:
            intervals[name] = interval
            methods[name] = "bootstrap"
    weighted = float(w.sum())
    return PerformanceReport(
        task="classification",
        realized=realized,
        intervals=intervals,
        interval_methods=methods,
        confidence_level=confidence,
        n_labelled=int(t.shape[0]),
        weighted_labelled=weighted,
        effective_sample_size=ess,
        n_predictions=n_predictions,
        label_coverage=label_coverage(weighted, n_predictions),
        slo=evaluate_slos(realized, thresholds),
        classes=[_json_label(c) for c in labels],
        per_class=per_class,
        confusion_matrix=matrix.tolist(),
        bootstrap_resamples=done,
    )


def regression_performance(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    n_predictions: float | None = None,
    thresholds: SloSpec | None = None,
    confidence: float = 0.95,
    bootstrap: BootstrapSettings | None = None,
) -> PerformanceReport:
    """Realized regression performance (MAE, RMSE, MAPE, R2) with bootstrap intervals."""
    _check_confidence(confidence)
    settings = bootstrap or BootstrapSettings()
    t = _validate_numeric(y_true, "y_true")
    p = _validate_numeric(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} rows but y_pred has {p.shape[0]}")
    w = validate_weights(weights, t.shape[0])
    if t.shape[0] == 0 or w.sum() <= 0:
        return _empty_report("regression", n_predictions, thresholds, confidence)
    realized = _regression_values(t, p, w)

    def resampled(idx: NDArray[np.intp]) -> dict[str, float | None]:
        ww = w[idx]
        if ww.sum() <= 0:
            return {}
        return dict(_regression_values(t[idx], p[idx], ww))

    intervals, done = bootstrap_intervals(
        resampled, t.shape[0], confidence=confidence, settings=settings
    )
    weighted = float(w.sum())
    return PerformanceReport(
        task="regression",
        realized=realized,
        intervals=intervals,
        interval_methods={name: "bootstrap" for name in intervals},
        confidence_level=confidence,
        n_labelled=int(t.shape[0]),
        weighted_labelled=weighted,
        effective_sample_size=kish_effective_size(w),
        n_predictions=n_predictions,
        label_coverage=label_coverage(weighted, n_predictions),
        slo=evaluate_slos(realized, thresholds),
        bootstrap_resamples=done,
    )
