"""Performance of a window's joined rows: realized, estimated (CBPE), compared, over time.

Input is a ``JoinedRows`` (the window's captured predictions, with their labels
where joined). Realized metrics come from ``modeltrace.drift.performance`` on
the labelled rows, weighted ``1/ml.sample.rate``, with the label coverage (the
weighted share of the window's predictions that have a label) and intervals;
the estimate comes from ``modeltrace.drift.cbpe`` on every row with a score
(classification only), calibrated when the reference carries a labelled sample.
SLO thresholds are checked against both (``slo`` realized, ``estimated.slo``).

The task is given, else inferred: the reference's prediction kind when it has
one (categorical = classification), else text predictions or few distinct
integer values (at most ``MAX_INFERRED_CLASSES``) mean classification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from modeltrace.drift.cbpe import Calibration, compare_with_realized, estimate_performance
from modeltrace.drift.labels import JoinedRows
from modeltrace.drift.performance import (
    ACCURACY,
    MAE,
    BootstrapSettings,
    PerformanceReport,
    SloSpec,
    Task,
    classification_performance,
    evaluate_slos,
    regression_performance,
)
from modeltrace.drift.reference import Reference

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "MAX_INFERRED_CLASSES",
    "infer_task",
    "main_metric",
    "performance_points",
    "window_performance",
]

MAX_INFERRED_CLASSES = 20
# Intervals of the API: bounded so a request never waits long for them.
DEFAULT_BOOTSTRAP = BootstrapSettings(resamples=200, time_budget_s=0.3)
_NO_BOOTSTRAP = BootstrapSettings(resamples=0)


def infer_task(reference: Reference | None, values: npt.NDArray[np.object_]) -> Task:
    """Classification or regression, from the reference or the predicted values."""
    if reference is not None and reference.prediction is not None:
        return "classification" if reference.prediction.kind == "categorical" else "regression"
    sample = values[: min(values.shape[0], 5000)].tolist()
    if any(isinstance(v, str) for v in sample):
        return "classification"
    numbers = [float(v) for v in sample if v is not None]
    integers = bool(numbers) and all(n.is_integer() for n in numbers)
    if integers and len(set(numbers)) <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def main_metric(task: Task) -> str:
    """The metric a chart of performance over time shows."""
    return ACCURACY if task == "classification" else MAE


def _label_arrays(
    truth: npt.NDArray[np.object_], predicted: npt.NDArray[np.object_]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Numbers as float64 when both sides are numbers, else both sides as text."""
    everything = truth.tolist() + predicted.tolist()
    if all(isinstance(v, float) for v in everything):
        return truth.astype(np.float64), predicted.astype(np.float64)
    as_text = np.vectorize(_text, otypes=[object])
    if truth.shape[0] == 0:
        return truth, predicted
    return as_text(truth), as_text(predicted)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _estimate(
    rows: JoinedRows, calibration: Calibration | None, thresholds: SloSpec | None
) -> dict[str, Any] | None:
    scored = np.isfinite(rows.scores) & (rows.scores >= 0.0) & (rows.scores <= 1.0)
    if not scored.any():
        return None
    values = rows.values[scored]
    if not all(isinstance(v, (float, str)) for v in values.tolist()):
        return None
    present = set(values.tolist())
    classes = list(present | set(calibration.classes)) if calibration is not None else None
    if classes is not None:
        classes.sort(key=lambda v: (str(type(v)), v))
    try:
        estimate = estimate_performance(
            rows.scores[scored],
            predictions=values,
            score_kind="top",
            classes=classes,
            weights=rows.weights[scored],
            calibration=calibration,
        )
    except ValueError:
        return None
    out = estimate.to_dict()
    out["slo"] = {k: s.to_dict() for k, s in evaluate_slos(estimate.metrics, thresholds).items()}
    return out


def window_performance(
    rows: JoinedRows,
    *,
    task: Task,
    thresholds: SloSpec | None = None,
    calibration: Calibration | None = None,
    bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP,
    confidence: float = 0.95,
) -> PerformanceReport:
    """Realized performance of the labelled rows, with the estimate attached."""
    labelled = rows.labelled
    n_predictions = float(rows.weights.sum())
    truth, predicted = _label_arrays(rows.labels[labelled], rows.values[labelled])
    weights = rows.weights[labelled]
    if task == "classification":
        scores = rows.scores[labelled]
        usable = bool(scores.shape[0]) and bool(
            np.all(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0))
        )
        report = classification_performance(
            truth,
            predicted,
            weights=weights,
            scores=scores if usable else None,
            score_kind="top",
            n_predictions=n_predictions,
            thresholds=thresholds,
            confidence=confidence,
            bootstrap=bootstrap,
        )
        estimate = _estimate(rows, calibration, thresholds)
        if estimate is not None:
            estimate["compared_with_realized"] = compare_with_realized(
                estimate["metrics"], report.realized
            )
        return report.with_estimate(estimate)
    truth_f = np.asarray([_as_float(v) for v in truth.tolist()], dtype=np.float64)
    predicted_f = np.asarray([_as_float(v) for v in predicted.tolist()], dtype=np.float64)
    keep = np.isfinite(truth_f) & np.isfinite(predicted_f)
    return regression_performance(
        truth_f[keep],
        predicted_f[keep],
        weights=weights[keep],
        n_predictions=n_predictions,
        thresholds=thresholds,
        confidence=confidence,
        bootstrap=bootstrap,
    )


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def performance_points(
    rows: JoinedRows,
    *,
    task: Task,
    bucket_seconds: float,
    calibration: Calibration | None = None,
    max_points: int = 60,
) -> list[dict[str, Any]]:
    """The main metric per time bucket, realized and estimated, oldest first.

    Buckets are ``bucket_seconds`` wide, widened (by whole multiples) so that
    the range of ``rows`` fits in ``max_points``. ``realized`` is ``None`` for a
    bucket without labels, ``estimated`` for one without scores.
    """
    if len(rows) == 0:
        return []
    metric = main_metric(task)
    first, last = float(rows.ts.min()), float(rows.ts.max())
    width = float(bucket_seconds)
    if (last - first) / width >= max_points:
        width *= math.ceil((last - first) / width / max_points + 1e-9)
    buckets = np.floor(rows.ts / width)
    points = []
    for bucket in np.unique(buckets):
        chunk = rows.select(buckets == bucket)
        report = window_performance(
            chunk, task=task, calibration=calibration, bootstrap=_NO_BOOTSTRAP
        )
        estimated = None
        if isinstance(report.estimated, Mapping):
            estimated = report.estimated.get("metrics", {}).get(metric)
        points.append(
            {
                "time": float((bucket + 1) * width),
                "realized": report.realized.get(metric),
                "estimated": estimated,
                "label_coverage": report.label_coverage,
                "n": len(chunk),
            }
        )
    return points
