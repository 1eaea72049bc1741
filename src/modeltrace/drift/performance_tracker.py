"""Per-model label joins, SLO settings and performance results of the drift aggregator.

``PerformanceTracker`` is the part of ``DriftAggregator`` that deals with
delayed labels: one ``JoinBuffer`` per (model, version), fed by the same
extractions as the drift windows (so the durable path, the inbox and its
replay cover predictions and labels alike), persisted at each checkpoint, and
the settings (SLO thresholds, task) stored at once. It computes the window's
performance (``modeltrace.drift.window_performance``), caches it until the join
changes, and publishes:

* ``ml.model.performance`` gauges: ``ml.performance.metric`` is the realized
  metric's name (``accuracy``, ``f1_macro``, ``rmse``, ...), the estimated ones
  are prefixed (``estimated_accuracy``), and ``label_coverage`` is one more;
* ``modeltrace.join.labels`` / ``modeltrace.join.predictions`` counters by
  ``modeltrace.join.outcome`` and the ``modeltrace.join.pending`` gauge.

The caller (the aggregator) serializes access with its own lock.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from modeltrace import semconv
from modeltrace.drift.cbpe import Calibration
from modeltrace.drift.extract import LabelRecord, ModelRows
from modeltrace.drift.labels import (
    DEFAULT_LABEL_TTL_SECONDS,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_ROWS,
    JoinBuffer,
    JoinedRows,
)
from modeltrace.drift.performance import PerformanceReport, Task, parse_thresholds
from modeltrace.drift.reference import Reference
from modeltrace.drift.store import DriftStore
from modeltrace.drift.window_performance import (
    infer_task,
    main_metric,
    performance_points,
    window_performance,
)

__all__ = ["PerformanceSettings", "PerformanceTracker", "WindowSpec"]

logger = logging.getLogger("modeltrace.drift")

ModelKey = tuple[str, str]

_LABEL_OUTCOMES = ("labels", "matched", "duplicates", "not_captured", "late", "unmatched")
_LABEL_OUTCOME_NAMES = {"labels": "received", "duplicates": "duplicate"}
_PREDICTION_OUTCOMES = {"predictions": "buffered", "expired": "expired", "evicted": "evicted"}


@dataclass(frozen=True)
class WindowSpec:
    """Which joined rows make the current window: a time range or the newest rows."""

    start: float | None = None
    end: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class PerformanceSettings:
    """SLO thresholds (``{"accuracy": 0.9}``, see ``performance.parse_thresholds``) and task."""

    thresholds: Mapping[str, Any] | None = None
    task: Task | None = None

    def to_json(self) -> str:
        return json.dumps({"thresholds": dict(self.thresholds or {}), "task": self.task})

    @classmethod
    def from_json(cls, text: str) -> PerformanceSettings:
        data = json.loads(text)
        return cls.parse(data.get("thresholds"), data.get("task"))

    @classmethod
    def parse(cls, thresholds: Any, task: Any = None) -> PerformanceSettings:
        """Validated settings; ``ValueError`` names what is wrong."""
        if thresholds is not None and not isinstance(thresholds, Mapping):
            raise ValueError("thresholds must be an object of metric -> number")
        parse_thresholds(thresholds)
        if task not in (None, "classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        return cls(dict(thresholds) if thresholds else None, task)


class PerformanceTracker:
    """Label joins and performance of every (model, version); see the module doc."""

    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_LABEL_TTL_SECONDS,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._options: dict[str, Any] = {
            "ttl_seconds": ttl_seconds,
            "max_rows": max_rows,
            "max_pending": max_pending,
        }
        JoinBuffer(**self._options)  # validates the options now
        self.clock = clock
        self.joins: dict[ModelKey, JoinBuffer] = {}
        self.settings: dict[ModelKey, PerformanceSettings] = {}
        self._dirty: set[ModelKey] = set()
        self._calibrations: dict[ModelKey, tuple[int, Calibration | None]] = {}
        self._cache: dict[ModelKey, tuple[Any, PerformanceReport]] = {}

    # -- state --

    def buffer(self, key: ModelKey) -> JoinBuffer:
        join = self.joins.get(key)
        if join is None:
            join = self.joins[key] = JoinBuffer(**self._options)
        return join

    def restore(self, store: DriftStore) -> None:
        """Load join states and settings (before the inbox is replayed)."""
        for model, version, state in store.load_joins():
            try:
                self.joins[(model, version)] = JoinBuffer.from_bytes(state, **self._options)
            except ValueError:
                logger.exception(
                    "stored label join of %s/%s is unusable; starting empty", model, version
                )
        for model, version, text in store.performance_settings():
            try:
                self.settings[(model, version)] = PerformanceSettings.from_json(text)
            except (ValueError, TypeError):
                logger.exception("stored performance settings of %s/%s are invalid", model, version)

    def checkpoint_states(self) -> dict[ModelKey, bytes]:
        """Serialized joins changed since the last call (expired first)."""
        now = self.clock()
        for key, join in self.joins.items():
            if join.expire(now):
                self._dirty.add(key)
        states = {key: self.joins[key].to_bytes() for key in self._dirty if key in self.joins}
        self._dirty.clear()
        return states

    def set_settings(
        self, store: DriftStore | None, key: ModelKey, settings: PerformanceSettings
    ) -> None:
        if store is not None:
            store.put_performance_settings(key[0], key[1], settings.to_json())
        self.settings[key] = settings
        self._cache.pop(key, None)

    # -- feeding --

    def add_predictions(self, key: ModelKey, batch: ModelRows) -> None:
        if batch.rows or batch.uncaptured_ids:
            self.buffer(key).add_predictions(batch, self.clock())
            self._dirty.add(key)

    def add_label(self, key: ModelKey, record: LabelRecord) -> None:
        try:
            self.buffer(key).add_labels(
                record.prediction_id, record.labels, self.clock(), rows=record.rows
            )
        except (TypeError, ValueError) as exc:
            logger.warning("label of %s/%s skipped: %s", key[0], key[1], exc)
            return
        self._dirty.add(key)

    def merge(self, key: ModelKey, other: JoinBuffer) -> None:
        self.buffer(key).merge(other)
        self._dirty.add(key)

    # -- results --

    def _calibration(self, key: ModelKey, reference: Reference | None) -> Calibration | None:
        if reference is None or reference.labelled is None:
            return None
        cached = self._calibrations.get(key)
        if cached is not None and cached[0] == id(reference):
            return cached[1]
        try:
            calibration = reference.labelled.calibration()
        except ValueError:
            logger.exception("CBPE calibration of %s/%s failed; estimating uncalibrated", *key)
            calibration = None
        self._calibrations[key] = (id(reference), calibration)
        return calibration

    def _rows(self, join: JoinBuffer, window: WindowSpec) -> JoinedRows:
        if window.count is not None:
            return join.latest_rows(window.count)
        return join.joined_rows(window.start, window.end)

    def task(self, key: ModelKey, reference: Reference | None, rows: JoinedRows) -> Task:
        settings = self.settings.get(key)
        if settings is not None and settings.task is not None:
            return settings.task
        return infer_task(reference, rows.values)

    def report(
        self, key: ModelKey, reference: Reference | None, window: WindowSpec
    ) -> PerformanceReport:
        """The window's performance (cached until the join, settings or window change)."""
        join = self.buffer(key)
        settings = self.settings.get(key, PerformanceSettings())
        stamp = (join.generation, window, id(reference), settings)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        rows = self._rows(join, window)
        report = window_performance(
            rows,
            task=self.task(key, reference, rows),
            thresholds=settings.thresholds,
            calibration=self._calibration(key, reference),
        )
        self._cache[key] = (stamp, report)
        return report

    def points(
        self, key: ModelKey, reference: Reference | None, bucket_seconds: float
    ) -> dict[str, Any]:
        """Performance over time from every buffered row (for the HTML page)."""
        join = self.buffer(key)
        rows = join.joined_rows()
        task = self.task(key, reference, rows)
        settings = self.settings.get(key, PerformanceSettings())
        metric = main_metric(task)
        threshold = None
        for name, (value, _direction) in parse_thresholds(settings.thresholds).items():
            if name == metric:
                threshold = value
        return {
            "metric": metric,
            "threshold": threshold,
            "points": performance_points(
                rows,
                task=task,
                bucket_seconds=bucket_seconds,
                calibration=self._calibration(key, reference),
            ),
        }

    def counts(self, key: ModelKey) -> dict[str, int]:
        return self.buffer(key).counts() if key in self.joins else JoinBuffer().counts()

    # -- metrics --

    def register_metrics(
        self,
        meter: Meter,
        reports: Callable[[], Iterable[tuple[ModelKey, PerformanceReport]]],
        lock: AbstractContextManager[Any],
    ) -> None:
        """Gauges and counters; ``reports`` yields the current report of each model,
        ``lock`` guards the joins while they are read."""

        def joins() -> list[tuple[ModelKey, JoinBuffer]]:
            with lock:
                return list(self.joins.items())

        def performance(options: CallbackOptions) -> Iterable[Observation]:
            out = []
            try:
                items = list(reports())
            except Exception:
                logger.exception("performance metrics collection failed")
                return []
            for key, report in items:
                base = {semconv.MODEL_NAME: key[0], semconv.MODEL_VERSION: key[1]}
                values = dict(report.gauges())
                estimated = report.estimated or {}
                for name, value in (estimated.get("metrics") or {}).items():
                    values[semconv.ESTIMATED_METRIC_PREFIX + name] = value
                if report.label_coverage is not None:
                    values["label_coverage"] = report.label_coverage
                for name, value in values.items():
                    if value is not None and math.isfinite(value):
                        out.append(Observation(value, {**base, semconv.PERFORMANCE_METRIC: name}))
            return out

        def labels(options: CallbackOptions) -> Iterable[Observation]:
            out = []
            for key, join in joins():
                base = {semconv.MODEL_NAME: key[0], semconv.MODEL_VERSION: key[1]}
                counters = join.counters.to_dict()
                for field_name in _LABEL_OUTCOMES:
                    outcome = _LABEL_OUTCOME_NAMES.get(field_name, field_name)
                    out.append(
                        Observation(counters[field_name], {**base, semconv.JOIN_OUTCOME: outcome})
                    )
            return out

        def predictions(options: CallbackOptions) -> Iterable[Observation]:
            out = []
            for key, join in joins():
                base = {semconv.MODEL_NAME: key[0], semconv.MODEL_VERSION: key[1]}
                counters = join.counters.to_dict()
                for field_name, outcome in _PREDICTION_OUTCOMES.items():
                    out.append(
                        Observation(counters[field_name], {**base, semconv.JOIN_OUTCOME: outcome})
                    )
            return out

        def pending(options: CallbackOptions) -> Iterable[Observation]:
            out = []
            for key, join in joins():
                base = {semconv.MODEL_NAME: key[0], semconv.MODEL_VERSION: key[1]}
                out.append(Observation(join.pending_labels, {**base, semconv.JOIN_SIDE: "label"}))
                out.append(
                    Observation(join.unlabelled_rows, {**base, semconv.JOIN_SIDE: "prediction"})
                )
            return out

        meter.create_observable_gauge(
            semconv.METRIC_PERFORMANCE,
            callbacks=[performance],
            description=(
                "Model performance over the current window: realized metrics by name, "
                "CBPE estimates prefixed 'estimated_', and label_coverage"
            ),
        )
        meter.create_observable_counter(
            semconv.METRIC_JOIN_LABELS,
            callbacks=[labels],
            unit="{label}",
            description="Label rows by join outcome",
        )
        meter.create_observable_counter(
            semconv.METRIC_JOIN_PREDICTIONS,
            callbacks=[predictions],
            unit="{row}",
            description="Captured prediction rows by join outcome",
        )
        meter.create_observable_up_down_counter(
            semconv.METRIC_JOIN_PENDING,
            callbacks=[pending],
            unit="{row}",
            description="Rows waiting for the other side of the label join",
        )
