"""Compare a window's sketches with the reference: ``evaluate_window`` -> ``DriftReport``.

Per feature (``__prediction__`` included) the method and threshold come from
``statistics.default_method`` (by feature kind and effective window size) unless
an override names the feature or ``"*"``. Count methods compare the bin counts;
sample methods compare the reference sample with the window's weighted sample.
Data quality is reported beside drift, each signal on its own (drift tests do
not see them): missing ratio against the reference, share of values outside the
reference range, share of categories never seen in the reference. A drifted
feature links to trace ids of rows in the bins that gained the most mass
against the reference.

Given the window's whole-row samples (``joint``, ``embedded``), the report also
holds the dataset-level entries ``__multivariate__`` and ``__embedding__`` of
``modeltrace.drift.joint`` (one per method); like ``__prediction__`` they do not
count in ``drift_share``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeltrace.semconv import EMBEDDING_FEATURE, MULTIVARIATE_FEATURE, PREDICTION_FEATURE

from . import statistics
from .joint import MultivariateSettings, evaluate_dataset
from .reference import FeatureReference, Reference
from .report import DriftReport, FeatureDrift, QualityFinding
from .rows import RowReservoir
from .sketches import FeatureSketch
from .windows import WindowCounters

ALL_FEATURES = "*"
# Entries that are not input features: never counted in drift_share.
NOT_IN_DRIFT_SHARE = frozenset({PREDICTION_FEATURE, MULTIVARIATE_FEATURE, EMBEDDING_FEATURE})
MAX_EXEMPLARS = 5
# Data-quality findings are raised at or above these values.
DEFAULT_QUALITY_THRESHOLDS: dict[str, float] = {
    "missing_ratio_increase": 0.05,  # absolute increase of the missing ratio
    "out_of_range": 0.05,  # share of numeric values outside the reference [min, max]
    "unseen_categories": 0.05,  # share of categorical values never seen in the reference
}


@dataclass(frozen=True)
class MethodChoice:
    """A validated override: a method name (None: the default) and a threshold."""

    method: str | None
    threshold: float | None


def parse_overrides(overrides: Mapping[str, Any] | None) -> dict[str, MethodChoice]:
    """Validate ``{feature or "*": {"method": ..., "threshold": ...}}``."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise TypeError(f"overrides must be a mapping, got {type(overrides).__name__}")
    parsed: dict[str, MethodChoice] = {}
    for feature, choice in overrides.items():
        if not isinstance(feature, str):
            raise TypeError(f"override keys must be feature names or '*', got {feature!r}")
        if not isinstance(choice, Mapping):
            raise TypeError(f"override of {feature!r} must be a mapping, got {choice!r}")
        extra = set(choice) - {"method", "threshold"}
        if extra:
            raise ValueError(
                f"override of {feature!r} has unknown keys {sorted(extra)}; "
                "allowed: 'method', 'threshold'"
            )
        method = choice.get("method")
        name = statistics.resolve_method(method).name if method is not None else None
        threshold = choice.get("threshold")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise ValueError(f"threshold of {feature!r} must be a number, got {threshold!r}")
            if name is not None:
                spec = statistics.METHODS[name]
                if spec.kind == "pvalue" and not 0.0 < float(threshold) < 1.0:
                    raise ValueError(
                        f"threshold of {feature!r} ({name}) is a significance level in (0, 1), "
                        f"got {threshold!r}"
                    )
            if not (math.isfinite(float(threshold)) and float(threshold) >= 0):
                raise ValueError(f"threshold of {feature!r} must be >= 0, got {threshold!r}")
        parsed[feature] = MethodChoice(name, None if threshold is None else float(threshold))
    return parsed


def _choose(
    feature: FeatureReference,
    n_effective: float,
    overrides: Mapping[str, MethodChoice],
) -> tuple[str, float]:
    default_name, default_threshold = statistics.default_method(feature.kind, n_effective)
    specific = overrides.get(feature.name)
    choice = specific or overrides.get(ALL_FEATURES)
    if choice is None:
        return default_name, default_threshold
    name = choice.method or default_name
    if feature.kind == "categorical" and statistics.METHODS[name].input == "samples":
        if specific is not None:
            raise ValueError(
                f"method {name!r} compares raw numeric values and cannot run on the "
                f"categorical feature {feature.name!r}"
            )
        return default_name, default_threshold  # a "*" override does not fit this feature
    if choice.threshold is not None:
        return name, choice.threshold
    return name, statistics.METHODS[name].threshold


def _ratio(part: float, whole: float) -> float:
    return float(part / whole) if whole > 0 else 0.0


def gained_bins(ref_counts: np.ndarray, cur_counts: np.ndarray) -> list[int]:
    """Bins whose share grew against the reference, largest gain first."""
    ref_total, cur_total = float(ref_counts.sum()), float(cur_counts.sum())
    if cur_total <= 0:
        return []
    ref_share = ref_counts / ref_total if ref_total > 0 else np.zeros_like(ref_counts)
    gain = cur_counts / cur_total - ref_share
    order = np.argsort(-gain, kind="stable")
    return [int(b) for b in order if gain[b] > 0]


def _exemplars(feature: FeatureReference, sketch: FeatureSketch, limit: int) -> list[str]:
    found: list[str] = []
    for bin_index in gained_bins(feature.counts, sketch.counts):
        for trace_id in reversed(sketch.exemplars(bin_index)):  # most recent first
            if trace_id not in found:
                found.append(trace_id)
            if len(found) >= limit:
                return found
    return found


def _evaluate_feature(
    feature: FeatureReference,
    sketch: FeatureSketch,
    overrides: Mapping[str, MethodChoice],
    max_exemplars: int,
) -> FeatureDrift:
    n_effective = sketch.effective_n
    method, threshold = _choose(feature, n_effective, overrides)
    result = statistics.run_method(
        method,
        threshold=threshold,
        ref_counts=feature.counts,
        cur_counts=sketch.counts,
        ref_values=feature.reservoir,
        cur_values=sketch.reservoir_values(),
        cur_weights=sketch.reservoir_weights(),
        n_current=n_effective,
        # the reference keeps evenly spaced quantiles of all its valid values,
        # so its sample stands for n_valid rows, not for its own length
        n_reference=feature.n_valid,
    )
    valid_weight = sketch.valid_weight
    unseen_ratio: float | None = None
    out_of_range_ratio: float | None = None
    if feature.kind == "numeric":
        out_of_range_ratio = _ratio(sketch.out_of_range, valid_weight)
    elif feature.binning.known is not None:
        unseen_ratio = _ratio(sketch.unseen, valid_weight)
    return FeatureDrift(
        name=feature.name,
        kind=feature.kind,
        method=method,
        score=float(result.score),
        threshold=float(threshold),
        drifted=bool(result.drifted),
        p_value=None if result.p_value is None else float(result.p_value),
        n_reference=feature.n_valid,
        n_current=sketch.n_valid,
        exemplar_trace_ids=_exemplars(feature, sketch, max_exemplars) if result.drifted else [],
        missing_ratio=_ratio(sketch.missing, sketch.weight),
        reference_missing_ratio=feature.missing_ratio,
        out_of_range_ratio=out_of_range_ratio,
        unseen_ratio=unseen_ratio,
        enough_data=bool(result.enough_data),
    )


def _quality(entry: FeatureDrift, thresholds: Mapping[str, float]) -> list[QualityFinding]:
    findings: list[QualityFinding] = []
    if entry.n_current == 0:
        findings.append(
            QualityFinding(entry.name, "no_valid_values", entry.missing_ratio, detail="all missing")
        )
    increase = entry.missing_ratio - entry.reference_missing_ratio
    limit = thresholds["missing_ratio_increase"]
    if increase >= limit:
        findings.append(
            QualityFinding(
                entry.name,
                "missing_ratio_increase",
                entry.missing_ratio,
                reference=entry.reference_missing_ratio,
                threshold=limit,
            )
        )
    limit = thresholds["out_of_range"]
    if entry.out_of_range_ratio is not None and entry.out_of_range_ratio >= limit:
        findings.append(
            QualityFinding(entry.name, "out_of_range", entry.out_of_range_ratio, threshold=limit)
        )
    limit = thresholds["unseen_categories"]
    if entry.unseen_ratio is not None and entry.unseen_ratio >= limit:
        findings.append(
            QualityFinding(entry.name, "unseen_categories", entry.unseen_ratio, threshold=limit)
        )
    return findings


def evaluate_window(
    reference: Reference,
    current: Mapping[str, FeatureSketch],
    *,
    model: str,
    version: str,
    overrides: Mapping[str, Any] | None = None,
    drift_share_threshold: float = 0.5,
    now: float | None = None,
    window_start: float | None = None,
    window_end: float | None = None,
    n_samples: int | None = None,
    counters: WindowCounters | None = None,
    quality_thresholds: Mapping[str, float] | None = None,
    max_exemplars: int = MAX_EXEMPLARS,
    joint: RowReservoir | None = None,
    embedded: RowReservoir | None = None,
    multivariate: MultivariateSettings | None = None,
) -> DriftReport:
    """Evaluate every reference feature present in ``current`` (see module doc).

    ``drift_share`` counts the features with a verdict, ``__prediction__``
    excluded; ``dataset_drift`` is ``drift_share >= drift_share_threshold``.
    ``n_samples`` defaults to the most rows any feature saw; ``counters`` (from
    ``ModelWindow.counters``) adds findings about untracked features. ``joint`` /
    ``embedded`` (``ModelWindow.joint_rows()`` / ``embedding_rows()``) add the
    dataset-level entries, run as ``multivariate`` says.
    """
    if not isinstance(reference, Reference):
        raise TypeError(f"reference must be a Reference, got {type(reference).__name__}")
    if not 0.0 < float(drift_share_threshold) <= 1.0:
        raise ValueError(f"drift_share_threshold must be in (0, 1], got {drift_share_threshold!r}")
    if max_exemplars < 0:
        raise ValueError(f"max_exemplars must be >= 0, got {max_exemplars}")
    thresholds = dict(DEFAULT_QUALITY_THRESHOLDS)
    if quality_thresholds:
        unknown = set(quality_thresholds) - set(thresholds)
        if unknown:
            raise ValueError(
                f"unknown quality thresholds {sorted(unknown)}; known: {sorted(thresholds)}"
            )
        thresholds.update({k: float(v) for k, v in quality_thresholds.items()})
    choices = parse_overrides(overrides)
    unknown_names = sorted(set(choices) - set(reference.features) - {ALL_FEATURES})
    if unknown_names:
        raise ValueError(f"overrides name features not in the reference: {unknown_names}")

    entries: list[FeatureDrift] = []
    quality: list[QualityFinding] = []
    any_data = any(s.n > 0 for s in current.values())
    for name, feature in reference.features.items():
        sketch = current.get(name)
        if sketch is None or sketch.n == 0:
            if any_data:
                quality.append(QualityFinding(name, "absent", 0.0, detail="no data in the window"))
            continue
        entry = _evaluate_feature(feature, sketch, choices, max_exemplars)
        entries.append(entry)
        quality.extend(_quality(entry, thresholds))
    if counters is not None:
        if counters.unknown_feature_rows:
            quality.append(
                QualityFinding(
                    None,
                    "unknown_features",
                    float(counters.unknown_feature_rows),
                    detail="rows of features not in the reference: "
                    + ", ".join(counters.unknown_features),
                )
            )
        if counters.embedding_mismatch_rows:
            quality.append(
                QualityFinding(
                    None,
                    "embedding_projection_mismatch",
                    float(counters.embedding_mismatch_rows),
                    detail="embedding rows recorded with another projection than the reference's",
                )
            )
        if counters.capped_feature_rows:
            quality.append(
                QualityFinding(
                    None,
                    "capped_features",
                    float(counters.capped_feature_rows),
                    detail="rows of features over the window's feature cap: "
                    + ", ".join(counters.capped_features),
                )
            )
    if joint is not None or embedded is not None:
        entries.extend(evaluate_dataset(reference, joint, embedded, multivariate))
    evaluated = [e for e in entries if e.enough_data and e.name not in NOT_IN_DRIFT_SHARE]
    drifted = sum(1 for e in evaluated if e.drifted)
    share = drifted / len(evaluated) if evaluated else 0.0
    if n_samples is None:
        n_samples = max((s.n for s in current.values()), default=0)
    return DriftReport(
        model=str(model),
        version=str(version),
        window_start=window_start,
        window_end=window_end,
        generated_at=time.time() if now is None else float(now),
        features=entries,
        dataset_drift=bool(evaluated) and share >= drift_share_threshold,
        drift_share=share,
        n_samples=int(n_samples),
        quality=quality,
        drift_share_threshold=float(drift_share_threshold),
        n_evaluated=len(evaluated),
        n_drifted=drifted,
    )
