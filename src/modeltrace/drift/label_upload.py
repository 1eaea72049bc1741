"""Bulk label uploads: validation of JSON/CSV bodies and their encoding as label spans.

``POST /api/v1/models/{model}/versions/{version}/labels`` takes either

* JSON: ``{"labels": [{"prediction_id": "...", "row": 0, "label": 1}, ...]}``
  (``row``, the row index in the prediction call's batch, defaults to 0), or
* CSV: a header naming ``prediction_id``, ``label`` and optionally ``row``, then
  one label per line (numeric-looking labels become numbers, as in JSON).

Errors name the entry (``labels[3].row``) or the line (``line 5: row``). Valid
labels are encoded as an OTLP trace request of ``label {model}`` spans, one per
prediction id, whose ``ml.sample.indices`` name the rows ``ml.label.value``
holds: the aggregator then commits the upload to its inbox and replays it after
a crash exactly like exported label spans.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from modeltrace import semconv
from modeltrace.drift.labels import MAX_LABEL_ROW

__all__ = [
    "MAX_LABELS_PER_UPLOAD",
    "LabelEntry",
    "LabelUploadError",
    "TooManyLabelsError",
    "labels_request",
    "parse_csv_labels",
    "parse_json_labels",
]

MAX_LABELS_PER_UPLOAD = 100_000
MAX_PREDICTION_ID_LENGTH = 256
MAX_LABEL_TEXT_LENGTH = 256


class LabelUploadError(ValueError):
    """The upload is malformed; the message names the entry or line and the field."""


class TooManyLabelsError(LabelUploadError):
    """More labels than one upload may carry."""


@dataclass(frozen=True, slots=True)
class LabelEntry:
    """One uploaded label: the prediction call, the row in its batch, the label."""

    prediction_id: str
    row: int
    label: float | str | bool


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LabelUploadError(f"{where}: prediction_id must be a non-empty string")
    if len(value) > MAX_PREDICTION_ID_LENGTH:
        raise LabelUploadError(
            f"{where}: prediction_id is longer than {MAX_PREDICTION_ID_LENGTH} characters"
        )
    return value.strip()


def _check_row(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabelUploadError(f"{where}: row must be an integer, got {value!r}")
    if not 0 <= value <= MAX_LABEL_ROW:
        raise LabelUploadError(f"{where}: row must be in 0..{MAX_LABEL_ROW}, got {value}")
    return value


def _check_label(value: Any, where: str) -> float | str | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise LabelUploadError(f"{where}: label must be a finite number")
        return float(value)
    if isinstance(value, str):
        if not value:
            raise LabelUploadError(f"{where}: label must not be empty")
        if len(value) > MAX_LABEL_TEXT_LENGTH:
            raise LabelUploadError(
                f"{where}: label is longer than {MAX_LABEL_TEXT_LENGTH} characters"
            )
        return value
    raise LabelUploadError(
        f"{where}: label must be a number, a string or a boolean, got {type(value).__name__}"
    )


def _check_count(n: int) -> None:
    if n > MAX_LABELS_PER_UPLOAD:
        raise TooManyLabelsError(
            f"the upload holds more than {MAX_LABELS_PER_UPLOAD} labels; split it"
        )


def parse_json_labels(body: bytes) -> list[LabelEntry]:
    """``{"labels": [{"prediction_id", "row"?, "label"}, ...]}`` -> entries."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelUploadError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or "labels" not in document:
        raise LabelUploadError('the body must be an object with a "labels" array')
    items = document["labels"]
    if not isinstance(items, list):
        raise LabelUploadError('"labels" must be an array')
    _check_count(len(items))
    entries = []
    for i, item in enumerate(items):
        where = f"labels[{i}]"
        if not isinstance(item, dict):
            raise LabelUploadError(f"{where}: must be an object")
        unknown = sorted(set(item) - {"prediction_id", "row", "label"})
        if unknown:
            raise LabelUploadError(f"{where}: unknown field(s) {', '.join(unknown)}")
        if "prediction_id" not in item:
            raise LabelUploadError(f"{where}: prediction_id is missing")
        if "label" not in item or item["label"] is None:
            raise LabelUploadError(f"{where}: label is missing")
        entries.append(
            LabelEntry(
                _check_id(item["prediction_id"], where),
                _check_row(item.get("row", 0), where),
                _check_label(item["label"], where),
            )
        )
    return entries


def _csv_label(text: str) -> float | str:
    stripped = text.strip()
    try:
        number = float(stripped)
    except ValueError:
        return stripped
    return number if math.isfinite(number) else stripped


def parse_csv_labels(body: bytes) -> list[LabelEntry]:
    """CSV with a ``prediction_id,[row,]label`` header (any column order) -> entries."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelUploadError(f"the CSV is not UTF-8: {exc}") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise LabelUploadError("the CSV is empty: expected a header prediction_id,[row,]label")
        names = [h.strip().lower() for h in header]
        for required in ("prediction_id", "label"):
            if required not in names:
                raise LabelUploadError(f"line 1: the header has no {required} column")
        unknown = sorted(set(names) - {"prediction_id", "row", "label"})
        if unknown or len(set(names)) != len(names):
            raise LabelUploadError(
                "line 1: the header must name prediction_id, label and optionally row, once each"
            )
        id_at, label_at = names.index("prediction_id"), names.index("label")
        row_at = names.index("row") if "row" in names else None
        entries = []
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            where = f"line {line}"
            if len(cells) != len(names):
                raise LabelUploadError(f"{where}: expected {len(names)} fields, got {len(cells)}")
            row = 0
            if row_at is not None:
                try:
                    row = int(cells[row_at].strip())
                except ValueError:
                    raise LabelUploadError(
                        f"{where}: row must be an integer, got {cells[row_at]!r}"
                    ) from None
            entries.append(
                LabelEntry(
                    _check_id(cells[id_at], where),
                    _check_row(row, where),
                    _check_label(_csv_label(cells[label_at]), where),
                )
            )
            _check_count(len(entries))
    except csv.Error as exc:
        raise LabelUploadError(f"line {reader.line_num}: malformed CSV: {exc}") from exc
    return entries


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def _array(values: Sequence[Any]) -> AnyValue:
    out = AnyValue()
    out.array_value.values.extend(_any(v) for v in values)
    return out


def labels_request(model: str, version: str, entries: Sequence[LabelEntry]) -> bytes:
    """The entries as a serialized OTLP ``ExportTraceServiceRequest`` of label spans."""
    by_id: dict[str, list[LabelEntry]] = {}
    for entry in entries:
        by_id.setdefault(entry.prediction_id, []).append(entry)
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    scope_spans.scope.name = semconv.SCOPE
    for prediction_id, group in by_id.items():
        span = scope_spans.spans.add()
        span.trace_id = os.urandom(16)
        span.span_id = os.urandom(8)
        span.name = semconv.LABEL_SPAN_PREFIX + model
        span.kind = 1  # SPAN_KIND_INTERNAL
        # Upload order is kept (a repeated row is a duplicate: the last one wins).
        span.attributes.extend(
            [
                KeyValue(key=semconv.MODEL_NAME, value=_any(model)),
                KeyValue(key=semconv.MODEL_VERSION, value=_any(version)),
                KeyValue(key=semconv.PREDICTION_ID, value=_any(prediction_id)),
                KeyValue(key=semconv.SAMPLE_INDICES, value=_array([e.row for e in group])),
                KeyValue(key=semconv.LABEL_VALUE, value=_array([e.label for e in group])),
            ]
        )
    return request.SerializeToString()
