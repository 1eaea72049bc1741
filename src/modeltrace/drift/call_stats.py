"""Call statistics of the aggregator: calls, errors by ``error.type`` and latency, per pane.

The drift windows only see the rows a prediction span captured; root-cause
analysis also needs every call's outcome and duration. ``CallRecords`` holds
them for the spans of one (model, version) in one extraction (every prediction
span, captured rows or not); ``CallStats`` adds them to tumbling panes of
``pane_seconds`` (by span end time) and answers "what happened between t0 and
t1": call and error counts, errors by type, a latency histogram on the SDK's
duration buckets (``modeltrace.metrics.DURATION_BUCKETS_S``, the buckets of
``ml.model.predict.duration``) with Prometheus-style quantiles, and example
trace ids (a few per error type, the slowest calls).

Memory is bounded: at most ``max_panes`` panes per model (the oldest are
dropped), ``MAX_ERROR_TYPES`` error types per pane (further types count as
``_OTHER``), ``MAX_EXAMPLES`` example trace ids per error type and slowest list.
``CallBook`` keeps one ``CallStats`` per (model, version) for the aggregator;
states serialize to JSON-able dicts and merge exactly (replicas).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modeltrace.metrics import DURATION_BUCKETS_S

__all__ = [
    "BUCKET_BOUNDS",
    "OTHER_ERROR_TYPE",
    "CallBook",
    "CallRecords",
    "CallStats",
    "PaneCalls",
    "histogram_quantile",
    "summarize",
]

# Upper bounds (seconds, "le") of the latency buckets; a last +Inf bucket follows.
BUCKET_BOUNDS: tuple[float, ...] = DURATION_BUCKETS_S
# Error type of failed calls without error.type, and of types beyond the cap
# (the OpenTelemetry convention's fallback value).
OTHER_ERROR_TYPE = "_OTHER"
MAX_ERROR_TYPES = 20
MAX_EXAMPLES = 3
MAX_ERROR_TYPE_LENGTH = 128
DEFAULT_MAX_PANES = 600

_BOUNDS = np.asarray(BUCKET_BOUNDS, dtype=np.float64)
_N_BUCKETS = len(BUCKET_BOUNDS) + 1

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


def _object_array(values: Iterable[Any]) -> ObjectArray:
    items = list(values)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


@dataclass(slots=True)
class CallRecords:
    """One entry per prediction span: end time (s), duration (s, NaN when unknown),
    error type ("" for a successful call) and trace id (hex)."""

    ends: FloatArray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    durations: FloatArray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    errors: ObjectArray = field(default_factory=lambda: np.empty(0, dtype=object))
    trace_ids: ObjectArray = field(default_factory=lambda: np.empty(0, dtype=object))

    @classmethod
    def from_lists(
        cls,
        ends: list[float],
        durations: list[float],
        errors: list[str],
        trace_ids: list[str],
    ) -> CallRecords:
        return cls(
            ends=np.asarray(ends, dtype=np.float64),
            durations=np.asarray(durations, dtype=np.float64),
            errors=_object_array(errors),
            trace_ids=_object_array(trace_ids),
        )

    def __len__(self) -> int:
        return int(self.ends.shape[0])


def _clean_error_type(value: str) -> str:
    text = value.strip()[:MAX_ERROR_TYPE_LENGTH]
    return text or OTHER_ERROR_TYPE


@dataclass
class PaneCalls:
    """Calls of one pane: counts, latency bucket counts, errors by type, examples."""

    calls: int = 0
    timed: int = 0  # calls with a known duration (the histogram's count)
    duration_sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * _N_BUCKETS)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, list[str]] = field(default_factory=dict)
    slowest: list[tuple[float, str]] = field(default_factory=list)  # (seconds, trace id)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def add_errors(self, error_type: str, count: int, examples: Iterable[str]) -> None:
        name = _clean_error_type(error_type)
        if name not in self.errors and len(self.errors) >= MAX_ERROR_TYPES:
            name = OTHER_ERROR_TYPE
        self.errors[name] = self.errors.get(name, 0) + count
        kept = self.error_examples.setdefault(name, [])
        for trace_id in examples:
            if len(kept) >= MAX_EXAMPLES:
                break
            if trace_id and trace_id not in kept:
                kept.append(trace_id)

    def add_slow(self, candidates: Iterable[tuple[float, str]]) -> None:
        merged = {trace_id: seconds for seconds, trace_id in self.slowest}
        for seconds, trace_id in candidates:
            if trace_id and seconds > merged.get(trace_id, -math.inf):
                merged[trace_id] = seconds
        ranked = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:MAX_EXAMPLES]
        self.slowest = [(seconds, trace_id) for trace_id, seconds in ranked]

    def merge(self, other: PaneCalls) -> None:
        self.calls += other.calls
        self.timed += other.timed
        self.duration_sum += other.duration_sum
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        for name, count in other.errors.items():
            self.add_errors(name, count, other.error_examples.get(name, ()))
        self.add_slow(other.slowest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "timed": self.timed,
            "duration_sum": self.duration_sum,
            # Sparse: bucket index -> count.
            "buckets": {str(i): c for i, c in enumerate(self.buckets) if c},
            "errors": dict(self.errors),
            "error_examples": {k: list(v) for k, v in self.error_examples.items()},
            "slowest": [[seconds, trace_id] for seconds, trace_id in self.slowest],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaneCalls:
        buckets = [0] * _N_BUCKETS
        for index, count in dict(data.get("buckets", {})).items():
            i = int(index)
            if not 0 <= i < _N_BUCKETS:
                raise ValueError(f"latency bucket index {i} out of range")
            buckets[i] = int(count)
        pane = cls(
            calls=int(data.get("calls", 0)),
            timed=int(data.get("timed", 0)),
            duration_sum=float(data.get("duration_sum", 0.0)),
            buckets=buckets,
        )
        examples = dict(data.get("error_examples", {}))
        for name, count in dict(data.get("errors", {})).items():
            pane.add_errors(str(name), int(count), [str(t) for t in examples.get(name, [])])
        pane.add_slow((float(s), str(t)) for s, t in data.get("slowest", []))
        return pane


def histogram_quantile(q: float, bounds: tuple[float, ...], counts: list[int]) -> float | None:
    """The ``q`` quantile of a bucketed distribution, as Prometheus' ``histogram_quantile``.

    ``counts`` are per-bucket (not cumulative) counts for the upper bounds ``bounds``
    plus a last +Inf bucket. Linear interpolation inside the bucket holding the rank
    ``q * total``; the first bucket starts at 0; a rank in the +Inf bucket gives the
    highest finite bound. None when there is no observation."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q!r}")
    if len(counts) != len(bounds) + 1:
        raise ValueError("counts must have one entry per bound plus the +Inf bucket")
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0.0
    for i, count in enumerate(counts):
        if count and cumulative + count >= rank:
            if i == len(bounds):
                return float(bounds[-1])
            lower = 0.0 if i == 0 else float(bounds[i - 1])
            upper = float(bounds[i])
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
    return float(bounds[-1])


class CallStats:
    """Panes of call statistics of one (model, version)."""

    def __init__(self, pane_seconds: float, max_panes: int = DEFAULT_MAX_PANES) -> None:
        if not (isinstance(pane_seconds, (int, float)) and math.isfinite(pane_seconds)):
            raise ValueError(f"pane_seconds must be a finite number, got {pane_seconds!r}")
        if pane_seconds <= 0:
            raise ValueError(f"pane_seconds must be > 0, got {pane_seconds!r}")
        if isinstance(max_panes, bool) or not isinstance(max_panes, int) or max_panes < 1:
            raise ValueError(f"max_panes must be a positive integer, got {max_panes!r}")
        self.pane_seconds = float(pane_seconds)
        self.max_panes = max_panes
        self.panes: dict[int, PaneCalls] = {}

    def add(self, records: CallRecords) -> None:
        """Count every record in the pane of its end time."""
        n = len(records)
        if n == 0:
            return
        ends = records.ends
        valid = np.isfinite(ends)
        if not bool(valid.all()):
            records = CallRecords(
                ends[valid], records.durations[valid], records.errors[valid],
                records.trace_ids[valid],
            )  # fmt: skip
            if not len(records):
                return
        pane_ids = np.floor(records.ends / self.pane_seconds).astype(np.int64)
        for pane_id in np.unique(pane_ids):
            mask = pane_ids == pane_id
            self._add_pane(int(pane_id), records, mask)
        self._trim()

    def _add_pane(self, pane_id: int, records: CallRecords, mask: npt.NDArray[np.bool_]) -> None:
        pane = self.panes.get(pane_id)
        if pane is None:
            pane = self.panes[pane_id] = PaneCalls()
        durations = records.durations[mask]
        trace_ids = records.trace_ids[mask]
        errors = records.errors[mask]
        pane.calls += int(durations.shape[0])
        timed = np.isfinite(durations) & (durations >= 0)
        known = durations[timed]
        if known.size:
            pane.timed += int(known.size)
            pane.duration_sum += float(known.sum())
            # "le" buckets: the first bound >= the value.
            index = np.searchsorted(_BOUNDS, known, side="left")
            counts = np.bincount(index, minlength=_N_BUCKETS)
            pane.buckets = [a + int(b) for a, b in zip(pane.buckets, counts, strict=True)]
            known_ids = trace_ids[timed]
            top = np.argsort(-known, kind="stable")[:MAX_EXAMPLES]
            pane.add_slow((float(known[i]), str(known_ids[i])) for i in top)
        failed = np.flatnonzero(errors != "")
        if failed.size:
            by_type: dict[str, list[int]] = {}
            for i in failed:
                by_type.setdefault(str(errors[i]), []).append(int(i))
            for name, rows in by_type.items():
                pane.add_errors(name, len(rows), (str(trace_ids[i]) for i in rows[:MAX_EXAMPLES]))

    def _trim(self) -> None:
        extra = len(self.panes) - self.max_panes
        if extra > 0:
            for pane_id in sorted(self.panes)[:extra]:
                del self.panes[pane_id]

    def merge(self, other: CallStats) -> None:
        if other.pane_seconds != self.pane_seconds:
            raise ValueError(
                f"cannot merge call statistics with panes of {other.pane_seconds} s "
                f"into panes of {self.pane_seconds} s"
            )
        for pane_id, pane in other.panes.items():
            mine = self.panes.get(pane_id)
            if mine is None:
                self.panes[pane_id] = PaneCalls.from_dict(pane.to_dict())
            else:
                mine.merge(pane)
        self._trim()

    def covered_since(self) -> float | None:
        """Start time of the oldest pane kept (None when empty)."""
        return min(self.panes) * self.pane_seconds if self.panes else None

    def period(self, first_pane: int, last_pane: int) -> PaneCalls:
        """Panes ``first_pane..last_pane`` (inclusive) merged into one."""
        out = PaneCalls()
        for pane_id, pane in self.panes.items():
            if first_pane <= pane_id <= last_pane:
                out.merge(pane)
        return out

    def compare(self, since_seconds: float, now: float) -> dict[str, Any]:
        """The last ``since_seconds`` up to ``now`` (whole panes, the current pane
        included) and the period of the same length before it."""
        if not (math.isfinite(since_seconds) and since_seconds > 0):
            raise ValueError(f"since must be a positive number of seconds, got {since_seconds!r}")
        pane = self.pane_seconds
        last = math.floor(now / pane)
        n = max(1, round(since_seconds / pane))
        current = self.period(last - n + 1, last)
        previous = self.period(last - 2 * n + 1, last - n)
        current_start = (last - n + 1) * pane
        previous_start = (last - 2 * n + 1) * pane
        covered = self.covered_since()
        return {
            "pane_seconds": pane,
            "covered_since": covered,
            "current": summarize(current, current_start, now),
            "previous": summarize(
                previous,
                previous_start,
                current_start,
                complete=covered is not None and covered <= previous_start,
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "pane_seconds": self.pane_seconds,
            "panes": {str(pane_id): pane.to_dict() for pane_id, pane in sorted(self.panes.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], max_panes: int = DEFAULT_MAX_PANES) -> CallStats:
        stats = cls(float(data["pane_seconds"]), max_panes)
        for pane_id, pane in dict(data.get("panes", {})).items():
            stats.panes[int(pane_id)] = PaneCalls.from_dict(pane)
        stats._trim()
        return stats


def summarize(
    pane: PaneCalls, start: float, end: float, *, complete: bool = True
) -> dict[str, Any]:
    """The JSON summary of one period (``GET .../spans/stats``): counts, error ratio, errors by
    type, latency mean and quantiles, bucket counts and example trace ids."""
    seconds = max(end - start, 0.0)
    latency: dict[str, float | None] = {
        "mean": pane.duration_sum / pane.timed if pane.timed else None,
        "p50": histogram_quantile(0.5, BUCKET_BOUNDS, pane.buckets),
        "p90": histogram_quantile(0.9, BUCKET_BOUNDS, pane.buckets),
        "p99": histogram_quantile(0.99, BUCKET_BOUNDS, pane.buckets),
    }
    errors = dict(sorted(pane.errors.items(), key=lambda item: (-item[1], item[0])))
    error_count = sum(errors.values())
    return {
        "start": start,
        "end": end,
        "complete": complete,
        "calls": pane.calls,
        "calls_per_second": pane.calls / seconds if seconds > 0 else None,
        "errors": error_count,
        "error_ratio": error_count / pane.calls if pane.calls else None,
        "errors_by_type": errors,
        "latency_seconds": latency,
        "latency_buckets": {"le": [*BUCKET_BOUNDS, "+Inf"], "counts": list(pane.buckets)},
        "examples": {
            "errors": {name: list(pane.error_examples.get(name, [])) for name in errors},
            "slowest": [{"trace_id": t, "seconds": s} for s, t in pane.slowest],
        },
    }


class CallBook:
    """``CallStats`` per (model, version), as the aggregator keeps them."""

    def __init__(self, pane_seconds: float, max_panes: int = DEFAULT_MAX_PANES) -> None:
        CallStats(pane_seconds, max_panes)  # validates the arguments
        self.pane_seconds = float(pane_seconds)
        self.max_panes = max_panes
        self.models: dict[tuple[str, str], CallStats] = {}

    def stats(self, key: tuple[str, str]) -> CallStats:
        stats = self.models.get(key)
        if stats is None:
            stats = self.models[key] = CallStats(self.pane_seconds, self.max_panes)
        return stats

    def add(self, key: tuple[str, str], records: CallRecords | None) -> None:
        if records is not None and len(records):
            self.stats(key).add(records)

    def state(self, key: tuple[str, str]) -> dict[str, Any] | None:
        stats = self.models.get(key)
        return stats.to_dict() if stats is not None else None

    def restore(self, key: tuple[str, str], data: Mapping[str, Any] | None) -> None:
        """Load a stored state; panes of another size are dropped (the pane size changed)."""
        if not data:
            return
        stats = CallStats.from_dict(data, self.max_panes)
        if stats.pane_seconds == self.pane_seconds:
            self.models[key] = stats

    def merge(self, key: tuple[str, str], other: CallStats) -> None:
        self.stats(key).merge(other)
