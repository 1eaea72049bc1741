"""Drift detection for monitored models: references, windows, statistics, reports.

A training-time ``Reference`` fixes per-feature bins and counts; production data
captured on prediction spans is accumulated into bounded windows; the pure
functions of ``modeltrace.drift.statistics`` compare the two; the
``DriftAggregator`` turns the comparisons into a ``DriftReport`` and the
``ml.drift.*`` metrics.
"""

from __future__ import annotations

from modeltrace.drift.aggregator import (
    DriftAggregator,
    IngestResult,
    MissingReferenceError,
    UnknownModelError,
)
from modeltrace.drift.joint import MultivariateSettings
from modeltrace.drift.reference import Reference
from modeltrace.drift.report import DriftReport, FeatureDrift

__all__ = [
    "DriftAggregator",
    "DriftReport",
    "FeatureDrift",
    "IngestResult",
    "MissingReferenceError",
    "MultivariateSettings",
    "Reference",
    "UnknownModelError",
]
