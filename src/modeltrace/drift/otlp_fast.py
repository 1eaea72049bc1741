"""Columnar extraction of serialized OTLP trace requests (the service's hot path).

``extract_request`` gives the same ``Extraction`` as the generic decoder of
``extract.extract_otlp`` (same rows in the same order, same counters and
reasons), but decodes spans in bulk: ``otlp_scan`` finds the spans, groups them
by layout (a ``SpanTemplate``), and each group's values, weights, trace ids and
times are read with numpy from a ``(spans, bytes)`` array, one gather per group
instead of one Python step per attribute.

Spans the templates do not cover (label spans, embeddings, unusual encodings,
spans that would be rejected) go through the generic per-span decoder, in order.
When a request cannot be split cleanly (the scanner gives up, a span does not
parse, or one model has rows from both paths), ``extract_request`` returns
``None`` and the caller decodes the whole request generically.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from modeltrace.drift import extract as ex
from modeltrace.drift import otlp_scan, otlp_slots, otlp_wire
from modeltrace.drift.call_stats import CallRecords
from modeltrace.drift.otlp_scan import Cell, SpanTemplate

__all__ = ["MAX_TEMPLATES", "extract_request"]

# Template attempts per request; spans beyond them use the generic decoder.
MAX_TEMPLATES = 64

FloatArray = npt.NDArray[np.float64]


class _Fallback(Exception):
    """Internal: decode this whole request with the generic decoder."""


@dataclass(slots=True)
class _Block:
    """The decoded spans of one template (all valid, accepted prediction spans)."""

    model: str
    version: str
    positions: npt.NDArray[np.intp]  # span numbers in the request
    rows_per_span: int
    columns: dict[str, np.ndarray]  # name -> (spans * rows_per_span,) float64 or object
    weights: FloatArray  # per span
    times: FloatArray  # per span
    trace_ids: list[str]
    prediction_ids: list[str]
    indices: npt.NDArray[np.int64] | None  # (spans, rows_per_span)
    durations: FloatArray  # per span, NaN when unknown
    error_type: str  # the same for every span of a template


_LITE_SPAN: type[Message] | None = None


def _lite_span_class() -> type[Message]:
    global _LITE_SPAN
    if _LITE_SPAN is None:
        request = otlp_wire.lite_request_class().DESCRIPTOR
        scope = request.fields_by_name["resource_spans"].message_type.fields_by_name["scope_spans"]
        span = scope.message_type.fields_by_name["spans"].message_type
        _LITE_SPAN = message_factory.GetMessageClass(span)
    return _LITE_SPAN


# --- decoding one template's spans -------------------------------------------------


def _decode_constant(raw: bytes | None) -> Any:
    try:
        return ex._otlp_any(raw)
    except (DecodeError, otlp_wire.UnsupportedValueError) as exc:
        raise _Fallback from exc


def _numbers(rows: np.ndarray, cells: list[Cell]) -> FloatArray:
    """``(spans, len(cells))`` float values of numeric cells (NaN for empty/string cells)."""
    out = np.full((rows.shape[0], len(cells)), math.nan)
    doubles = [i for i, c in enumerate(cells) if c.kind == otlp_scan.CELL_DOUBLE]
    if doubles:
        out[:, doubles] = otlp_scan.decode_doubles(rows, [cells[i].offset for i in doubles])
    varints = [
        i for i, c in enumerate(cells) if c.kind in (otlp_scan.CELL_INT, otlp_scan.CELL_BOOL)
    ]
    if varints:
        values = otlp_scan.decode_varints(rows, [cells[i] for i in varints])
        for j, i in enumerate(varints):
            if cells[i].kind == otlp_scan.CELL_BOOL:
                out[:, i] = values[:, j] != 0
            else:
                out[:, i] = values[:, j].astype(np.float64)
    return out


def _strings(rows: np.ndarray, cell: Cell, valid: npt.NDArray[np.bool_]) -> list[str]:
    """The string of ``cell`` in every span; spans whose bytes are not UTF-8 are
    marked invalid (the generic decoder rejects them)."""
    raw = np.ascontiguousarray(rows[:, cell.offset : cell.offset + cell.length])
    if cell.length == 0:
        return [""] * rows.shape[0]
    if int(raw.max(initial=0)) < 0x80:
        text = raw.tobytes().decode("ascii")
        size = cell.length
        return [text[i : i + size] for i in range(0, len(text), size)]
    out = []
    for i, chunk in enumerate(raw):
        try:
            out.append(chunk.tobytes().decode("utf-8"))
        except UnicodeDecodeError:
            out.append("")
            valid[i] = False
    return out


def _text_column(
    rows: np.ndarray,
    cells: list[Cell],
    numbers: FloatArray,
    valid: npt.NDArray[np.bool_],
) -> np.ndarray:
    """An object column (spans * cells,): str, float or None, as the generic decoder."""
    m, k = rows.shape[0], len(cells)
    out = np.empty(m * k, dtype=object)
    for j, cell in enumerate(cells):
        if cell.kind == otlp_scan.CELL_STRING:
            values: list[Any] = [s or None for s in _strings(rows, cell, valid)]
        elif cell.kind == otlp_scan.CELL_EMPTY:
            values = [None] * m
        else:
            values = [None if math.isnan(v) else v for v in numbers[:, j].tolist()]
        out[j::k] = values
    return out


def _decode_block(
    template: SpanTemplate, positions: npt.NDArray[np.intp], rows: np.ndarray
) -> tuple[_Block, npt.NDArray[np.intp]]:
    """The valid spans of a template group as a block, and the positions of the
    others (left to the generic decoder, which rejects them)."""
    m = rows.shape[0]
    model, version = ex._identity(
        _decode_constant(template.model_raw), _decode_constant(template.version_raw)
    )
    index_cells = template.indices
    dummy = [(c.name, 0, None, -1 if c.scalar else len(c.cells)) for c in template.columns]
    n = ex._row_count(dummy, None if index_cells is None else len(index_cells))
    if n == 0 or template.end_time is None:
        raise _Fallback
    valid = np.ones(m, dtype=bool)
    offset = template.end_time
    end_ns = otlp_scan.decode_fixed64(rows, offset)
    valid &= end_ns != 0
    times = end_ns.astype(np.float64) / 1e9
    durations = np.full(m, math.nan)
    if template.start_time is not None:
        offset = template.start_time
        start_ns = otlp_scan.decode_fixed64(rows, offset)
        timed = (start_ns > 0) & (start_ns <= end_ns)
        durations[timed] = (end_ns[timed] - start_ns[timed]).astype(np.float64) / 1e9
    try:
        error_value = ex._otlp_any(template.error_type_raw)
    except (DecodeError, otlp_wire.UnsupportedValueError):
        error_value = None
    error_type = ex._error_type(error_value, template.status_code == ex._STATUS_CODE_ERROR)
    rate = template.rate
    if isinstance(rate, Cell):
        rates = otlp_scan.decode_doubles(rows, [rate.offset])[:, 0]
        valid &= (rates > 0.0) & (rates <= 1.0)
        with np.errstate(divide="ignore"):
            weights = 1.0 / rates
    else:
        weights = np.full(m, ex._weight(_decode_constant(rate)))
    pid = template.prediction_id
    if isinstance(pid, Cell):
        prediction_ids = _strings(rows, pid, valid)
    else:
        constant = _decode_constant(pid)
        prediction_ids = [constant if isinstance(constant, str) else ""] * m
    indices = None
    if index_cells is not None:
        indices = otlp_scan.decode_varints(rows, index_cells).astype(np.int64)
    if template.trace_id is None:
        trace_ids = [""] * m
    else:
        start, size = template.trace_id
        hexed = np.ascontiguousarray(rows[:, start : start + size]).tobytes().hex()
        width = 2 * size
        trace_ids = (
            [hexed[i : i + width] for i in range(0, len(hexed), width)] if size else [""] * m
        )
    columns: dict[str, np.ndarray] = {}
    numbers = _numbers(rows, [cell for layout in template.columns for cell in layout.cells])
    first = 0
    for layout in template.columns:
        cells = numbers[:, first : first + len(layout.cells)]
        first += len(layout.cells)
        if layout.text:
            columns[layout.name] = _text_column(rows, layout.cells, cells, valid)
        else:
            columns[layout.name] = cells.reshape(-1)
    rejected = positions[~valid]
    if not valid.all():
        keep = np.flatnonzero(valid)
        row_keep = (keep[:, None] * n + np.arange(n)).ravel()
        columns = {name: values[row_keep] for name, values in columns.items()}
        positions = positions[keep]
        weights, times, durations = weights[keep], times[keep], durations[keep]
        trace_ids = [trace_ids[i] for i in keep.tolist()]
        prediction_ids = [prediction_ids[i] for i in keep.tolist()]
        indices = None if indices is None else indices[keep]
    block = _Block(
        model=model,
        version=version,
        positions=positions,
        rows_per_span=n,
        columns=columns,
        weights=weights,
        times=times,
        trace_ids=trace_ids,
        prediction_ids=prediction_ids,
        indices=indices,
        durations=durations,
        error_type=error_type,
    )
    return block, rejected


# --- assembling a model's rows -----------------------------------------------------


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _as_object(values: np.ndarray) -> np.ndarray:
    """A numeric column as the generic decoder's text column (floats, None for NaN)."""
    if values.dtype == object:
        return values
    return _object_array([None if math.isnan(v) else v for v in values.tolist()])


def _model_rows(blocks: list[_Block]) -> ex.ModelRows:
    """One (model, version)'s blocks as ``ModelRows``, rows in span order."""
    blocks = sorted(blocks, key=lambda b: int(b.positions[0]))
    names: dict[str, bool] = {}  # column -> text, in order of first appearance
    for block in blocks:
        for name, values in block.columns.items():
            names[name] = names.get(name, False) or values.dtype == object
    counts = [int(b.positions.size) * b.rows_per_span for b in blocks]
    columns: dict[str, np.ndarray] = {}
    for name, text in names.items():
        parts = []
        for block, count in zip(blocks, counts, strict=True):
            column = block.columns.get(name)
            if column is None:
                column = np.full(count, None if text else math.nan, dtype=object if text else None)
            parts.append(_as_object(column) if text else column)
        columns[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    rows_per_span = np.concatenate(
        [np.full(b.positions.size, b.rows_per_span, dtype=np.intp) for b in blocks]
    )
    positions = np.concatenate([b.positions for b in blocks])
    weights = np.concatenate([b.weights for b in blocks])
    times = np.concatenate([b.times for b in blocks])
    durations = np.concatenate([b.durations for b in blocks])
    errors = _object_array([b.error_type for b in blocks for _ in range(b.positions.size)])
    trace_ids = _object_array([t for b in blocks for t in b.trace_ids])
    prediction_ids = _object_array([p for b in blocks for p in b.prediction_ids])
    row_indices = np.concatenate(
        [
            (
                b.indices.reshape(-1)
                if b.indices is not None
                else np.tile(np.arange(b.rows_per_span, dtype=np.int64), b.positions.size)
            )
            for b in blocks
        ]
    )
    if len(blocks) > 1 and bool(np.any(np.diff(positions) < 0)):
        order = np.argsort(positions, kind="stable")
        span_starts = np.cumsum(rows_per_span) - rows_per_span
        row_order = ex._expand_ranges(span_starts[order].tolist(), rows_per_span[order].tolist())
        columns = {name: values[row_order] for name, values in columns.items()}
        row_indices = row_indices[row_order]
        rows_per_span = rows_per_span[order]
        weights, times, durations, errors = (
            weights[order],
            times[order],
            durations[order],
            errors[order],
        )
        trace_ids, prediction_ids = trace_ids[order], prediction_ids[order]
    return ex.ModelRows(
        model=blocks[0].model,
        version=blocks[0].version,
        columns=columns,
        weights=np.repeat(weights, rows_per_span),
        trace_ids=np.repeat(trace_ids, rows_per_span),
        timestamps=np.repeat(times, rows_per_span),
        spans=int(positions.size),
        prediction_ids=np.repeat(prediction_ids, rows_per_span),
        row_indices=row_indices,
        calls=CallRecords(ends=times, durations=durations, errors=errors, trace_ids=trace_ids),
    )


# --- the request -------------------------------------------------------------------


class _TemplateCache:
    """Recently used templates by span length (bounded), so that steady traffic
    skips building them: a template is reused only where its bytes match."""

    def __init__(self, lengths: int = 256, per_length: int = 4) -> None:
        self._lengths = lengths
        self._per_length = per_length
        self._templates: OrderedDict[int, list[SpanTemplate]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, length: int) -> list[SpanTemplate]:
        with self._lock:
            found = self._templates.get(length)
            if found is None:
                return []
            self._templates.move_to_end(length)
            return list(found)

    def add(self, template: SpanTemplate) -> None:
        with self._lock:
            found = self._templates.setdefault(template.length, [])
            self._templates.move_to_end(template.length)
            found.insert(0, template)
            del found[self._per_length :]
            while len(self._templates) > self._lengths:
                self._templates.popitem(last=False)


_CACHE = _TemplateCache()


class _Grouping:
    """The spans of one length, assigned to templates as they match."""

    def __init__(self, positions: npt.NDArray[np.intp], rows: np.ndarray) -> None:
        self.positions = positions
        self.rows = rows
        self.left = np.arange(positions.size)  # row numbers not assigned yet

    def take(self, template: SpanTemplate) -> tuple[npt.NDArray[np.intp], np.ndarray] | None:
        """Assign the rows matching ``template``: their positions and bytes (None if none)."""
        whole = self.left.size == self.positions.size  # no copy while every span is left
        candidates = self.rows if whole else self.rows[self.left]
        hit = otlp_scan.match(template, candidates)
        if bool(hit.all()):
            chosen, self.left = self.left, self.left[:0]
            return self.positions[chosen], candidates
        if not hit.any():
            return None
        chosen, self.left = self.left[hit], self.left[~hit]
        return self.positions[chosen], candidates[hit]


def _templates(
    data: bytes, ranges: list[tuple[int, int]], taken: set[int] | None = None
) -> tuple[list[tuple[SpanTemplate, npt.NDArray[np.intp], np.ndarray]], list[int], int]:
    """Group the spans by template: (template, positions, rows) per prediction
    group, the positions left to the generic decoder, and the ignored span count
    (spans in ``taken`` are left out: the slotted templates have them)."""
    by_length: dict[int, list[int]] = {}
    for position, (start, end) in enumerate(ranges):
        if not taken or position not in taken:
            by_length.setdefault(end - start, []).append(position)
    groups = []
    generic: list[int] = []
    ignored = 0
    attempts = 0

    def assign(template: SpanTemplate, found: tuple[npt.NDArray[np.intp], np.ndarray]) -> None:
        nonlocal ignored
        if template.ignored:
            ignored += int(found[0].size)
        else:
            groups.append((template, *found))

    for length, members in by_length.items():
        grouping = _Grouping(
            np.asarray(members, dtype=np.intp),
            otlp_scan.stack_spans(data, [ranges[p] for p in members], length),
        )
        for template in _CACHE.get(length):
            found = grouping.take(template)
            if found is not None:
                assign(template, found)
            if not grouping.left.size:
                break
        while grouping.left.size:
            if attempts >= MAX_TEMPLATES:
                generic.extend(grouping.positions[grouping.left].tolist())
                break
            attempts += 1
            first = int(grouping.positions[grouping.left[0]])
            built = otlp_scan.build_template(data, *ranges[first])
            found = grouping.take(built) if built is not None else None
            if built is None or found is None or int(found[0][0]) != first:
                # Not a simple span (or, defensively, a template missing its own span).
                generic.append(first)
                grouping.left = grouping.left[grouping.positions[grouping.left] != first]
                if found is not None and built is not None:
                    assign(built, found)
                continue
            _CACHE.add(built)
            assign(built, found)
    return groups, generic, ignored


def _check_headers(data: bytes, headers: list[tuple[int, int, int, int, int]]) -> None:
    """Validate what the span decoders skip: each ``Resource``, ``InstrumentationScope``
    and ``schema_url`` (full protobuf parse / UTF-8 check, a few hundred bytes each);
    ``_Fallback`` when one is malformed, so the caller's full parse reports it."""
    for _, scope, number, start, end in headers:
        try:
            if number == 1:
                (Resource if scope < 0 else InstrumentationScope).FromString(data[start:end])
            elif number == 3:
                data[start:end].decode("utf-8")
        except (DecodeError, UnicodeDecodeError) as exc:
            raise _Fallback from exc


def _slot_blocks(
    data: bytes, ranges: list[tuple[int, int]], generic: list[int]
) -> tuple[list[_Block], set[int]]:
    """Blocks of the spans matching slotted templates (text features, see
    ``otlp_slots``), and every position those templates took; the positions of
    spans they reject are appended to ``generic``."""

    def plain(position: int) -> bool:
        start, end = ranges[position]
        known = _CACHE.get(end - start)
        if not known:
            return False
        row = otlp_scan.stack_spans(data, [ranges[position]], end - start)
        return any(bool(otlp_scan.match(template, row)[0]) for template in known)

    blocks: list[_Block] = []
    taken: set[int] = set()
    for found in otlp_slots.group(data, ranges, plain, _CACHE.add):
        taken.update(found.positions.tolist())
        try:
            block, others = otlp_slots.decode(found, _decode_block)
        except (ex._RejectedSpan, _Fallback):
            generic.extend(found.positions.tolist())
            continue
        generic.extend(others.tolist())
        if block.positions.size:
            blocks.append(block)
    return blocks, taken


def _run(data: bytes) -> ex.Extraction:
    layout = otlp_scan.request_layout(data)
    if layout is None:
        raise _Fallback
    if layout.headers:
        _check_headers(data, layout.headers)
    ranges = layout.spans
    slot_generic: list[int] = []
    blocks, taken = _slot_blocks(data, ranges, slot_generic)
    groups, generic, ignored = _templates(data, ranges, taken)
    generic.extend(slot_generic)
    for template, positions, rows in groups:
        try:
            block, others = _decode_block(template, positions, rows)
        except (ex._RejectedSpan, _Fallback):
            generic.extend(positions.tolist())
            continue
        generic.extend(others.tolist())
        if block.positions.size:
            blocks.append(block)
    collector = ex._Collector()
    collector.result.ignored = ignored
    first_seen: dict[tuple[str, str], int] = {}
    span_class = _lite_span_class()
    for position in sorted(generic):
        start, end = ranges[position]
        try:
            span: Any = span_class.FromString(data[start:end])
        except DecodeError as exc:
            raise _Fallback from exc
        known = len(collector.models)
        try:
            ex._otlp_span(collector, span)
        except ex._RejectedSpan as exc:
            collector.reject(str(exc))
        if len(collector.models) > known:
            first_seen[next(reversed(collector.models))] = position
    by_key: dict[tuple[str, str], list[_Block]] = {}
    for block in blocks:
        key = (block.model, block.version)
        if key in collector.models:
            raise _Fallback  # rows of one model from both paths: keep the generic order
        by_key.setdefault(key, []).append(block)
        first = int(block.positions[0])
        first_seen[key] = min(first_seen.get(key, first), first)
    result = collector.finish()
    slow_batches = result.batches
    result.batches = {}
    for key in sorted(first_seen, key=first_seen.__getitem__):
        if key in by_key:
            rows_of_key = _model_rows(by_key[key])
            result.batches[key] = rows_of_key
            result.accepted += rows_of_key.spans
        else:
            result.batches[key] = slow_batches[key]
    return result


def extract_request(data: bytes) -> ex.Extraction | None:
    """The ``Extraction`` of a serialized request, or ``None`` to decode it generically."""
    try:
        return _run(data)
    except _Fallback:
        return None
