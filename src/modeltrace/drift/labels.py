"""The label join of one (model, version): captured predictions meet their delayed labels.

``JoinBuffer`` keeps, keyed by ``ml.prediction.id``, every captured prediction
row (its batch row index from ``ml.sample.indices``, predicted value, score,
weight ``1/ml.sample.rate``, time and trace id) for ``ttl_seconds`` (default 7
days), labelled or not: realized performance is computed from the labelled rows
of a window, estimated performance (CBPE) from all of them. Labels (from label
spans, whose ``ml.label.value`` is a scalar or an array aligned with the batch
rows, or from a bulk upload of (prediction id, row, label)) join at once when
their prediction is known, else wait as *pending* labels for ``ttl_seconds``.

Nothing is silently lost; every label row ends in one counter:

* ``matched``: joined to a captured prediction row;
* ``duplicates``: a second label for an already labelled row (the last wins);
* ``not_captured``: the prediction exists but that row was not captured
  (sampling, ``max_rows``), so there is nothing to join it to;
* ``late``: the prediction already left the buffer (TTL or capacity);
* ``unmatched``: waited ``ttl_seconds`` (or was pushed out by the capacity
  bound) without its prediction ever arriving (unknown ids end here).

Prediction rows that leave unlabelled are counted ``expired`` (TTL) or
``evicted`` (capacity). Memory is bounded: at most ``max_rows`` prediction rows,
``max_pending`` pending label rows and ``max_known_ids`` remembered ids of
calls without captured rows or already dropped (oldest first out). Expiry runs
in arrival order, which is time order for a live feed.

The state serializes (``to_bytes``/``from_bytes``) for the aggregator's
checkpoints and merges across replicas (``merge``).
"""

from __future__ import annotations

import json
import math
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from modeltrace.drift.extract import PREDICTION_COLUMN, SCORE_COLUMN, ModelRows

__all__ = [
    "DEFAULT_LABEL_TTL_SECONDS",
    "JoinBuffer",
    "JoinCounters",
    "JoinedRows",
    "LabelValue",
    "normalize_label",
]

DEFAULT_LABEL_TTL_SECONDS = 7 * 24 * 3600.0
DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_PENDING = 100_000
DEFAULT_MAX_KNOWN_IDS = 100_000
# Longest label array one prediction call can carry (a batch row index bound).
MAX_LABEL_ROW = 1_000_000

STATE_FORMAT = "modeltrace.join"
STATE_VERSION = 1

LabelValue = float | str

_NOT_CAPTURED = 0
_DROPPED = 1


def normalize_label(value: Any) -> LabelValue | None:
    """A label (or predicted value) as float or str; ``None`` when missing.

    Numbers and booleans become floats (so ``1``, ``1.0`` and ``True`` compare
    equal, as the captured predictions do); empty strings and NaN are missing.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, (bool, np.bool_, int, float, np.number)):
        number = float(value)
        return None if math.isnan(number) else number
    raise TypeError(f"a label must be a number, a string or a boolean, got {type(value).__name__}")


@dataclass
class JoinCounters:
    """Cumulative counts of the join (rows, not calls)."""

    predictions: int = 0  # captured prediction rows buffered
    labels: int = 0  # label rows received (missing values not counted)
    matched: int = 0
    duplicates: int = 0
    not_captured: int = 0
    late: int = 0
    unmatched: int = 0
    expired: int = 0  # unlabelled prediction rows past the TTL
    evicted: int = 0  # unlabelled prediction rows pushed out by max_rows
    duplicate_predictions: int = 0  # a prediction id seen twice (the repeat is ignored)

    def add(self, other: JoinCounters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JoinCounters:
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in names})


@dataclass(slots=True)
class _Prediction:
    ts: float
    weight: float
    trace_id: str
    rows: list[int]
    values: list[LabelValue | None]
    scores: list[float]  # NaN when unknown
    labels: list[LabelValue | None]

    def row_position(self) -> dict[int, int]:
        return {row: i for i, row in enumerate(self.rows)}


@dataclass(slots=True)
class _Pending:
    received: float
    labels: dict[int, LabelValue]


@dataclass(frozen=True)
class JoinedRows:
    """Captured prediction rows of a time range, as aligned arrays.

    ``labels`` holds ``None`` for rows without a label yet; ``values`` is never
    ``None`` (rows without a captured prediction are not buffered).
    """

    ts: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]
    values: npt.NDArray[np.object_]
    scores: npt.NDArray[np.float64]
    labels: npt.NDArray[np.object_]

    @property
    def labelled(self) -> npt.NDArray[np.bool_]:
        return np.array([v is not None for v in self.labels.tolist()], dtype=bool)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def select(self, mask: npt.NDArray[np.bool_]) -> JoinedRows:
        return JoinedRows(
            self.ts[mask],
            self.weights[mask],
            self.values[mask],
            self.scores[mask],
            self.labels[mask],
        )


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _object_array(values: list[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class JoinBuffer:
    """Predictions waiting for labels and labels waiting for predictions (see module doc)."""

    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_LABEL_TTL_SECONDS,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_known_ids: int = DEFAULT_MAX_KNOWN_IDS,
    ) -> None:
        self.ttl_seconds = _positive("ttl_seconds", ttl_seconds)
        for name, value in (
            ("max_rows", max_rows),
            ("max_pending", max_pending),
            ("max_known_ids", max_known_ids),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.max_rows = max_rows
        self.max_pending = max_pending
        self.max_known_ids = max_known_ids
        self.counters = JoinCounters()
        self._predictions: OrderedDict[str, _Prediction] = OrderedDict()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._known: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._rows = 0
        self._pending_rows = 0
        self._unlabelled_rows = 0
        self.generation = 0  # bumped on every change (cache key of computed performance)

    # -- sizes --

    @property
    def rows(self) -> int:
        """Buffered prediction rows."""
        return self._rows

    @property
    def pending_labels(self) -> int:
        """Label rows waiting for their prediction."""
        return self._pending_rows

    @property
    def unlabelled_rows(self) -> int:
        """Buffered prediction rows still without a label."""
        return self._unlabelled_rows

    def counts(self) -> dict[str, int]:
        """The counters plus what is waiting now (the API's ``labels`` object)."""
        out = self.counters.to_dict()
        out["pending"] = self._pending_rows
        out["predictions_waiting"] = self._unlabelled_rows
        out["predictions_buffered"] = self._rows
        return out

    # -- predictions --

    def add_predictions(self, batch: ModelRows, now: float) -> int:
        """Buffer the captured rows of ``batch``; returns how many label rows joined."""
        before = self.counters.matched + self.counters.duplicates
        for prediction_id in batch.uncaptured_ids:
            self._resolve_uncaptured(prediction_id, now)
        n = batch.rows
        if n == 0 or len(batch.prediction_ids) != n:
            return 0
        values_column = batch.columns.get(PREDICTION_COLUMN)
        if values_column is None:
            for prediction_id in dict.fromkeys(batch.prediction_ids.tolist()):
                if prediction_id:
                    self._resolve_uncaptured(prediction_id, now)
            return 0
        scores_column = batch.columns.get(SCORE_COLUMN)
        ids = batch.prediction_ids
        cut = np.flatnonzero(
            (ids[1:] != ids[:-1])
            | (batch.timestamps[1:] != batch.timestamps[:-1])
            | (batch.trace_ids[1:] != batch.trace_ids[:-1])
        )
        starts = np.concatenate(([0], cut + 1)).astype(np.intp)
        values, valid = _normalized_column(values_column)
        call_of_row = np.repeat(np.arange(starts.size), np.diff(np.append(starts, n)))
        kept = _first_valid_per_row(call_of_row, batch.row_indices, valid)
        # Per call, its kept rows are kept[bounds[c]:bounds[c + 1]] (kept is in row order).
        bounds = np.searchsorted(call_of_row[kept], np.arange(starts.size + 1)).tolist()
        kept_rows = batch.row_indices[kept].tolist()
        kept_values = [values[i] for i in kept.tolist()]
        kept_scores = (
            np.asarray(scores_column, dtype=np.float64)[kept].tolist()
            if scores_column is not None and scores_column.dtype.kind == "f"
            else [math.nan] * len(kept_rows)
        )
        call_ids = ids[starts].tolist()
        call_ts = batch.timestamps[starts].tolist()
        call_weights = batch.weights[starts].tolist()
        call_traces = batch.trace_ids[starts].tolist()
        buffered = self._predictions
        for call, prediction_id in enumerate(call_ids):
            if not prediction_id:
                continue
            lo, hi = bounds[call], bounds[call + 1]
            if lo == hi:
                self._resolve_uncaptured(prediction_id, now)
                continue
            if prediction_id in buffered:  # what _add_prediction does, without the entry
                self.counters.duplicate_predictions += 1
                continue
            self._add_prediction(
                prediction_id,
                _Prediction(
                    ts=float(call_ts[call]),
                    weight=float(call_weights[call]),
                    trace_id=str(call_traces[call]),
                    rows=kept_rows[lo:hi],
                    values=kept_values[lo:hi],
                    scores=kept_scores[lo:hi],
                    labels=[None] * (hi - lo),
                ),
                now,
            )
        return self.counters.matched + self.counters.duplicates - before

    def _resolve_uncaptured(self, prediction_id: str, now: float) -> None:
        if prediction_id in self._predictions:
            return
        self._remember(prediction_id, now, _NOT_CAPTURED)
        pending = self._pending.pop(prediction_id, None)
        if pending is not None:
            self._pending_rows -= len(pending.labels)
            self.counters.not_captured += len(pending.labels)
        self.generation += 1

    def _add_prediction(self, prediction_id: str, entry: _Prediction, now: float) -> None:
        if prediction_id in self._predictions:
            self.counters.duplicate_predictions += 1
            return
        self.counters.predictions += len(entry.rows)
        self._insert(prediction_id, entry, now)

    def _insert(self, prediction_id: str, entry: _Prediction, now: float) -> None:
        """Buffer a new entry (labels it already has count as joined), join pending labels."""
        self._known.pop(prediction_id, None)
        self._predictions[prediction_id] = entry
        self._rows += len(entry.rows)
        self._unlabelled_rows += entry.labels.count(None)
        self.generation += 1
        pending = self._pending.pop(prediction_id, None)
        if pending is not None:
            self._pending_rows -= len(pending.labels)
            self._apply_labels(entry, pending.labels)
        while self._rows > self.max_rows and len(self._predictions) > 1:
            self._drop_oldest_prediction(now, evicted=True)

    def _drop_oldest_prediction(self, now: float, *, evicted: bool) -> None:
        prediction_id, entry = self._predictions.popitem(last=False)
        unlabelled = entry.labels.count(None)
        self._rows -= len(entry.rows)
        self._unlabelled_rows -= unlabelled
        if evicted:
            self.counters.evicted += unlabelled
        else:
            self.counters.expired += unlabelled
        self._remember(prediction_id, now, _DROPPED)
        self.generation += 1

    def _remember(self, prediction_id: str, ts: float, kind: int) -> None:
        self._known[prediction_id] = (ts, kind)
        self._known.move_to_end(prediction_id)
        while len(self._known) > self.max_known_ids:
            self._known.popitem(last=False)

    # -- labels --

    def add_labels(
        self,
        prediction_id: str,
        labels: Sequence[Any] | Mapping[int, Any],
        now: float,
        rows: Sequence[int] | None = None,
    ) -> int:
        """Add the labels of one prediction call: a sequence aligned with its batch rows
        (a scalar label is a one-element sequence), or with ``rows`` when given, or a
        mapping row -> label. Missing values (``None``, NaN, "") are skipped; a row
        given twice counts as a duplicate (the last wins). Returns the label rows
        counted."""
        if not isinstance(prediction_id, str) or not prediction_id:
            raise ValueError("a label needs a non-empty prediction id")
        items: Any
        if isinstance(labels, Mapping):
            items = labels.items()
        elif rows is not None:
            if len(rows) != len(labels):
                raise ValueError(f"{len(rows)} rows for {len(labels)} labels")
            items = zip(rows, labels, strict=True)
        else:
            items = enumerate(labels)
        by_row: dict[int, LabelValue] = {}
        for row, raw in items:
            if isinstance(row, bool) or not isinstance(row, (int, np.integer)):
                raise ValueError(f"label row index must be an integer, got {row!r}")
            if not 0 <= row <= MAX_LABEL_ROW:
                raise ValueError(f"label row index {row} is out of range (0..{MAX_LABEL_ROW})")
            value = normalize_label(raw)
            if value is None:
                continue
            if int(row) in by_row:
                self.counters.duplicates += 1
            by_row[int(row)] = value
        if not by_row:
            return 0
        self.counters.labels += len(by_row)
        self.generation += 1
        entry = self._predictions.get(prediction_id)
        if entry is not None:
            self._apply_labels(entry, by_row)
            return len(by_row)
        known = self._known.get(prediction_id)
        if known is not None:
            if known[1] == _NOT_CAPTURED:
                self.counters.not_captured += len(by_row)
            else:
                self.counters.late += len(by_row)
            return len(by_row)
        pending = self._pending.get(prediction_id)
        if pending is None:
            self._pending[prediction_id] = _Pending(now, by_row)
            self._pending_rows += len(by_row)
        else:
            for row, value in by_row.items():
                if row in pending.labels:
                    self.counters.duplicates += 1
                else:
                    self._pending_rows += 1
                pending.labels[row] = value
            pending.received = now
            self._pending.move_to_end(prediction_id)
        while self._pending_rows > self.max_pending and self._pending:
            _, dropped = self._pending.popitem(last=False)
            self._pending_rows -= len(dropped.labels)
            self.counters.unmatched += len(dropped.labels)
        return len(by_row)

    def _apply_labels(self, entry: _Prediction, by_row: Mapping[int, LabelValue]) -> None:
        position = entry.row_position()
        for row, value in by_row.items():
            i = position.get(row)
            if i is None:
                self.counters.not_captured += 1
                continue
            if entry.labels[i] is None:
                self.counters.matched += 1
                self._unlabelled_rows -= 1
            else:
                self.counters.duplicates += 1
            entry.labels[i] = value

    # -- expiry --

    def expire(self, now: float) -> int:
        """Drop predictions older than the TTL (by prediction time) and pending labels
        waiting longer than it; returns the rows dropped."""
        horizon = now - self.ttl_seconds
        dropped = 0
        while self._predictions:
            entry = next(iter(self._predictions.values()))
            if entry.ts >= horizon:
                break
            dropped += len(entry.rows)
            self._drop_oldest_prediction(now, evicted=False)
        while self._pending:
            pending = next(iter(self._pending.values()))
            if pending.received >= horizon:
                break
            self._pending.popitem(last=False)
            self._pending_rows -= len(pending.labels)
            self.counters.unmatched += len(pending.labels)
            dropped += len(pending.labels)
            self.generation += 1
        while self._known:
            ts, _ = next(iter(self._known.values()))
            if ts >= horizon:
                break
            self._known.popitem(last=False)
        return dropped

    # -- reading --

    def joined_rows(self, start: float | None = None, end: float | None = None) -> JoinedRows:
        """Buffered prediction rows with ``start <= ts <= end`` (either bound optional)."""
        ts: list[float] = []
        weights: list[float] = []
        values: list[Any] = []
        scores: list[float] = []
        labels: list[Any] = []
        for entry in self._predictions.values():
            if (start is not None and entry.ts < start) or (end is not None and entry.ts > end):
                continue
            n = len(entry.rows)
            ts.extend([entry.ts] * n)
            weights.extend([entry.weight] * n)
            values.extend(entry.values)
            scores.extend(entry.scores)
            labels.extend(entry.labels)
        return JoinedRows(
            np.asarray(ts, dtype=np.float64),
            np.asarray(weights, dtype=np.float64),
            _object_array(values),
            np.asarray(scores, dtype=np.float64),
            _object_array(labels),
        )

    def latest_rows(self, count: int) -> JoinedRows:
        """The newest ``count`` prediction rows (for count windows)."""
        rows = self.joined_rows()
        if len(rows) <= count:
            return rows
        order = np.argsort(rows.ts, kind="stable")[-count:]
        mask = np.zeros(len(rows), dtype=bool)
        mask[order] = True
        return rows.select(mask)

    # -- replicas and persistence --

    def merge(self, other: JoinBuffer) -> JoinBuffer:
        """Add another replica's buffer in place: counters add, predictions and pending
        labels unite (a label both sides hold is counted once, by the side that got it)."""
        if other is self:
            raise ValueError("cannot merge a join buffer with itself")
        state = other.to_state()
        now = max([p.ts for p in self._predictions.values()] or [0.0])
        self.counters.add(JoinCounters.from_dict(state["counters"]))
        for prediction_id, ts, kind in state["known"]:
            if prediction_id not in self._predictions and prediction_id not in self._known:
                self._remember(prediction_id, float(ts), int(kind))
        for item in state["predictions"]:
            prediction_id, entry = _prediction_from_state(item)
            mine = self._predictions.get(prediction_id)
            if mine is None:
                self._insert(prediction_id, entry, now)
                continue
            position = mine.row_position()
            for row, value in _labels_of(entry).items():
                i = position.get(row)
                if i is not None and mine.labels[i] is None:
                    mine.labels[i] = value
                    self._unlabelled_rows -= 1
        for prediction_id, received, labels in state["pending"]:
            rows = {int(k): v for k, v in labels.items()}
            target = self._predictions.get(prediction_id)
            if target is not None:
                self._apply_labels(target, rows)
                continue
            pending = self._pending.setdefault(prediction_id, _Pending(float(received), {}))
            for row, value in rows.items():
                if row not in pending.labels:
                    self._pending_rows += 1
                pending.labels[row] = value
        while self._pending_rows > self.max_pending and self._pending:
            _, dropped = self._pending.popitem(last=False)
            self._pending_rows -= len(dropped.labels)
            self.counters.unmatched += len(dropped.labels)
        self.generation += 1
        return self

    def to_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "counters": self.counters.to_dict(),
            "predictions": [
                [pid, e.ts, e.weight, e.trace_id, e.rows, e.values, e.scores, e.labels]
                for pid, e in self._predictions.items()
            ],
            "pending": [
                [pid, p.received, {str(k): v for k, v in p.labels.items()}]
                for pid, p in self._pending.items()
            ],
            "known": [[pid, ts, kind] for pid, (ts, kind) in self._known.items()],
        }

    def to_bytes(self) -> bytes:
        return zlib.compress(json.dumps(self.to_state(), separators=(",", ":")).encode(), 1)

    @classmethod
    def from_bytes(cls, data: bytes, **options: Any) -> JoinBuffer:
        """Inverse of ``to_bytes``; ``options`` are the constructor's (bounds, TTL)."""
        try:
            state = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError) as exc:
            raise ValueError(f"unreadable join state: {exc}") from exc
        return cls.from_state(state, **options)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **options: Any) -> JoinBuffer:
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise ValueError("not a modeltrace join state of a supported version")
        buffer = cls(**options)
        try:
            buffer.counters = JoinCounters.from_dict(state["counters"])
            for prediction_id, ts, kind in state["known"]:
                buffer._known[str(prediction_id)] = (float(ts), int(kind))
            for item in state["predictions"]:
                prediction_id, entry = _prediction_from_state(item)
                buffer._predictions[prediction_id] = entry
                buffer._rows += len(entry.rows)
                buffer._unlabelled_rows += entry.labels.count(None)
            for prediction_id, received, labels in state["pending"]:
                rows = {int(k): v for k, v in labels.items()}
                buffer._pending[str(prediction_id)] = _Pending(float(received), rows)
                buffer._pending_rows += len(rows)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"corrupt join state: {exc}") from exc
        return buffer

    def __repr__(self) -> str:
        return (
            f"JoinBuffer(rows={self._rows}, unlabelled={self._unlabelled_rows}, "
            f"pending_labels={self._pending_rows})"
        )


def _normalized_column(
    column: np.ndarray,
) -> tuple[list[LabelValue | None], npt.NDArray[np.bool_]]:
    """``normalize_label`` of every value of a column (``None`` where missing or not a
    label), and where it is present; numeric columns without a Python step per value."""
    if column.dtype.kind in "biuf":
        numbers = np.asarray(column, dtype=np.float64)
        present = ~np.isnan(numbers)
        values: list[LabelValue | None] = list(numbers.tolist())
        return values, present
    values = [_normalize_value(v) for v in column.tolist()]
    return values, np.fromiter((v is not None for v in values), dtype=bool, count=len(values))


def _first_valid_per_row(
    call_of_row: npt.NDArray[np.intp], rows: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_]
) -> npt.NDArray[np.intp]:
    """Positions of the valid entries that are the first of their (call, batch row), in order."""
    positions = np.flatnonzero(valid)
    if positions.size < 2:
        return positions
    calls, row_ids = call_of_row[positions], rows[positions]
    order = np.lexsort((positions, row_ids, calls))
    first = np.ones(order.size, dtype=bool)
    first[1:] = (calls[order][1:] != calls[order][:-1]) | (
        row_ids[order][1:] != row_ids[order][:-1]
    )
    return np.sort(positions[order[first]])


def _normalize_value(value: Any) -> LabelValue | None:
    try:
        return normalize_label(value)
    except TypeError:
        return None


def _prediction_from_state(item: Sequence[Any]) -> tuple[str, _Prediction]:
    prediction_id, ts, weight, trace_id, rows, values, scores, labels = item
    n = len(rows)
    if not (len(values) == len(scores) == len(labels) == n):
        raise ValueError(f"prediction {prediction_id!r} has ragged rows")
    return str(prediction_id), _Prediction(
        ts=float(ts),
        weight=float(weight),
        trace_id=str(trace_id),
        rows=[int(r) for r in rows],
        values=list(values),
        scores=[math.nan if s is None else float(s) for s in scores],
        labels=list(labels),
    )


def _labels_of(entry: _Prediction) -> dict[int, LabelValue]:
    return {row: v for row, v in zip(entry.rows, entry.labels, strict=True) if v is not None}
