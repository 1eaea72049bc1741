"""The drift aggregator: prediction spans in, ``DriftReport``s and ``ml.drift.*`` metrics out.

``DriftAggregator`` keeps, per (model, version), the training-time ``Reference``
and a ``ModelWindow`` of the captured production rows; ``evaluate`` compares the
two. Spans arrive in-process (``span_processor()``, the embedded mode) or as
OTLP requests (``ingest``; ``ingest_durable`` for the service, which must not
lose an acknowledged request). Everything is persisted in a ``DriftStore``:
references immediately, window states and per-model counters at each
``checkpoint``, raw durable requests in the store's inbox until a checkpoint
covers them; reopening a store restores the windows and replays the inbox.

The latest report of each (model, version) is published through the
OpenTelemetry metrics API as observable gauges (``ml.drift.score``,
``ml.drift.detected``, ``ml.drift.share``, ``ml.drift.samples``,
``ml.data.missing.ratio``); a collection re-evaluates windows that received data
since their last report.

Memory is bounded: at most ``max_models`` (model, version) pairs and
``max_features`` features per model are tracked; spans of further models are
counted (``dropped()``) and rejected with a reason, never stored.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.trace import SpanProcessor

from modeltrace import __version__, semconv
from modeltrace.drift.call_stats import CallBook, CallStats
from modeltrace.drift.dataset_cadence import DEFAULT_INTERVAL_SECONDS, DatasetCadence
from modeltrace.drift.evaluate import evaluate_window, parse_overrides
from modeltrace.drift.extract import (
    SCORE_COLUMN,
    Extraction,
    InvalidPayloadError,
    ModelRows,
    extract,
)
from modeltrace.drift.joint import MultivariateSettings
from modeltrace.drift.label_upload import LabelEntry, labels_request
from modeltrace.drift.labels import DEFAULT_LABEL_TTL_SECONDS, DEFAULT_MAX_ROWS, JoinBuffer
from modeltrace.drift.performance import PerformanceReport
from modeltrace.drift.performance_tracker import (
    PerformanceSettings,
    PerformanceTracker,
    WindowSpec,
)
from modeltrace.drift.reference import Reference
from modeltrace.drift.report import DriftReport, FeatureDrift
from modeltrace.drift.store import DriftStore
from modeltrace.drift.windows import ModelWindow, reference_fingerprint

__all__ = [
    "DriftAggregator",
    "IngestResult",
    "MissingReferenceError",
    "UnknownModelError",
]

logger = logging.getLogger("modeltrace.drift")

DEFAULT_MAX_MODELS = 100
DEFAULT_MAX_FEATURES = 500
# Names of over-the-cap models remembered for reporting (counts are exact).
MAX_DROPPED_NAMES = 20
# Call statistics (errors, latency; modeltrace.drift.call_stats): panes of at most a
# minute, 6 hours of them, enough to compare the last 3 hours with the 3 before.
CALL_PANE_SECONDS = 60.0
CALL_MAX_PANES = 360

ModelKey = tuple[str, str]


class UnknownModelError(KeyError):
    """No data and no reference for this (model, version)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


class MissingReferenceError(UnknownModelError):
    """The model was seen but has no reference to compare with."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ``ingest`` call (or one payload of ``ingest_durable``) did.

    ``accepted``/``rejected`` count spans (label spans included; spans that are
    neither prediction nor label spans are ``ignored``); ``reason`` explains the
    rejections, or why the whole payload was unusable."""

    accepted: int
    rejected: int
    reason: str | None = None
    ignored: int = 0
    rows: int = 0


@dataclass
class ModelStats:
    """Traffic counters of one (model, version), kept whether or not it has a reference."""

    spans: int = 0
    rows: int = 0
    weighted_rows: float = 0.0
    labels: int = 0
    first_seen: float | None = None
    last_seen: float | None = None

    def add(self, spans: int, rows: int, weight: float, first: float, last: float) -> None:
        self.spans += spans
        self.rows += rows
        self.weighted_rows += weight
        if math.isfinite(first):
            self.first_seen = first if self.first_seen is None else min(self.first_seen, first)
        if math.isfinite(last):
            self.last_seen = last if self.last_seen is None else max(self.last_seen, last)

    def merge(self, other: ModelStats) -> None:
        self.labels += other.labels
        self.add(
            other.spans,
            other.rows,
            other.weighted_rows,
            math.inf if other.first_seen is None else other.first_seen,
            -math.inf if other.last_seen is None else other.last_seen,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "spans": self.spans,
            "rows": self.rows,
            "weighted_rows": self.weighted_rows,
            "labels": self.labels,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelStats:
        first, last = data.get("first_seen"), data.get("last_seen")
        return cls(
            spans=int(data.get("spans", 0)),
            rows=int(data.get("rows", 0)),
            weighted_rows=float(data.get("weighted_rows", 0.0)),
            labels=int(data.get("labels", 0)),
            first_seen=None if first is None else float(first),
            last_seen=None if last is None else float(last),
        )


@dataclass
class _Dropped:
    spans: int = 0
    models: list[str] = field(default_factory=list)

    def note(self, key: ModelKey, spans: int) -> None:
        self.spans += spans
        name = f"{key[0]}/{key[1]}"
        if name not in self.models and len(self.models) < MAX_DROPPED_NAMES:
            self.models.append(name)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _positive_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class DriftAggregator:
    """Windows of production data per (model, version), compared with references.

    ``store``: a SQLite path (``":memory:"`` for a private in-memory store) or a
    ``DriftStore``. ``pane_seconds``/``window_seconds``: the tumbling panes and the
    sliding window they make; ``count``: a count window of that many rows instead.
    ``meter_provider``: where the ``ml.drift.*`` gauges go (default: the global one).
    ``checkpoint_seconds``/``checkpoint_payloads``: how often ``ingest_durable``
    checkpoints on its own. ``read_only``: open an existing store without writing to
    it (windows are loaded and the inbox replayed in memory; reports are not
    recorded and nothing is persisted). ``multivariate_interval_seconds``: the
    dataset-level entries (``__multivariate__``, ``__embedding__``: the costly ones)
    are recomputed at most this often per model and carried over in between, their
    ``detail`` saying from when (0: every evaluation; see
    ``modeltrace.drift.dataset_cadence``).
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | DriftStore = "modeltrace.db",
        pane_seconds: float = 300.0,
        window_seconds: float = 3600.0,
        *,
        count: int | None = None,
        max_models: int = DEFAULT_MAX_MODELS,
        max_features: int = DEFAULT_MAX_FEATURES,
        meter_provider: MeterProvider | None = None,
        drift_share_threshold: float = 0.5,
        checkpoint_seconds: float = 30.0,
        checkpoint_payloads: int = 1000,
        history_limit: int = 200,
        read_only: bool = False,
        label_ttl_seconds: float = DEFAULT_LABEL_TTL_SECONDS,
        max_join_rows: int = DEFAULT_MAX_ROWS,
        multivariate: MultivariateSettings | None = None,
        multivariate_interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self.pane_seconds = _positive_number("pane_seconds", pane_seconds)
        self.window_seconds = _positive_number("window_seconds", window_seconds)
        if self.window_seconds < self.pane_seconds:
            raise ValueError(
                f"window_seconds ({window_seconds}) must be >= pane_seconds ({pane_seconds})"
            )
        if count is not None:
            _positive_int("count", count)
        self.count = count
        self.max_models = _positive_int("max_models", max_models)
        self.max_features = _positive_int("max_features", max_features)
        self.checkpoint_payloads = _positive_int("checkpoint_payloads", checkpoint_payloads)
        self.checkpoint_seconds = _positive_number("checkpoint_seconds", checkpoint_seconds)
        share = _positive_number("drift_share_threshold", drift_share_threshold)
        if share > 1.0:
            raise ValueError(f"drift_share_threshold must be in (0, 1], got {share}")
        self.drift_share_threshold = share
        self._store = (
            store
            if isinstance(store, DriftStore)
            else DriftStore(store, history_limit=history_limit, read_only=read_only)
        )
        self.read_only = self._store.read_only
        # Multivariate / embedding drift (modeltrace.drift.joint); methods=() turns it off.
        self.multivariate = multivariate if multivariate is not None else MultivariateSettings()
        # The dataset-level entries are recomputed at most this often (0: always).
        self._dataset_cadence = DatasetCadence(multivariate_interval_seconds)
        self._lock = threading.RLock()
        self._references: dict[ModelKey, Reference] = {}
        self._windows: dict[ModelKey, ModelWindow] = {}
        self._stats: dict[ModelKey, ModelStats] = {}
        self._overrides: dict[ModelKey, Mapping[str, Any]] = {}
        self._latest: dict[ModelKey, DriftReport] = {}
        self._latest_sequence: dict[ModelKey, int] = {}
        self._evaluations = 0
        self._changed: set[ModelKey] = set()  # data since the last report
        self._dirty: set[ModelKey] = set()  # state since the last checkpoint
        self._dropped_windows: set[ModelKey] = set()
        self._dropped = _Dropped()
        self._applied_inbox_id = 0
        self._payloads_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._processors: list[SpanProcessor] = []
        self._closed = False
        # Delayed labels: joins, SLOs and performance (modeltrace.drift.performance_tracker).
        self._performance = PerformanceTracker(
            ttl_seconds=label_ttl_seconds, max_rows=max_join_rows, max_pending=max_join_rows
        )
        # Every prediction span's outcome and duration per pane (root-cause analysis).
        self._calls = CallBook(min(CALL_PANE_SECONDS, self.pane_seconds), CALL_MAX_PANES)
        self._restore()
        self._register_metrics(meter_provider)

    # -- persistence --

    def _new_window(self, reference: Reference) -> ModelWindow:
        return ModelWindow(
            reference,
            pane_seconds=self.pane_seconds,
            window_seconds=self.window_seconds,
            count=self.count,
            max_features=self.max_features,
        )

    def _restore(self) -> None:
        for model, version, text in self._store.references():
            try:
                self._references[(model, version)] = Reference.from_json(text)
            except ValueError:
                logger.exception("stored reference of %s/%s is unreadable; skipped", model, version)
        for model, version, text in self._store.load_stats():
            try:
                data = json.loads(text)
                self._stats[(model, version)] = ModelStats.from_dict(data)
            except (ValueError, TypeError):
                logger.exception("stored counters of %s/%s are unreadable; reset", model, version)
                continue
            try:
                self._calls.restore((model, version), data.get("calls"))
            except (ValueError, TypeError, KeyError):
                logger.exception("stored call statistics of %s/%s are unreadable", model, version)
        states = {(m, v): state for m, v, state in self._store.load_windows()}
        for key, reference in self._references.items():
            state = states.get(key)
            window: ModelWindow | None = None
            if state is not None:
                try:
                    window = ModelWindow.from_state(state, reference)
                except ValueError:
                    logger.exception("stored window of %s/%s is unusable; starting empty", *key)
            self._windows[key] = window if window is not None else self._new_window(reference)
            self._changed.add(key)
        self._performance.restore(self._store)
        replayed = 0
        for inbox_id, payload in self._store.inbox():
            self._apply_payload(payload)
            self._applied_inbox_id = inbox_id
            replayed += 1
        if replayed:
            logger.info("replayed %d request(s) from the store inbox", replayed)

    def checkpoint(self) -> int:
        """Persist changed windows and counters and drop the inbox rows they include
        (one transaction). Returns the number of inbox rows deleted."""
        with self._lock:
            windows = {
                key: self._windows[key].to_bytes() for key in self._dirty if key in self._windows
            }
            stats = {
                key: json.dumps({**self._stats[key].to_dict(), "calls": self._calls.state(key)})
                for key in self._dirty
                if key in self._stats
            }
            deleted = self._store.checkpoint(
                windows,
                stats,
                self._applied_inbox_id,
                drop_windows=self._dropped_windows,
                joins=self._performance.checkpoint_states(),
            )
            self._dirty.clear()
            self._dropped_windows.clear()
            self._payloads_since_checkpoint = 0
            self._last_checkpoint = time.monotonic()
            return deleted

    def close(self) -> None:
        """Flush span processors, checkpoint and close the store (idempotent)."""
        if self._closed:
            return
        for processor in list(self._processors):
            try:
                processor.shutdown()
            except Exception:
                logger.exception("drift span processor failed to shut down")
        with self._lock:
            if self._closed:
                return
            if not self.read_only:
                self.checkpoint()
            self._closed = True
            self._store.close()

    def __enter__(self) -> DriftAggregator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def store(self) -> DriftStore:
        return self._store

    # -- references and settings --

    def set_reference(self, model: str, version: str, reference: Reference) -> None:
        """Use ``reference`` for (model, version) from now on (persisted at once).

        The window restarts empty unless the new reference has the same bins."""
        key = _key(model, version)
        if not isinstance(reference, Reference):
            raise TypeError(f"reference must be a Reference, got {type(reference).__name__}")
        text = reference.to_json()
        with self._lock:
            self._check_open()
            self._store.put_reference(key[0], key[1], text)
            old = self._windows.get(key)
            self._references[key] = reference
            if old is None or reference_fingerprint(old.reference) != reference_fingerprint(
                reference
            ):
                self._windows[key] = self._new_window(reference)
                self._dropped_windows.add(key)
            self._dirty.add(key)
            self._changed.add(key)
            self._latest.pop(key, None)
            self._dataset_cadence.forget(key)
            self._stats.setdefault(key, ModelStats())
            self.checkpoint()

    def reference(self, model: str, version: str) -> Reference:
        with self._lock:
            try:
                return self._references[_key(model, version)]
            except KeyError:
                raise self._unknown(model, version) from None

    def set_overrides(self, model: str, version: str, overrides: Mapping[str, Any] | None) -> None:
        """Per-feature method/threshold overrides of one model (``{feature or "*":
        {"method": ..., "threshold": ...}}``, see ``modeltrace.drift.evaluate``)."""
        parse_overrides(overrides)
        key = _key(model, version)
        with self._lock:
            if overrides:
                self._overrides[key] = dict(overrides)
            else:
                self._overrides.pop(key, None)
            self._changed.add(key)

    # -- ingestion --

    def ingest(self, payload: Any) -> IngestResult:
        """Add SDK ``ReadableSpan``s (one or an iterable), an ``ExportTraceServiceRequest``
        or its serialized bytes. Malformed spans are counted, never raised."""
        extraction = self._extract(payload)
        if isinstance(extraction, IngestResult):
            return extraction
        with self._lock:
            self._check_open()
            return self._apply(extraction)

    def ingest_durable(
        self,
        payloads: Sequence[bytes],
        prepared: Sequence[object | None] | None = None,
    ) -> list[IngestResult]:
        """The service's path: commit the serialized requests to the store's inbox in
        one transaction, then apply them; one result per payload, in order.

        ``prepared`` may give, per payload, its ``Extraction`` already made by the
        receiver (``None`` where it has none): it is used instead of extracting the
        bytes again. The inbox stores the bytes either way; a replay re-extracts."""
        blobs = [bytes(p) for p in payloads]
        if prepared is not None and len(prepared) != len(blobs):
            raise ValueError(f"{len(prepared)} extractions given for {len(blobs)} payloads")
        extractions = [
            given if isinstance(given, Extraction) else self._extract(blob)
            for blob, given in zip(blobs, prepared or [None] * len(blobs), strict=True)
        ]
        with self._lock:
            self._check_open()
            ids = self._store.append_inbox(blobs)
            results = [e if isinstance(e, IngestResult) else self._apply(e) for e in extractions]
            if ids:
                self._applied_inbox_id = ids[-1]
            self._payloads_since_checkpoint += len(blobs)
            due = (
                self._payloads_since_checkpoint >= self.checkpoint_payloads
                or time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
            )
            if due:
                self.checkpoint()
        return results

    @staticmethod
    def _extract(payload: Any) -> Extraction | IngestResult:
        try:
            return extract(payload)
        except InvalidPayloadError as exc:
            return IngestResult(0, 0, str(exc))

    def _apply_payload(self, payload: bytes) -> IngestResult:
        extraction = self._extract(payload)
        if isinstance(extraction, IngestResult):
            return extraction
        return self._apply(extraction)

    def _apply(self, extraction: Extraction) -> IngestResult:
        rejected = extraction.rejected
        accepted = extraction.accepted
        reasons = [extraction.reason_text()] if extraction.rejected else []
        rows = 0
        over_cap = 0
        for key, batch in extraction.batches.items():
            if not self._admit(key):
                self._dropped.note(key, batch.spans)
                over_cap += batch.spans
                continue
            self._add_rows(key, batch)
            self._performance.add_predictions(key, batch)
            rows += batch.rows
        for label in extraction.labels:
            key = (label.model, label.version)
            if self._admit(key):
                self._stats[key].labels += 1
                self._dirty.add(key)
                self._performance.add_label(key, label)
            else:
                self._dropped.note(key, 1)
                over_cap += 1
        if over_cap:
            accepted -= over_cap
            rejected += over_cap
            reasons.append(f"{over_cap} span(s) rejected: model limit ({self.max_models}) reached")
        return IngestResult(
            accepted=accepted,
            rejected=rejected,
            reason="; ".join(r for r in reasons if r) or None,
            ignored=extraction.ignored,
            rows=rows,
        )

    def _admit(self, key: ModelKey) -> bool:
        if key in self._stats or key in self._references:
            self._stats.setdefault(key, ModelStats())
            return True
        if len(self._stats) >= self.max_models:
            return False
        self._stats[key] = ModelStats()
        return True

    def _add_rows(self, key: ModelKey, batch: ModelRows) -> None:
        stats = self._stats[key]
        self._calls.add(key, batch.calls)
        ts = batch.timestamps
        if batch.rows:
            stats.add(
                batch.spans,
                batch.rows,
                float(batch.weights.sum()),
                float(ts.min()),
                float(ts.max()),
            )
        else:
            stats.add(batch.spans, 0, 0.0, math.inf, -math.inf)
        self._dirty.add(key)
        window = self._windows.get(key)
        if window is None or not batch.rows:
            return
        self._changed.add(key)
        embeddings = _embedding_rows(window, batch)
        columns = batch.columns
        if SCORE_COLUMN in columns and SCORE_COLUMN not in window.reference:
            # scores feed the label join; they are drift-checked only if the reference has them
            columns = {name: column for name, column in columns.items() if name != SCORE_COLUMN}
        if self.count is not None:
            window.update(
                columns, batch.weights, _ids(batch.trace_ids), float(ts.max()), embeddings
            )
            return
        panes = np.floor(ts / self.pane_seconds)
        first = panes[0]
        if bool(np.all(panes == first)):
            window.update(
                columns, batch.weights, _ids(batch.trace_ids), float(ts.max()), embeddings
            )
            return
        order = np.argsort(panes, kind="stable")
        sorted_panes = panes[order]
        bounds = np.flatnonzero(np.diff(sorted_panes)) + 1
        for rows in np.split(order, bounds):
            window.update(
                {name: column[rows] for name, column in columns.items()},
                batch.weights[rows],
                _ids(batch.trace_ids[rows]),
                float(ts[rows].max()),
                None if embeddings is None else embeddings[rows],
            )

    def span_processor(self, **options: Any) -> SpanProcessor:
        """An SDK ``SpanProcessor`` feeding finished prediction spans to this aggregator
        (see ``modeltrace.drift.processor.DriftSpanProcessor`` for ``options``)."""
        from modeltrace.drift.processor import DriftSpanProcessor

        processor = DriftSpanProcessor(self, **options)
        with self._lock:
            self._processors.append(processor)
        return processor

    # -- evaluation --

    def _unknown(self, model: str, version: str) -> UnknownModelError:
        key = (model, version)
        if key in self._stats:
            return MissingReferenceError(
                f"model {model!r} version {version!r} has data but no reference: set one with "
                "DriftAggregator.set_reference or PUT "
                f"/api/v1/models/{model}/versions/{version}/reference"
            )
        return UnknownModelError(f"unknown model {model!r} version {version!r}")

    def evaluate(self, model: str, version: str) -> DriftReport:
        """Compare the current window of (model, version) with its reference.

        Raises ``UnknownModelError`` for a model never seen, ``MissingReferenceError``
        (a subclass) for a model seen without a reference. The window is copied under
        the aggregator's lock and compared outside it, so ingestion (and with it the
        service's acknowledgements) never waits for the statistics."""
        key = _key(model, version)
        with self._lock:
            self._check_open()
            snapshot = self._snapshot(key)
        return self._finish(key, snapshot)

    def _snapshot(self, key: ModelKey) -> tuple[int, dict[str, Any]]:
        """Everything an evaluation reads, copied (call with the lock held)."""
        reference = self._references.get(key)
        window = self._windows.get(key)
        if reference is None or window is None:
            raise self._unknown(*key)
        start, end = window.bounds()
        self._changed.discard(key)  # data arriving from now on marks it again
        self._evaluations += 1
        taken = time.monotonic()
        # Dataset-level entries: none without methods, else fresh or carried over.
        carried = self._dataset_cadence.carried(key, taken) if self.multivariate.methods else []
        fresh = carried is None
        return self._evaluations, {
            "reference": reference,
            "current": window.current(),
            "model": key[0],
            "version": key[1],
            "overrides": self._overrides.get(key),
            "drift_share_threshold": self.drift_share_threshold,
            "window_start": start,
            "window_end": end,
            "n_samples": window.rows,
            "counters": copy.deepcopy(window.counters),
            "joint": window.joint_rows() if fresh else None,
            "embedded": window.embedding_rows() if fresh else None,
            "multivariate": self.multivariate,
            "carried_dataset": carried,
            "taken": taken,
        }

    def _finish(self, key: ModelKey, snapshot: tuple[int, dict[str, Any]]) -> DriftReport:
        """Evaluate a snapshot (without the lock), then keep the report unless a later
        snapshot's report was kept first."""
        sequence, arguments = snapshot
        arguments = dict(arguments)
        carried: list[FeatureDrift] | None = arguments.pop("carried_dataset")
        taken: float = arguments.pop("taken")
        report = evaluate_window(**arguments)
        if carried is None:
            self._dataset_cadence.record(key, taken, report.generated_at, report.features)
        else:
            report.features.extend(carried)
        with self._lock:
            if sequence > self._latest_sequence.get(key, 0):
                self._latest_sequence[key] = sequence
                self._latest[key] = report
                if not self.read_only and not self._closed:
                    self._store.add_report(
                        key[0],
                        key[1],
                        report.generated_at,
                        json.dumps(report.to_dict(), allow_nan=False),
                    )
        return report

    def call_summary(
        self, model: str, version: str, since_seconds: float, now: float | None = None
    ) -> dict[str, Any]:
        """Calls, errors by type and latency of the last ``since_seconds`` (up to ``now``,
        default the current time) and of the period as long before it
        (``modeltrace.drift.call_stats``); the ``GET .../spans/stats`` JSON."""
        key = _key(model, version)
        with self._lock:
            self._check_open()
            if key not in self._stats and key not in self._references:
                raise self._unknown(model, version)
            out = self._calls.stats(key).compare(
                since_seconds, time.time() if now is None else float(now)
            )
        return {"model": key[0], "version": key[1], "since_seconds": since_seconds, **out}

    def history(self, model: str, version: str | None = None, limit: int = 50) -> list[DriftReport]:
        """Past reports of ``model`` (one version or all), newest first."""
        return [
            DriftReport.from_dict(json.loads(row.json))
            for row in self._store.reports(model, version, limit)
        ]

    def latest_reports(self, refresh: bool = True) -> dict[ModelKey, DriftReport]:
        """The latest report per (model, version); with ``refresh``, windows that got
        data since their last report are evaluated first (outside the lock)."""
        snapshots: list[tuple[ModelKey, tuple[int, dict[str, Any]]]] = []
        with self._lock:
            if self._closed or not refresh:
                return dict(self._latest)
            for key in sorted(self._changed):
                if key in self._references:
                    try:
                        snapshots.append((key, self._snapshot(key)))
                    except Exception:
                        logger.exception("drift evaluation of %s/%s failed", *key)
        for key, snapshot in snapshots:
            try:
                self._finish(key, snapshot)
            except Exception:
                logger.exception("drift evaluation of %s/%s failed", *key)
        with self._lock:
            return dict(self._latest)

    # -- introspection --

    def models(self) -> list[dict[str, Any]]:
        """Models seen or referenced, each with its versions and sample counts."""
        with self._lock:
            keys = sorted(set(self._stats) | set(self._references))
            out: dict[str, list[dict[str, Any]]] = {}
            for key in keys:
                stats = self._stats.get(key, ModelStats())
                window = self._windows.get(key)
                out.setdefault(key[0], []).append(
                    {
                        "version": key[1],
                        "has_reference": key in self._references,
                        "spans": stats.spans,
                        "samples": stats.rows,
                        "weighted_samples": stats.weighted_rows,
                        "window_samples": window.rows if window is not None else 0,
                        "labels": stats.labels,
                        "first_seen": stats.first_seen,
                        "last_seen": stats.last_seen,
                    }
                )
            return [{"model": model, "versions": versions} for model, versions in out.items()]

    def dropped(self) -> dict[str, Any]:
        """Spans refused by the model cap, and some of the refused models."""
        with self._lock:
            return {"spans": self._dropped.spans, "models": list(self._dropped.models)}

    def window(self, model: str, version: str) -> ModelWindow:
        with self._lock:
            try:
                return self._windows[_key(model, version)]
            except KeyError:
                raise self._unknown(model, version) from None

    # -- replicas --

    def merge(self, other: DriftAggregator) -> DriftAggregator:
        """Add another replica's windows and counters to this one (in place).

        Windows merge exactly when both sides use the same reference; a model known
        only to ``other`` is copied with its reference."""
        if not isinstance(other, DriftAggregator):
            raise TypeError(f"can only merge a DriftAggregator, got {type(other).__name__}")
        if other is self:
            raise ValueError("cannot merge an aggregator with itself")
        with other._lock:
            references = dict(other._references)
            overrides = dict(other._overrides)
            windows = {k: w.to_bytes() for k, w in other._windows.items()}
            stats = {k: ModelStats.from_dict(s.to_dict()) for k, s in other._stats.items()}
            calls = {k: CallStats.from_dict(c.to_dict()) for k, c in other._calls.models.items()}
            dropped = (other._dropped.spans, list(other._dropped.models))
            joins = {
                k: JoinBuffer.from_bytes(j.to_bytes()) for k, j in other._performance.joins.items()
            }
        with self._lock:
            self._check_open()
            for key, reference in references.items():
                if key not in self._references:
                    self.set_reference(key[0], key[1], reference)
                    if key in overrides and key not in self._overrides:
                        self._overrides[key] = overrides[key]
            for key, state in windows.items():
                mine = self._windows[key]
                reference = references[key]
                if reference_fingerprint(mine.reference) != reference_fingerprint(reference):
                    raise ValueError(
                        f"cannot merge {key[0]}/{key[1]}: the replicas use different references"
                    )
                mine.merge(ModelWindow.from_state(state, reference))
                self._changed.add(key)
                self._dirty.add(key)
            for key, theirs_stats in stats.items():
                if not self._admit(key):
                    self._dropped.note(key, theirs_stats.spans)
                    continue
                self._stats[key].merge(theirs_stats)
                if key in calls:
                    self._calls.merge(key, calls[key])
                self._dirty.add(key)
                if key in joins:
                    self._performance.merge(key, joins[key])
            self._dropped.spans += dropped[0]
            for name in dropped[1]:
                if (
                    name not in self._dropped.models
                    and len(self._dropped.models) < MAX_DROPPED_NAMES
                ):
                    self._dropped.models.append(name)
        return self

    # -- metrics --

    def _register_metrics(self, meter_provider: MeterProvider | None) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter(semconv.SCOPE, __version__)
        meter.create_observable_gauge(
            semconv.METRIC_DRIFT_SCORE,
            callbacks=[self._observe_scores],
            description="Drift score of a feature (method-specific statistic or distance)",
        )
        meter.create_observable_gauge(
            semconv.METRIC_DRIFT_DETECTED,
            callbacks=[self._observe_detected],
            description="1 when the feature drifted against the reference, else 0",
        )
        meter.create_observable_gauge(
            semconv.METRIC_DRIFT_SHARE,
            callbacks=[self._observe_share],
            description="Share of the model's features that drifted",
        )
        meter.create_observable_gauge(
            semconv.METRIC_DRIFT_SAMPLES,
            callbacks=[self._observe_samples],
            description="Rows in the current drift window",
            unit="{row}",
        )
        meter.create_observable_gauge(
            semconv.METRIC_MISSING_RATIO,
            callbacks=[self._observe_missing],
            description="Weighted share of missing values of a feature in the current window",
        )
        self._performance.register_metrics(meter, self._performance_reports, self._lock)

    def _reports_for_metrics(self) -> list[DriftReport]:
        try:
            return list(self.latest_reports(refresh=True).values())
        except Exception:
            logger.exception("drift metrics collection failed")
            return []

    @staticmethod
    def _model_attributes(report: DriftReport) -> dict[str, str]:
        return {semconv.MODEL_NAME: report.model, semconv.MODEL_VERSION: report.version}

    def _feature_observations(self, value_of: Any) -> Iterable[Observation]:
        for report in self._reports_for_metrics():
            base = self._model_attributes(report)
            for entry in report.features:
                value = value_of(entry)
                if value is None or not math.isfinite(value):
                    continue
                yield Observation(
                    value,
                    {**base, semconv.FEATURE_NAME: entry.name, semconv.DRIFT_METHOD: entry.method},
                )

    def _observe_scores(self, options: CallbackOptions) -> Iterable[Observation]:
        return list(self._feature_observations(lambda e: float(e.score)))

    def _observe_detected(self, options: CallbackOptions) -> Iterable[Observation]:
        return list(self._feature_observations(lambda e: 1 if e.drifted else 0))

    def _observe_share(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(r.drift_share, self._model_attributes(r))
            for r in self._reports_for_metrics()
        ]

    def _observe_samples(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(r.n_samples, self._model_attributes(r)) for r in self._reports_for_metrics()
        ]

    def _observe_missing(self, options: CallbackOptions) -> Iterable[Observation]:
        out: list[Observation] = []
        for report in self._reports_for_metrics():
            base = self._model_attributes(report)
            for entry in report.features:
                if math.isfinite(entry.missing_ratio):
                    out.append(
                        Observation(entry.missing_ratio, {**base, semconv.FEATURE_NAME: entry.name})
                    )
        return out

    # -- delayed labels and performance --

    def ingest_labels(
        self, model: str, version: str, entries: Sequence[LabelEntry]
    ) -> dict[str, int]:
        """Bulk labels (``modeltrace.drift.label_upload``): committed to the inbox as label
        spans (durable when this returns, replayed after a crash), then joined.

        Returns the counts of this upload: ``accepted`` label rows, ``matched`` now,
        ``pending`` (waiting for their prediction), ``duplicates``, ``not_captured``,
        ``late``."""
        key = _key(model, version)
        if not entries:
            return dict.fromkeys(_UPLOAD_COUNTS, 0)
        payload = labels_request(key[0], key[1], entries)
        extraction = self._extract(payload)
        with self._lock:
            self._check_open()
            if not self._admit(key):
                self._dropped.note(key, 1)
                raise ValueError(
                    f"model limit ({self.max_models}) reached: labels of {model}/{version} refused"
                )
            before = self._performance.counts(key)
            ids = self._store.append_inbox([payload])
            if not isinstance(extraction, IngestResult):
                self._apply(extraction)
            if ids:
                self._applied_inbox_id = ids[-1]
            self._payloads_since_checkpoint += 1
            after = self._performance.counts(key)
        out = {name: after[name] - before[name] for name in _UPLOAD_COUNTS if name != "accepted"}
        out["accepted"] = after["labels"] - before["labels"]
        return out

    def set_slo(
        self,
        model: str,
        version: str,
        thresholds: Mapping[str, Any] | None,
        *,
        task: str | None = None,
    ) -> None:
        """SLO thresholds of one model (``{"accuracy": 0.9, "rmse": {"max": 3}}``, see
        ``modeltrace.drift.performance``) and optionally its task; stored at once.
        ``ValueError`` on an unknown metric or a bad value."""
        key = _key(model, version)
        settings = PerformanceSettings.parse(thresholds, task)
        with self._lock:
            self._check_open()
            self._performance.set_settings(None if self.read_only else self._store, key, settings)

    def slo(self, model: str, version: str) -> dict[str, Any]:
        """The stored SLO thresholds of one model (``{}`` when none)."""
        with self._lock:
            settings = self._performance.settings.get(_key(model, version))
            return dict(settings.thresholds or {}) if settings is not None else {}

    def _window_spec(self, key: ModelKey) -> WindowSpec:
        if self.count is not None:
            return WindowSpec(count=self.count)
        window = self._windows.get(key)
        if window is not None:
            start, end = window.bounds()
            if start is not None:
                return WindowSpec(start=start, end=end)
        rows = self._performance.buffer(key).joined_rows()
        if not len(rows):
            return WindowSpec()
        end = float(rows.ts.max())
        return WindowSpec(start=end - self.window_seconds, end=end)

    def performance_report(self, model: str, version: str) -> PerformanceReport:
        """Realized performance of the current window's labelled rows, with the CBPE
        estimate attached (``report.estimated``) and the SLOs checked."""
        key = _key(model, version)
        with self._lock:
            self._check_open()
            if key not in self._stats and key not in self._references:
                raise self._unknown(model, version)
            return self._performance.report(key, self._references.get(key), self._window_spec(key))

    def performance(self, model: str, version: str) -> dict[str, Any]:
        """The ``GET .../performance`` JSON: ``realized``, ``estimated``, ``label_coverage``,
        ``labels`` (join counts), ``slo``, intervals and the window."""
        key = _key(model, version)
        report = self.performance_report(model, version)
        with self._lock:
            spec = self._window_spec(key)
            counts = self._performance.counts(key)
        out = report.to_dict()
        out["model"], out["version"] = key
        out["labels"] = counts
        out["window"] = {"start": spec.start, "end": spec.end, "count": spec.count}
        return out

    def performance_history(self, model: str, version: str) -> dict[str, Any]:
        """Performance over time of the buffered predictions (realized and estimated
        main metric per pane-sized bucket), as ``html.render_model_page`` takes it."""
        key = _key(model, version)
        with self._lock:
            self._check_open()
            return self._performance.points(key, self._references.get(key), self.pane_seconds)

    def label_counts(self, model: str, version: str) -> dict[str, int]:
        """Join counters of one model: matched, pending, unmatched, expired, duplicates..."""
        with self._lock:
            return self._performance.counts(_key(model, version))

    def _performance_reports(self) -> list[tuple[ModelKey, PerformanceReport]]:
        out = []
        with self._lock:
            if self._closed:
                return []
            for key in sorted(self._performance.joins):
                try:
                    out.append(
                        (
                            key,
                            self._performance.report(
                                key, self._references.get(key), self._window_spec(key)
                            ),
                        )
                    )
                except Exception:
                    logger.exception("performance of %s/%s failed", *key)
        return out

    # -- helpers --

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the DriftAggregator is closed")

    def __repr__(self) -> str:
        return (
            f"DriftAggregator(store={self._store.path!r}, models={len(self._stats)}, "
            f"references={len(self._references)})"
        )


_UPLOAD_COUNTS = ("accepted", "matched", "pending", "duplicates", "not_captured", "late")


def _embedding_rows(window: ModelWindow, batch: ModelRows) -> np.ndarray | None:
    """The batch's embeddings in the reference's projection as ``(rows, k + 1)`` (vector,
    norm; NaN rows without one); rows of another projection are counted, not used."""
    embedding = window.reference.embedding
    if embedding is None or not batch.embeddings:
        return None
    out: np.ndarray | None = None
    for spec, found in batch.embeddings.items():
        if spec != embedding.projection:
            window.counters.embedding_mismatch_rows += int(found.rows.size)
            continue
        out = np.full((batch.rows, embedding.dim + 1), np.nan)
        out[found.rows, :-1] = found.vectors
        out[found.rows, -1] = found.norms
    return out


def _ids(trace_ids: np.ndarray) -> Sequence[str]:
    """An object array of hex trace ids, typed as the sequence the window expects."""
    return cast("Sequence[str]", trace_ids)


def _key(model: str, version: str) -> ModelKey:
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    if not isinstance(version, str):
        raise ValueError(f"version must be a string, got {version!r}")
    return (model, version)
