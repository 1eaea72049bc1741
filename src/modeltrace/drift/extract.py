"""Prediction and label spans -> columns of captured rows, per (model, version).

Input is either SDK ``ReadableSpan`` objects (the embedded mode) or OTLP
``ExportTraceServiceRequest`` protobufs, as objects or serialized bytes (the
service). Output is an ``Extraction``: for each (model, version) a ``ModelRows``
holding one numpy array per column (``float64`` with NaN for missing numbers,
``object`` with ``None`` for missing values when a column carries text), the
weight of each row (``1/ml.sample.rate``), its trace id (hex) and its span's end
time (seconds); label spans are returned separately as ``LabelRecord``s.

Span layout (docs/architecture.md, "Span -> drift data"): a span named
``predict ...`` with ``ml.model.name`` is a prediction span. Its captured rows
are given by ``ml.feature.NAME``, ``ml.prediction.value`` and
``ml.prediction.score``: scalars when the call captured one row, else arrays
of equal length aligned with ``ml.sample.indices``. Spans that break the layout
(wrong types, ragged arrays, a bad sample rate, ...) are counted as rejected
with a reason; they never raise. Other spans are counted as ignored.

Embeddings (``modeltrace.embedding``): ``ml.embedding.projection`` (the spec),
``ml.embedding.vector`` (rows x k doubles, row-major, aligned with the captured
rows) and ``ml.embedding.norm`` become ``ModelRows.embeddings``: per projection
spec an ``EmbeddingRows`` (row numbers, vectors, norms).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError, Message
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from modeltrace import semconv
from modeltrace.drift import otlp_wire
from modeltrace.drift.call_stats import OTHER_ERROR_TYPE, CallRecords
from modeltrace.embedding import Projection

__all__ = [
    "PREDICTION_COLUMN",
    "SCORE_COLUMN",
    "EmbeddingRows",
    "Extraction",
    "InvalidPayloadError",
    "LabelRecord",
    "ModelRows",
    "extract",
    "extract_otlp",
    "extract_spans",
]

PREDICTION_COLUMN = semconv.PREDICTION_FEATURE
# Column of ml.prediction.score (confidence), next to the prediction itself.
SCORE_COLUMN = "__prediction_score__"

_RESERVED_COLUMNS = frozenset({PREDICTION_COLUMN, SCORE_COLUMN})
_FEATURE_PREFIX = semconv.FEATURE_PREFIX
_FEATURE_PREFIX_LEN = len(_FEATURE_PREFIX)
_DATA_KEYS = {semconv.PREDICTION_VALUE: PREDICTION_COLUMN, semconv.PREDICTION_SCORE: SCORE_COLUMN}
_SPECIAL_KEYS = frozenset(
    {
        semconv.MODEL_NAME,
        semconv.MODEL_VERSION,
        semconv.SAMPLE_RATE,
        semconv.SAMPLE_INDICES,
        semconv.PREDICTION_ID,
        semconv.LABEL_VALUE,
        semconv.EMBEDDING_PROJECTION,
        semconv.EMBEDDING_VECTOR,
        semconv.EMBEDDING_NORM,
        semconv.ERROR_TYPE,
    }
)

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


class InvalidPayloadError(ValueError):
    """A payload that is not a decodable OTLP trace request (nothing of it is used)."""


class _RejectedSpan(Exception):
    """Internal: the span breaks the layout; the message is the reason."""


@dataclass(slots=True)
class EmbeddingRows:
    """The projected embeddings of some rows of a ``ModelRows`` (one projection)."""

    rows: npt.NDArray[np.intp]  # row numbers in the ModelRows
    vectors: FloatArray  # (len(rows), k)
    norms: FloatArray  # (len(rows),), NaN when not recorded


@dataclass(slots=True)
class ModelRows:
    """The rows captured for one (model, version) in one extraction."""

    model: str
    version: str
    columns: dict[str, np.ndarray]
    weights: FloatArray
    trace_ids: ObjectArray
    timestamps: FloatArray
    spans: int
    # Per row: the call's ml.prediction.id ("" when absent) and the row's index in
    # the call's batch (ml.sample.indices, else its position): the label join key.
    prediction_ids: ObjectArray = field(default_factory=lambda: np.empty(0, dtype=object))
    row_indices: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    # Prediction ids of calls that captured no row (their labels cannot be joined).
    uncaptured_ids: list[str] = field(default_factory=list)
    # Projection spec -> the rows recorded with it (modeltrace.embedding).
    embeddings: dict[str, EmbeddingRows] = field(default_factory=dict)
    # Every prediction span (captured rows or not): end, duration, error type, trace id.
    calls: CallRecords = field(default_factory=CallRecords)

    @property
    def rows(self) -> int:
        return int(self.weights.shape[0])


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """A delayed label span: the labels of one earlier prediction call.

    ``labels`` is aligned with the call's batch rows, or with ``rows`` (the batch
    row indices, from the label span's ``ml.sample.indices``) when given."""

    model: str
    version: str
    prediction_id: str
    labels: tuple[Any, ...]
    rows: tuple[int, ...] | None = None


@dataclass(slots=True)
class Extraction:
    """Everything drift needs from a batch of spans, plus what was not usable."""

    batches: dict[tuple[str, str], ModelRows] = field(default_factory=dict)
    labels: list[LabelRecord] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    ignored: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def reason_text(self) -> str:
        """A one-line summary of why spans were rejected ("" when none were)."""
        if not self.rejected:
            return ""
        parts = ", ".join(f"{reason} ({count})" for reason, count in self.reasons.most_common())
        return f"{self.rejected} span(s) rejected: {parts}"


# --- values ----------------------------------------------------------------


def _normalize_scalar(value: Any) -> float | str | None:
    """A scalar attribute value as float, str, or None (missing)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float, np.number, np.bool_)):
        return float(value)
    raise _RejectedSpan(f"unsupported value type {type(value).__name__}")


def _values_to_array(values: Sequence[Any]) -> np.ndarray:
    """Array attribute values -> float64 (numbers, NaN missing) or object (text, None missing)."""
    text = missing = False
    for kind in {type(v) for v in values}:
        if issubclass(kind, str):
            text = True
        elif kind is type(None):
            missing = True
        elif not issubclass(kind, (int, float, np.number, np.bool_)):
            raise _RejectedSpan(f"unsupported array element type {kind.__name__}")
    if not text:
        if missing:
            return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        return np.array(values, dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = [_normalize_object(v) for v in values]
    return out


def _normalize_object(value: Any) -> float | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    number = float(value)
    return None if math.isnan(number) else number


def _expand_ranges(starts: list[int], counts: list[int]) -> npt.NDArray[np.intp]:
    """Concatenated ``range(start, start + count)`` for each pair, vectorized."""
    counts_arr = np.asarray(counts, dtype=np.intp)
    starts_arr = np.asarray(starts, dtype=np.intp)
    total = int(counts_arr.sum())
    first = np.cumsum(counts_arr) - counts_arr
    return np.arange(total, dtype=np.intp) + np.repeat(starts_arr - first, counts_arr)


# --- builders ----------------------------------------------------------------

_SCALAR = 0  # payload: float | str | None
_F8 = 1  # payload: 8 little-endian bytes of a double
_DOUBLES = 2  # payload: ArrayValue bytes of doubles only (11 bytes per element)
_ARRAY = 3  # payload: numpy array (float64 or object)

# An item of a span: (column, kind, payload, count) with count -1 for scalars.
_Item = tuple[str, int, Any, int]
# A span's embedding: (projection spec, flat vector values, norms or None).
_Embedding = tuple[str, FloatArray, FloatArray | None]


# One value chunk of a column: (row offset, kind, payload, count).
_Entry = tuple[int, int, Any, int]


def _build_column(entries: list[_Entry], total: int) -> np.ndarray:
    """One column of ``total`` rows from its chunks (rows without a chunk are missing)."""
    f8_rows = [e[0] for e in entries if e[1] == _F8]
    double_entries = [e for e in entries if e[1] == _DOUBLES]
    others = [e for e in entries if e[1] == _SCALAR or e[1] == _ARRAY]
    has_text = any(
        isinstance(e[2], str) if e[1] == _SCALAR else e[2].dtype == object for e in others
    )
    numbers = np.full(total, math.nan, dtype=np.float64)
    filled = np.zeros(total, dtype=bool) if has_text else None
    if f8_rows:
        rows = np.asarray(f8_rows, dtype=np.intp)
        payload = b"".join([e[2] for e in entries if e[1] == _F8])
        numbers[rows] = np.frombuffer(payload, dtype="<f8")
        if filled is not None:
            filled[rows] = True
    if double_entries:
        joined = b"".join([e[2] for e in double_entries])
        raw = np.frombuffer(joined, dtype=np.uint8).reshape(-1, 11)
        rows = _expand_ranges([e[0] for e in double_entries], [e[3] for e in double_entries])
        numbers[rows] = raw[:, 3:].copy().view("<f8").ravel()
        if filled is not None:
            filled[rows] = True
    if filled is None:
        for row, kind, payload, _ in others:
            if kind == _SCALAR:
                if payload is not None:
                    numbers[row] = payload
            else:
                numbers[row : row + payload.shape[0]] = payload
        return numbers
    out = np.full(total, None, dtype=object)
    fast = np.flatnonzero(filled & ~np.isnan(numbers))
    out[fast] = numbers[fast].tolist()
    for row, kind, payload, _ in others:
        if kind == _SCALAR:
            out[row] = _normalize_object(payload)
        elif payload.dtype == object:
            out[row : row + payload.shape[0]] = payload
        else:
            out[row : row + payload.shape[0]] = [
                None if math.isnan(v) else v for v in payload.tolist()
            ]
    return out


class _ModelBuilder:
    """Collects the rows of one (model, version)."""

    __slots__ = (
        "call_durations",
        "call_ends",
        "call_errors",
        "call_trace_ids",
        "columns",
        "embeddings",
        "rows",
        "span_indices",
        "span_prediction_ids",
        "span_rows",
        "span_times",
        "span_trace_ids",
        "span_weights",
        "spans",
        "uncaptured_ids",
    )

    def __init__(self) -> None:
        self.columns: dict[str, list[_Entry]] = {}
        self.rows = 0
        self.spans = 0
        self.span_rows: list[int] = []
        self.span_weights: list[float] = []
        self.span_trace_ids: list[str] = []
        self.span_times: list[float] = []
        self.span_prediction_ids: list[str] = []
        self.span_indices: list[npt.NDArray[np.int64] | None] = []
        self.uncaptured_ids: list[str] = []
        self.embeddings: dict[str, list[tuple[int, FloatArray, FloatArray]]] = {}
        self.call_ends: list[float] = []
        self.call_durations: list[float] = []
        self.call_errors: list[str] = []
        self.call_trace_ids: list[str] = []

    def add_embedding(self, embedding: _Embedding, n: int) -> None:
        """The embedding of the span about to be added (its rows start at ``self.rows``)."""
        spec, flat, norms = embedding
        k = Projection.parse(spec).k
        if flat.size != n * k or (norms is not None and norms.size != n):
            raise _RejectedSpan("ml.embedding.* lengths do not match the captured rows")
        norms = norms if norms is not None else np.full(n, math.nan)
        self.embeddings.setdefault(spec, []).append((self.rows, flat.reshape(n, k), norms))

    def add_span(
        self,
        items: list[_Item],
        n: int,
        weight: float,
        trace_id: str,
        end_seconds: float,
        prediction_id: str = "",
        indices: npt.NDArray[np.int64] | None = None,
        duration: float = math.nan,
        error_type: str = "",
    ) -> None:
        self.spans += 1
        self.call_ends.append(end_seconds)
        self.call_durations.append(duration)
        self.call_errors.append(error_type)
        self.call_trace_ids.append(trace_id)
        if n == 0:
            if prediction_id:
                self.uncaptured_ids.append(prediction_id)
            return
        row = self.rows
        columns = self.columns
        for column, kind, payload, count in items:
            entries = columns.get(column)
            if entries is None:
                columns[column] = [(row, kind, payload, count)]
            else:
                entries.append((row, kind, payload, count))
        self.rows += n
        self.span_rows.append(n)
        self.span_weights.append(weight)
        self.span_trace_ids.append(trace_id)
        self.span_times.append(end_seconds)
        self.span_prediction_ids.append(prediction_id)
        self.span_indices.append(indices)

    def build(self, model: str, version: str) -> ModelRows:
        counts = np.asarray(self.span_rows, dtype=np.intp)
        trace_ids = np.empty(len(self.span_trace_ids), dtype=object)
        trace_ids[:] = self.span_trace_ids
        prediction_ids = np.empty(len(self.span_prediction_ids), dtype=object)
        prediction_ids[:] = self.span_prediction_ids
        row_indices = [
            np.arange(n, dtype=np.int64) if idx is None else idx
            for n, idx in zip(self.span_rows, self.span_indices, strict=True)
        ]
        return ModelRows(
            model=model,
            version=version,
            columns={name: _build_column(e, self.rows) for name, e in self.columns.items()},
            weights=np.repeat(np.asarray(self.span_weights, dtype=np.float64), counts),
            trace_ids=np.repeat(trace_ids, counts),
            timestamps=np.repeat(np.asarray(self.span_times, dtype=np.float64), counts),
            spans=self.spans,
            prediction_ids=np.repeat(prediction_ids, counts),
            row_indices=(
                np.concatenate(row_indices) if row_indices else np.empty(0, dtype=np.int64)
            ),
            uncaptured_ids=self.uncaptured_ids,
            embeddings={
                spec: EmbeddingRows(
                    rows=np.concatenate(
                        [np.arange(r, r + v.shape[0], dtype=np.intp) for r, v, _ in parts]
                    ),
                    vectors=np.vstack([v for _, v, _ in parts]),
                    norms=np.concatenate([m for _, _, m in parts]),
                )
                for spec, parts in self.embeddings.items()
            },
            calls=CallRecords.from_lists(
                self.call_ends, self.call_durations, self.call_errors, self.call_trace_ids
            ),
        )


class _Collector:
    """Shared bookkeeping of both input paths."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], _ModelBuilder] = {}
        self.result = Extraction()

    def reject(self, reason: str) -> None:
        self.result.rejected += 1
        self.result.reasons[reason] += 1

    def add_prediction(
        self,
        model: str,
        version: str,
        items: list[_Item],
        indices_count: int | None,
        rate: Any,
        trace_id: str,
        end_seconds: float,
        prediction_id: Any = None,
        indices: npt.NDArray[np.int64] | None = None,
        embedding: _Embedding | None = None,
        duration: float = math.nan,
        error_type: str = "",
    ) -> None:
        n = _row_count(items, indices_count)
        weight = _weight(rate)
        builder = self.models.get((model, version))
        if builder is None:
            builder = self.models[(model, version)] = _ModelBuilder()
        pid = prediction_id if isinstance(prediction_id, str) else ""
        if indices is not None and indices.shape[0] != n:
            indices = None  # no captured values: the indices describe nothing
        if embedding is not None and n:
            builder.add_embedding(embedding, n)
        builder.add_span(
            items, n, weight, trace_id, end_seconds, pid, indices, duration, error_type
        )
        self.result.accepted += 1

    def add_label(
        self,
        model: str,
        version: str,
        prediction_id: Any,
        labels: tuple[Any, ...],
        rows: Any = None,
    ) -> None:
        if not isinstance(prediction_id, str) or not prediction_id:
            raise _RejectedSpan("missing ml.prediction.id")
        row_tuple: tuple[int, ...] | None = None
        if rows is not None:
            if not isinstance(rows, (list, tuple)):
                rows = (rows,)
            if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows):
                raise _RejectedSpan("ml.sample.indices must be integers >= 0")
            if len(rows) != len(labels):
                raise _RejectedSpan("ml.sample.indices length does not match ml.label.value")
            row_tuple = tuple(rows)
        self.result.labels.append(LabelRecord(model, version, prediction_id, labels, row_tuple))
        self.result.accepted += 1

    def finish(self) -> Extraction:
        for (model, version), builder in self.models.items():
            self.result.batches[(model, version)] = builder.build(model, version)
        return self.result


def _row_count(items: list[_Item], indices_count: int | None) -> int:
    lengths = {count for _, _, _, count in items}
    arrays = lengths - {-1}
    if len(arrays) > 1:
        raise _RejectedSpan("ragged arrays")
    if arrays:
        (n,) = arrays
        if n != 1 and -1 in lengths:
            raise _RejectedSpan("ragged arrays")
    else:
        n = 1 if items else 0
    if indices_count is not None and items and indices_count != n:
        raise _RejectedSpan("ml.sample.indices length does not match the captured values")
    return n


def _weight(rate: Any) -> float:
    if rate is None:
        return 1.0
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate <= 1.0:
        raise _RejectedSpan("invalid ml.sample.rate")
    return 1.0 / float(rate)


def _error_type(value: Any, status_error: bool) -> str:
    """The call's error type: ``error.type``, else ``_OTHER`` when the status is ERROR,
    else "" (a successful call)."""
    if isinstance(value, str) and value.strip():
        return value
    return OTHER_ERROR_TYPE if status_error else ""


def _identity(model: Any, version: Any) -> tuple[str, str]:
    if not isinstance(model, str) or not model:
        raise _RejectedSpan("invalid ml.model.name")
    if version is None:
        version = ""
    elif isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)
    elif not isinstance(version, str):
        raise _RejectedSpan("invalid ml.model.version")
    return model, version


def _feature_column(name: str) -> str:
    if not name:
        raise _RejectedSpan("empty feature name")
    if name in _RESERVED_COLUMNS:
        raise _RejectedSpan(f"reserved feature name {name}")
    return name


def _embedding(spec: Any, vector: Any, norms: Any) -> _Embedding | None:
    """A span's embedding attributes (already decoded), validated; None when absent."""
    if spec is None and vector is None:
        return None
    if not isinstance(spec, str) or vector is None:
        raise _RejectedSpan("ml.embedding.vector needs ml.embedding.projection")
    try:
        Projection.parse(spec)
    except ValueError as exc:
        raise _RejectedSpan("invalid ml.embedding.projection") from exc
    flat = _doubles(vector, semconv.EMBEDDING_VECTOR)
    return spec, flat, None if norms is None else _doubles(norms, semconv.EMBEDDING_NORM)


def _doubles(value: Any, what: str) -> FloatArray:
    if isinstance(value, np.ndarray):
        return value
    items = value if isinstance(value, (tuple, list)) else (value,)
    if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in items):
        raise _RejectedSpan(f"{what} must hold numbers")
    return np.asarray(items, dtype=np.float64)


# --- SDK spans ----------------------------------------------------------------


def _sdk_item(column: str, value: Any) -> _Item:
    if isinstance(value, (tuple, list)):
        array = _values_to_array(value)
        return (column, _ARRAY, array, int(array.shape[0]))
    return (column, _SCALAR, _normalize_scalar(value), -1)


def _sdk_labels(value: Any) -> tuple[Any, ...]:
    if value is None:
        raise _RejectedSpan("missing ml.label.value")
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,)


def _sdk_span(collector: _Collector, span: Any) -> None:
    if not isinstance(span, ReadableSpan):
        raise _RejectedSpan("not a ReadableSpan")
    name = span.name or ""
    is_prediction = name.startswith(semconv.PREDICT_SPAN_PREFIX)
    if not is_prediction and not name.startswith(semconv.LABEL_SPAN_PREFIX):
        collector.result.ignored += 1
        return
    attributes: Mapping[str, Any] = span.attributes or {}
    if semconv.MODEL_NAME not in attributes:
        collector.result.ignored += 1
        return
    model, version = _identity(
        attributes.get(semconv.MODEL_NAME), attributes.get(semconv.MODEL_VERSION)
    )
    if not is_prediction:
        collector.add_label(
            model,
            version,
            attributes.get(semconv.PREDICTION_ID),
            _sdk_labels(attributes.get(semconv.LABEL_VALUE)),
            attributes.get(semconv.SAMPLE_INDICES),
        )
        return
    if span.end_time is None:
        raise _RejectedSpan("span has not ended")
    items: list[_Item] = []
    for key, value in attributes.items():
        if key.startswith(_FEATURE_PREFIX):
            items.append(_sdk_item(_feature_column(key[_FEATURE_PREFIX_LEN:]), value))
        elif key in _DATA_KEYS:
            items.append(_sdk_item(_DATA_KEYS[key], value))
    indices = attributes.get(semconv.SAMPLE_INDICES)
    indices_count: int | None = None
    index_array: npt.NDArray[np.int64] | None = None
    if indices is not None:
        if not isinstance(indices, (tuple, list)):
            indices = (indices,)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise _RejectedSpan("ml.sample.indices must be integers")
        indices_count = len(indices)
        index_array = np.asarray(indices, dtype=np.int64)
    context = span.context
    trace_id = f"{context.trace_id:032x}" if context is not None else ""
    collector.add_prediction(
        model,
        version,
        items,
        indices_count,
        attributes.get(semconv.SAMPLE_RATE),
        trace_id,
        span.end_time / 1e9,
        attributes.get(semconv.PREDICTION_ID),
        index_array,
        _embedding(
            attributes.get(semconv.EMBEDDING_PROJECTION),
            attributes.get(semconv.EMBEDDING_VECTOR),
            attributes.get(semconv.EMBEDDING_NORM),
        ),
        (span.end_time - span.start_time) / 1e9 if span.start_time else math.nan,
        _error_type(
            attributes.get(semconv.ERROR_TYPE), span.status.status_code is StatusCode.ERROR
        ),
    )


def extract_spans(spans: Iterable[Any]) -> Extraction:
    """Columns from SDK ``ReadableSpan``s (other objects are counted as rejected)."""
    collector = _Collector()
    for span in spans:
        try:
            _sdk_span(collector, span)
        except _RejectedSpan as exc:
            collector.reject(str(exc))
    return collector.finish()


# --- OTLP ---------------------------------------------------------------------


_TAG_ARRAY = otlp_wire.TAG_ARRAY
# opentelemetry.proto.trace.v1.Status.StatusCode.STATUS_CODE_ERROR
_STATUS_CODE_ERROR = 2
_TAG_DOUBLE = otlp_wire.TAG_DOUBLE
# Element patterns of arrays of up to 11 doubles (125 bytes: a one-byte length).
_SHORT_DOUBLE_PATTERNS = [(b"\x0a" * n, b"\x09" * n, b"\x21" * n) for n in range(12)]


def _otlp_item(column: str, raw: bytes) -> _Item:
    if raw and raw[0] == otlp_wire.TAG_ARRAY:
        arr = otlp_wire.array_bytes(raw)
        if arr is not None:
            count = otlp_wire.double_array_count(arr)
            if count >= 0:
                return (column, _DOUBLES, arr, count)
            count = otlp_wire.small_int_array_count(arr)
            if count >= 0:
                ints = np.frombuffer(arr, dtype=np.uint8)[3::4].astype(np.float64)
                return (column, _ARRAY, ints, count)
            array = _values_to_array(otlp_wire.decode_array_slow(arr))
            return (column, _ARRAY, array, int(array.shape[0]))
    if len(raw) == 9 and raw[0] == otlp_wire.TAG_DOUBLE:
        return (column, _F8, raw[1:], -1)
    return (column, _SCALAR, _normalize_scalar(otlp_wire.decode_scalar(raw)), -1)


def _otlp_any(raw: bytes | None) -> Any:
    """Raw AnyValue bytes -> a Python scalar, a list for arrays, None when absent."""
    if raw is None:
        return None
    arr = otlp_wire.array_bytes(raw)
    if arr is not None:
        return otlp_wire.decode_array_slow(arr)
    return otlp_wire.decode_scalar(raw)


def _otlp_span(collector: _Collector, span: Any) -> None:
    name: str = span.name
    is_prediction = name.startswith(semconv.PREDICT_SPAN_PREFIX)
    if not is_prediction and not name.startswith(semconv.LABEL_SPAN_PREFIX):
        collector.result.ignored += 1
        return
    special: dict[str, bytes] = {}
    items: list[_Item] = []
    pending: list[tuple[str, bytes]] = []
    for kv in span.attributes:
        key: str = kv.key
        if key.startswith(_FEATURE_PREFIX):
            column = _feature_column(key[_FEATURE_PREFIX_LEN:])
        elif key in _DATA_KEYS:
            column = _DATA_KEYS[key]
        else:
            if key in _SPECIAL_KEYS:
                special[key] = kv.value
            continue
        raw: bytes = kv.value
        size = len(raw)
        # Hot paths, exact: a short array of doubles (one-byte length) or one double.
        if size > 2 and raw[0] == _TAG_ARRAY and raw[1] == size - 2:
            count, rest = divmod(size - 2, 11)
            if not rest and count < len(_SHORT_DOUBLE_PATTERNS):
                newline, tab, bang = _SHORT_DOUBLE_PATTERNS[count]
                if raw[2::11] == newline and raw[3::11] == tab and raw[4::11] == bang:
                    items.append((column, _DOUBLES, raw[2:], count))
                    continue
        elif size == 9 and raw[0] == _TAG_DOUBLE:
            items.append((column, _F8, raw[1:], -1))
            continue
        pending.append((column, raw))
    if semconv.MODEL_NAME not in special:
        collector.result.ignored += 1
        return
    try:
        model, version = _identity(
            _otlp_any(special[semconv.MODEL_NAME]), _otlp_any(special.get(semconv.MODEL_VERSION))
        )
        if not is_prediction:
            labels = _otlp_any(special.get(semconv.LABEL_VALUE))
            if labels is None:
                raise _RejectedSpan("missing ml.label.value")
            collector.add_label(
                model,
                version,
                _otlp_any(special.get(semconv.PREDICTION_ID)),
                tuple(labels) if isinstance(labels, list) else (labels,),
                _otlp_any(special.get(semconv.SAMPLE_INDICES)),
            )
            return
        items.extend([_otlp_item(column, raw) for column, raw in pending])
        indices_count: int | None = None
        index_array: npt.NDArray[np.int64] | None = None
        indices_raw = special.get(semconv.SAMPLE_INDICES)
        if indices_raw is not None:
            index_array = _otlp_indices(indices_raw)
            indices_count = int(index_array.shape[0])
        rate = _otlp_any(special.get(semconv.SAMPLE_RATE))
        prediction_id = _otlp_any(special.get(semconv.PREDICTION_ID))
        embedding = _embedding(
            _otlp_any(special.get(semconv.EMBEDDING_PROJECTION)),
            _otlp_doubles(special.get(semconv.EMBEDDING_VECTOR)),
            _otlp_doubles(special.get(semconv.EMBEDDING_NORM)),
        )
    except (DecodeError, otlp_wire.UnsupportedValueError) as exc:
        raise _RejectedSpan(f"undecodable attribute value: {exc}") from exc
    end_ns: int = span.end_time_unix_nano
    if not end_ns:
        raise _RejectedSpan("missing end time")
    start_ns: int = span.start_time_unix_nano
    try:
        error_type = _otlp_any(special.get(semconv.ERROR_TYPE))
    except (DecodeError, otlp_wire.UnsupportedValueError):
        error_type = None
    collector.add_prediction(
        model,
        version,
        items,
        indices_count,
        rate,
        span.trace_id.hex(),
        end_ns / 1e9,
        prediction_id,
        index_array,
        embedding,
        (end_ns - start_ns) / 1e9 if 0 < start_ns <= end_ns else math.nan,
        _error_type(error_type, span.status.code == _STATUS_CODE_ERROR),
    )


def _otlp_doubles(raw: bytes | None) -> Any:
    """An array of doubles straight from its bytes (numpy); other values decoded."""
    if raw is None:
        return None
    arr = otlp_wire.array_bytes(raw)
    if arr is not None and otlp_wire.double_array_count(arr) >= 0:
        elements = np.frombuffer(arr, dtype=np.uint8).reshape(-1, 11)
        return elements[:, 3:].copy().view("<f8").ravel()
    return _otlp_any(raw)


def _otlp_indices(raw: bytes) -> npt.NDArray[np.int64]:
    """The row indices of ``ml.sample.indices`` (fast path: small non-negative ints)."""
    arr = otlp_wire.array_bytes(raw)
    if arr is None:
        value = otlp_wire.decode_scalar(raw)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _RejectedSpan("ml.sample.indices must be integers")
        return np.array([value], dtype=np.int64)
    if otlp_wire.small_int_array_count(arr) >= 0:
        return np.frombuffer(arr, dtype=np.uint8)[3::4].astype(np.int64)
    values = otlp_wire.decode_array_slow(arr)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in values):
        raise _RejectedSpan("ml.sample.indices must be integers")
    return np.asarray(values, dtype=np.int64)


def extract_otlp(payload: bytes | bytearray | memoryview | Message) -> Extraction:
    """Columns from an OTLP ``ExportTraceServiceRequest`` (an object or its serialized bytes).

    Raises ``InvalidPayloadError`` when the bytes are not a trace request.
    """
    if isinstance(payload, Message):
        if payload.DESCRIPTOR.full_name != (
            "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
        ):
            raise InvalidPayloadError(
                f"not an ExportTraceServiceRequest: {payload.DESCRIPTOR.full_name}"
            )
        data = payload.SerializeToString()
    else:
        data = bytes(payload)
    from modeltrace.drift.otlp_fast import extract_request  # imports this module

    fast = extract_request(data)
    if fast is not None:
        return fast
    try:
        request: Any = otlp_wire.lite_request_class().FromString(data)
    except DecodeError as exc:
        raise InvalidPayloadError(f"not an OTLP trace request: {exc}") from exc
    collector = _Collector()
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                try:
                    _otlp_span(collector, span)
                except _RejectedSpan as exc:
                    collector.reject(str(exc))
    return collector.finish()


def extract(payload: Any) -> Extraction:
    """Dispatch: OTLP bytes or request, one ``ReadableSpan``, or an iterable of them."""
    if isinstance(payload, (bytes, bytearray, memoryview, Message)):
        return extract_otlp(payload)
    if isinstance(payload, ReadableSpan):
        return extract_spans([payload])
    if isinstance(payload, Iterable) and not isinstance(payload, (str, Mapping)):
        return extract_spans(payload)
    raise TypeError(
        "expected ReadableSpan(s), an ExportTraceServiceRequest or its serialized bytes, "
        f"got {type(payload).__name__}"
    )
