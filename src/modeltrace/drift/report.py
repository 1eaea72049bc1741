"""The result of a drift evaluation: ``DriftReport`` and its ``FeatureDrift`` rows.

A report says, for one (model, version) and one window, per feature which
method ran, its score and threshold, whether the feature drifted, the sample
sizes, data-quality signals (missing ratio against the reference, share of
values out of the reference range, share of unseen categories) and trace ids of
example predictions in the bins that gained the most mass (root-cause links);
and for the whole window the share of drifted features, ``dataset_drift`` and
the data-quality findings. ``to_dict``/``from_dict`` give a strict-JSON form
(non-finite numbers are encoded as ``null`` / ``"inf"`` / ``"-inf"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from modeltrace.semconv import EMBEDDING_FEATURE, MULTIVARIATE_FEATURE

REPORT_FORMAT = "modeltrace.drift_report"
DATASET_LEVEL = frozenset({MULTIVARIATE_FEATURE, EMBEDDING_FEATURE})
REPORT_VERSION = 1


def _num_out(value: float | None) -> float | str | None:
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _num_in(value: object, *, nullable: bool = False) -> float | None:
    if value is None:
        return None if nullable else math.nan
    if value in ("inf", "-inf"):
        return math.inf if value == "inf" else -math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


@dataclass
class FeatureDrift:
    """Drift and data quality of one feature (``__prediction__`` for predictions)."""

    name: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool
    p_value: float | None
    n_reference: int
    n_current: int
    exemplar_trace_ids: list[str] = field(default_factory=list)
    missing_ratio: float = 0.0
    reference_missing_ratio: float = 0.0
    out_of_range_ratio: float | None = None
    unseen_ratio: float | None = None
    enough_data: bool = True
    # Free text about how the verdict was reached (multivariate entries: the
    # threshold's origin, a time budget that ran out, ...); "" when nothing to add.
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in (
            "score",
            "threshold",
            "p_value",
            "missing_ratio",
            "reference_missing_ratio",
            "out_of_range_ratio",
            "unseen_ratio",
        ):
            data[key] = _num_out(data[key])
        data["exemplar_trace_ids"] = list(self.exemplar_trace_ids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDrift:
        try:
            return cls(
                name=str(data["name"]),
                kind=str(data["kind"]),
                method=str(data["method"]),
                score=_num_in(data["score"]),  # type: ignore[arg-type]
                threshold=_num_in(data["threshold"]),  # type: ignore[arg-type]
                drifted=bool(data["drifted"]),
                p_value=_num_in(data.get("p_value"), nullable=True),
                n_reference=int(data["n_reference"]),
                n_current=int(data["n_current"]),
                exemplar_trace_ids=[str(t) for t in data.get("exemplar_trace_ids", [])],
                missing_ratio=_num_in(data.get("missing_ratio", 0.0)),  # type: ignore[arg-type]
                reference_missing_ratio=_num_in(  # type: ignore[arg-type]
                    data.get("reference_missing_ratio", 0.0)
                ),
                out_of_range_ratio=_num_in(data.get("out_of_range_ratio"), nullable=True),
                unseen_ratio=_num_in(data.get("unseen_ratio"), nullable=True),
                enough_data=bool(data.get("enough_data", True)),
                detail=str(data.get("detail", "")),
            )
        except KeyError as exc:
            raise ValueError(f"feature drift entry misses field {exc.args[0]!r}") from exc


@dataclass
class QualityFinding:
    """One data-quality signal that crossed its threshold.

    ``signal``: ``missing_ratio_increase``, ``out_of_range``, ``unseen_categories``,
    ``no_valid_values`` (every current value missing), ``absent`` (a reference
    feature with no data in the window), ``unknown_features`` / ``capped_features``
    (rows of features the window does not track), ``embedding_projection_mismatch``
    (embedding rows recorded with another projection than the reference's)."""

    feature: str | None
    signal: str
    value: float
    reference: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "signal": self.signal,
            "value": _num_out(self.value),
            "reference": _num_out(self.reference),
            "threshold": _num_out(self.threshold),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityFinding:
        try:
            feature = data.get("feature")
            return cls(
                feature=None if feature is None else str(feature),
                signal=str(data["signal"]),
                value=_num_in(data["value"]),  # type: ignore[arg-type]
                reference=_num_in(data.get("reference"), nullable=True),
                threshold=_num_in(data.get("threshold"), nullable=True),
                detail=str(data.get("detail", "")),
            )
        except KeyError as exc:
            raise ValueError(f"quality finding misses field {exc.args[0]!r}") from exc


@dataclass
class DriftReport:
    """Drift of one (model, version) over one window."""

    model: str
    version: str
    window_start: float | None
    window_end: float | None
    generated_at: float
    features: list[FeatureDrift]
    dataset_drift: bool
    drift_share: float
    n_samples: int
    quality: list[QualityFinding] = field(default_factory=list)
    drift_share_threshold: float = 0.5
    n_evaluated: int = 0
    n_drifted: int = 0

    def feature(self, name: str, method: str | None = None) -> FeatureDrift:
        """The entry of feature ``name`` (the first one, or the one of ``method``:
        dataset-level entries such as ``__multivariate__`` have one per method);
        ``KeyError`` if the report has none."""
        for entry in self.features:
            if entry.name == name and (method is None or entry.method == method):
                return entry
        what = f"feature {name!r}" + (f" with method {method!r}" if method else "")
        raise KeyError(f"no {what} in the drift report of {self.model}/{self.version}")

    @property
    def drifted_features(self) -> list[str]:
        """Names of the drifted features (``__prediction__`` included; the
        dataset-level ``__multivariate__`` / ``__embedding__`` entries are not
        features: see ``dataset_entries``)."""
        return [f.name for f in self.features if f.drifted and f.name not in DATASET_LEVEL]

    @property
    def dataset_entries(self) -> list[FeatureDrift]:
        """The dataset-level entries (multivariate and embedding methods)."""
        return [f for f in self.features if f.name in DATASET_LEVEL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "format_version": REPORT_VERSION,
            "model": self.model,
            "version": self.version,
            "window_start": _num_out(self.window_start),
            "window_end": _num_out(self.window_end),
            "generated_at": self.generated_at,
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "drift_share_threshold": self.drift_share_threshold,
            "n_samples": self.n_samples,
            "n_evaluated": self.n_evaluated,
            "n_drifted": self.n_drifted,
            "features": [f.to_dict() for f in self.features],
            "quality": [q.to_dict() for q in self.quality],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        if not isinstance(data, Mapping):
            raise ValueError(f"a drift report must be a mapping, got {type(data).__name__}")
        fmt = data.get("format", REPORT_FORMAT)
        if fmt != REPORT_FORMAT or data.get("format_version", REPORT_VERSION) != REPORT_VERSION:
            raise ValueError(
                f"not a {REPORT_FORMAT} v{REPORT_VERSION}: format {fmt!r} "
                f"version {data.get('format_version')!r}"
            )
        try:
            return cls(
                model=str(data["model"]),
                version=str(data["version"]),
                window_start=_num_in(data.get("window_start"), nullable=True),
                window_end=_num_in(data.get("window_end"), nullable=True),
                generated_at=float(data["generated_at"]),
                features=[FeatureDrift.from_dict(f) for f in data["features"]],
                dataset_drift=bool(data["dataset_drift"]),
                drift_share=float(data["drift_share"]),
                n_samples=int(data["n_samples"]),
                quality=[QualityFinding.from_dict(q) for q in data.get("quality", [])],
                drift_share_threshold=float(data.get("drift_share_threshold", 0.5)),
                n_evaluated=int(data.get("n_evaluated", 0)),
                n_drifted=int(data.get("n_drifted", 0)),
            )
        except KeyError as exc:
            raise ValueError(f"drift report misses field {exc.args[0]!r}") from exc
