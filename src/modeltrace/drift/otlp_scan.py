"""Wire-level scanning of OTLP trace requests: span boundaries and span templates.

``span_ranges`` walks the bytes of an ``ExportTraceServiceRequest`` down to its
spans (resource_spans -> scope_spans -> spans) with a small varint reader and
returns where each span's bytes are. ``build_template`` parses one span and
describes its layout as a ``SpanTemplate``: a byte mask saying which bytes are
structure (tags, lengths, attribute keys, span name, model name...) and which are
payload (doubles, varints of a pinned length, trace id, end time, strings of a
fixed length). Two spans of the same length whose structural bytes are equal and
whose varints have the same lengths parse into the same fields at the same
offsets, so every span matching a template (``match``) can be decoded column-wise
with numpy (``decode_doubles``, ``decode_varints``) instead of one attribute at
a time.

The scanner is deliberately strict: anything unusual (groups, duplicate fields,
non-canonical ``AnyValue`` layouts, 10-byte varints, embeddings, label spans)
makes it give up (``None``), and the caller falls back to the generic decoder, so
correctness never depends on this fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from modeltrace import semconv

__all__ = [
    "CELL_BOOL",
    "CELL_DOUBLE",
    "CELL_EMPTY",
    "CELL_INT",
    "CELL_STRING",
    "Cell",
    "ColumnLayout",
    "RequestLayout",
    "SpanTemplate",
    "build_template",
    "decode_doubles",
    "decode_fixed64",
    "decode_varints",
    "match",
    "request_layout",
    "span_ranges",
    "stack_spans",
]

CELL_EMPTY = 0  # an AnyValue without a value: missing
CELL_DOUBLE = 1  # 8 payload bytes
CELL_INT = 2  # varint payload of a pinned length
CELL_BOOL = 3  # varint payload of a pinned length, nonzero = True
CELL_STRING = 4  # UTF-8 payload of a fixed length

_STRUCTURE = 0xFF  # byte must equal the template's
_VARINT = 0x80  # only the continuation bit must equal (pins the varint's length)
_FREE = 0x00  # any byte

_MAX_VARINT = 9  # longer varints (negative ints) are left to the generic decoder

_FEATURE_PREFIX = semconv.FEATURE_PREFIX
_DATA_KEYS = {
    semconv.PREDICTION_VALUE: semconv.PREDICTION_FEATURE,
    semconv.PREDICTION_SCORE: "__prediction_score__",
}
_RESERVED_COLUMNS = frozenset(_DATA_KEYS.values())
# Attributes kept as structure (equal in every span of a template).
_IDENTITY_KEYS = frozenset({semconv.MODEL_NAME, semconv.MODEL_VERSION, semconv.ERROR_TYPE})
# Attributes whose spans the generic decoder handles (embeddings, labels).
_GENERIC_ONLY_KEYS = frozenset(
    {
        semconv.LABEL_VALUE,
        semconv.EMBEDDING_PROJECTION,
        semconv.EMBEDDING_VECTOR,
        semconv.EMBEDDING_NORM,
    }
)

Bytes = bytes | bytearray | memoryview
UInt8Array = npt.NDArray[np.uint8]
_NO_WORDS: npt.NDArray[np.uint64] = np.zeros(0, dtype=np.uint64)


class _GiveUp(Exception):
    """Internal: this span is not for the fast path."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One value in a span: its kind and where its payload is (offset from the span start)."""

    kind: int
    offset: int = 0
    length: int = 0


@dataclass(slots=True)
class ColumnLayout:
    """One captured column of a prediction span template."""

    name: str
    cells: list[Cell]
    scalar: bool  # a scalar attribute (count -1) rather than an array
    hot: bool  # the generic decoder's hot path (it orders these columns first)
    text: bool  # the column holds text (an object column)


@dataclass(slots=True)
class SpanTemplate:
    """The layout shared by every span that matches it (see module doc)."""

    length: int
    words: int
    mask: npt.NDArray[np.uint64]
    expected: npt.NDArray[np.uint64]
    ignored: bool = False  # not a prediction or label span: only counted
    name: str = ""
    model_raw: bytes = b""
    version_raw: bytes | None = None
    columns: list[ColumnLayout] = field(default_factory=list)
    trace_id: tuple[int, int] | None = None  # (offset, length)
    end_time: int | None = None  # offset of the fixed64
    start_time: int | None = None  # offset of the fixed64
    status_code: int = 0  # Status.code (structure: equal in every matching span)
    error_type_raw: bytes | None = None  # raw AnyValue of error.type
    rate: Cell | bytes | None = None  # a double cell, or the raw AnyValue of another type
    prediction_id: Cell | bytes | None = None  # a string cell, or the raw AnyValue
    indices: list[Cell] | None = None


def _varint(data: Bytes, pos: int, end: int) -> tuple[int, int]:
    """A varint at ``pos`` (at most 9 bytes here); ``_GiveUp`` otherwise."""
    result = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 7 * _MAX_VARINT:
            break
    raise _GiveUp


def _skip(data: Bytes, wire_type: int, pos: int, end: int) -> int:
    """The end of a field's payload (wire types 0, 1, 2, 5); ``_GiveUp`` on anything else."""
    if wire_type == 0:
        return _varint(data, pos, end)[1]
    if wire_type == 2:
        length, pos = _varint(data, pos, end)
        stop = pos + length
    elif wire_type == 1:
        stop = pos + 8
    elif wire_type == 5:
        stop = pos + 4
    else:
        raise _GiveUp
    if stop > end:
        raise _GiveUp
    return stop


def _children(
    data: Bytes,
    start: int,
    end: int,
    wanted: int,
    out: list[tuple[int, int]],
    others: list[tuple[int, int, int]] | None = None,
) -> None:
    """Append (start, end) of each length-delimited field ``wanted`` in a message;
    with ``others``, also (field number, start, end) of every other length-delimited
    field (the payloads the caller still has to validate)."""
    wanted_tag = (wanted << 3) | 2  # one byte for the field numbers used here
    pos = start
    while pos < end:
        if data[pos] == wanted_tag and pos + 1 < end:
            length = data[pos + 1]
            if length < 0x80:
                pos += 2
            else:
                length, pos = _varint(data, pos + 1, end)
            stop = pos + length
            if stop > end:
                raise _GiveUp
            out.append((pos, stop))
            pos = stop
            continue
        tag, pos = _varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0 or number == wanted:  # the wanted field with another wire type
            raise _GiveUp
        if wire_type == 2 and others is not None:
            length, pos = _varint(data, pos, end)
            stop = pos + length
            if stop > end:
                raise _GiveUp
            others.append((number, pos, stop))
            pos = stop
            continue
        pos = _skip(data, wire_type, pos, end)


@dataclass(slots=True)
class RequestLayout:
    """Where the blocks of a serialized request are: its spans, and the
    length-delimited fields next to them that the span decoders never read
    (``ResourceSpans.resource``/``schema_url``, ``ScopeSpans.scope``/``schema_url``
    and unknown ones) as (resource_spans index, scope_spans index or -1, field
    number, start, end), so that the caller can validate them."""

    spans: list[tuple[int, int]]
    headers: list[tuple[int, int, int, int, int]]


def request_layout(data: Bytes) -> RequestLayout | None:
    """The ``RequestLayout`` of a serialized request; ``None`` when it has anything
    the scanner does not handle (see ``span_ranges``)."""
    try:
        resources: list[tuple[int, int]] = []
        _children(data, 0, len(data), 1, resources)
        headers: list[tuple[int, int, int, int, int]] = []
        others: list[tuple[int, int, int]] = []
        scopes: list[tuple[int, int]] = []
        owners: list[int] = []  # resource_spans index of each scope_spans
        for r, (start, end) in enumerate(resources):
            _children(data, start, end, 2, scopes, others)
            if others:
                headers.extend((r, -1, *other) for other in others)
                others.clear()
            owners.extend([r] * (len(scopes) - len(owners)))
        spans: list[tuple[int, int]] = []
        counts = dict.fromkeys(range(len(resources)), 0)
        for (start, end), r in zip(scopes, owners, strict=True):
            _children(data, start, end, 2, spans, others)
            if others:
                headers.extend((r, counts[r], *other) for other in others)
                others.clear()
            counts[r] += 1
    except _GiveUp:
        return None
    return RequestLayout(spans, headers)


def span_ranges(data: Bytes) -> list[tuple[int, int]] | None:
    """(start, end) of every span of a serialized request, in order; ``None`` when
    the request has anything the scanner does not handle (the caller then uses the
    generic decoder, which also reports malformed input)."""
    layout = request_layout(data)
    return None if layout is None else layout.spans


# --- templates ------------------------------------------------------------------


class _Builder:
    """Parses one span into a template; ``_GiveUp`` when it is not a simple one."""

    def __init__(self, data: Bytes, start: int, end: int) -> None:
        self.data = data
        self.start = start
        self.end = end
        self.mask = bytearray(b"\xff" * (end - start))

    def mark(self, start: int, stop: int, value: int) -> None:
        self.mask[start - self.start : stop - self.start] = bytes([value]) * (stop - start)

    def varint_payload(self, pos: int, end: int) -> int:
        stop = _varint(self.data, pos, end)[1]
        self.mark(pos, stop, _VARINT)
        return stop

    def build(self) -> SpanTemplate:
        data, end = self.data, self.end
        pos = self.start
        name: str | None = None
        trace_id: tuple[int, int] | None = None
        times: dict[int, int] = {}  # field number (7 start, 8 end) -> offset
        status_code: int | None = None
        attributes: list[tuple[str, int, int]] = []  # key, value start, value end
        while pos < end:
            tag, pos = _varint(data, pos, end)
            number, wire_type = tag >> 3, tag & 7
            if number == 0:
                raise _GiveUp
            declared = number in (1, 5, 7, 8, 9, 15)
            if wire_type == 0:
                if declared:
                    raise _GiveUp
                pos = self.varint_payload(pos, end)
            elif wire_type in (1, 5):
                stop = pos + (8 if wire_type == 1 else 4)
                if stop > end or (declared and wire_type == 5) or number in (1, 5, 9, 15):
                    raise _GiveUp
                if number in (7, 8):
                    if number in times:
                        raise _GiveUp
                    times[number] = pos - self.start
                self.mark(pos, stop, _FREE)
                pos = stop
            elif wire_type == 2:
                length, pos = _varint(data, pos, end)
                stop = pos + length
                if stop > end or number in (7, 8):
                    raise _GiveUp
                if number == 5:
                    if name is not None:
                        raise _GiveUp
                    name = _utf8(data[pos:stop])
                elif number == 9:
                    attributes.append(self.key_value(pos, stop))
                elif number == 15:
                    if status_code is not None:
                        raise _GiveUp
                    status_code = self.status(pos, stop)
                elif number == 1:
                    if trace_id is not None:
                        raise _GiveUp
                    trace_id = (pos - self.start, length)
                    self.mark(pos, stop, _FREE)
                else:
                    self.mark(pos, stop, _FREE)
                pos = stop
            else:
                raise _GiveUp
        name = name or ""
        template = SpanTemplate(length=0, words=0, mask=_NO_WORDS, expected=_NO_WORDS, name=name)
        if not name.startswith(semconv.PREDICT_SPAN_PREFIX):
            if name.startswith(semconv.LABEL_SPAN_PREFIX):
                raise _GiveUp
            for _, value_start, value_end in attributes:
                self.mark(value_start, value_end, _FREE)
            template.ignored = True
        else:
            template.trace_id = trace_id
            template.end_time = times.get(8)
            template.start_time = times.get(7)
            template.status_code = status_code or 0
            self.prediction(template, attributes)
        self.seal(template)
        return template

    def seal(self, template: SpanTemplate) -> None:
        """Set the template's length and byte mask (once every value is marked)."""
        length = self.end - self.start
        words = (length + 7) // 8
        padding = bytes(words * 8 - length)
        mask = np.frombuffer(bytes(self.mask) + padding, dtype=np.uint64)
        raw = np.frombuffer(bytes(self.data[self.start : self.end]) + padding, dtype=np.uint64)
        template.length, template.words = length, words
        template.mask, template.expected = mask, raw & mask

    def status(self, start: int, end: int) -> int:
        """A ``Status`` message: its code stays structure, anything else is free."""
        data = self.data
        code: int | None = None
        pos = start
        while pos < end:
            tag, pos = _varint(data, pos, end)
            number, wire_type = tag >> 3, tag & 7
            if number == 0:
                raise _GiveUp
            if number == 3:
                if wire_type != 0 or code is not None:
                    raise _GiveUp
                code, pos = _varint(data, pos, end)
                continue
            stop = _skip(data, wire_type, pos, end)
            if wire_type == 0:
                self.mark(pos, stop, _VARINT)
            elif wire_type == 2:
                self.mark(_varint(data, pos, end)[1], stop, _FREE)
            else:
                self.mark(pos, stop, _FREE)
            pos = stop
        return (code or 0) & 0xFFFFFFFF  # an int32 on the wire: its low 32 bits

    def key_value(self, start: int, end: int) -> tuple[str, int, int]:
        data = self.data
        if start >= end or data[start] != 0x0A:
            raise _GiveUp
        length, pos = _varint(data, start + 1, end)
        stop = pos + length
        if stop > end:
            raise _GiveUp
        key = _utf8(data[pos:stop])
        if stop == end:
            return key, end, end
        if data[stop] != 0x12:
            raise _GiveUp
        length, pos = _varint(data, stop + 1, end)
        if pos + length != end:
            raise _GiveUp
        return key, pos, end

    def prediction(self, template: SpanTemplate, attributes: list[tuple[str, int, int]]) -> None:
        seen: set[str] = set()
        hot: list[ColumnLayout] = []
        pending: list[ColumnLayout] = []
        model_raw: bytes | None = None
        for key, start, end in attributes:
            column: str | None = None
            if key.startswith(_FEATURE_PREFIX):
                column = key[len(_FEATURE_PREFIX) :]
                if not column or column in _RESERVED_COLUMNS:
                    raise _GiveUp
            elif key in _DATA_KEYS:
                column = _DATA_KEYS[key]
            if column is not None or key in _IDENTITY_KEYS or key in _SPECIAL_PAYLOAD:
                if key in seen:
                    raise _GiveUp
                seen.add(key)
            if column is not None:
                layout = self.column(column, start, end)
                (hot if layout.hot else pending).append(layout)
            elif key in _GENERIC_ONLY_KEYS:
                raise _GiveUp
            elif key == semconv.MODEL_NAME:
                model_raw = bytes(self.data[start:end])
            elif key == semconv.MODEL_VERSION:
                template.version_raw = bytes(self.data[start:end])
            elif key == semconv.ERROR_TYPE:
                template.error_type_raw = bytes(self.data[start:end])
            elif key == semconv.SAMPLE_RATE:
                template.rate = self.scalar_payload(start, end, CELL_DOUBLE)
            elif key == semconv.PREDICTION_ID:
                template.prediction_id = self.scalar_payload(start, end, CELL_STRING)
            elif key == semconv.SAMPLE_INDICES:
                template.indices = self.indices(start, end)
            else:
                self.mark(start, end, _FREE)
        if model_raw is None:
            raise _GiveUp
        template.model_raw = model_raw
        template.columns = hot + pending

    def scalar_payload(self, start: int, end: int, kind: int) -> Cell | bytes:
        """A double (or string) scalar as a payload cell; other values stay structure."""
        cell = self.value(start, end) if start < end else Cell(CELL_EMPTY)
        if cell.kind == kind:
            return cell
        # Structure after all: restore the mask of this value.
        self.mark(start, end, _STRUCTURE)
        return bytes(self.data[start:end])

    def indices(self, start: int, end: int) -> list[Cell]:
        data = self.data
        if start < end and data[start] == 0x2A:
            cells = self.array(start, end)
        else:
            cells = [self.value(start, end)] if start < end else []
        if not cells or any(c.kind != CELL_INT for c in cells):
            raise _GiveUp
        return cells

    def column(self, name: str, start: int, end: int) -> ColumnLayout:
        data = self.data
        size = end - start
        hot = False
        if size > 2 and data[start] == 0x2A and data[start + 1] == size - 2:
            hot = (size - 2) % 11 == 0 and all(
                data[p : p + 3] == b"\x0a\x09\x21" for p in range(start + 2, end, 11)
            )
        elif size == 9 and data[start] == 0x21:
            hot = True
        if start < end and data[start] == 0x2A:
            cells = self.array(start, end)
            text = any(c.kind == CELL_STRING for c in cells)
            return ColumnLayout(name, cells, scalar=False, hot=hot, text=text)
        cell = self.value(start, end) if start < end else Cell(CELL_EMPTY)
        text = cell.kind == CELL_STRING and cell.length > 0
        if cell.kind == CELL_STRING and not text:
            cell = Cell(CELL_EMPTY)  # "" is a missing scalar
        return ColumnLayout(name, [cell], scalar=True, hot=hot, text=text)

    def array(self, start: int, end: int) -> list[Cell]:
        data = self.data
        length, pos = _varint(data, start + 1, end)
        if pos + length != end:
            raise _GiveUp
        cells: list[Cell] = []
        while pos < end:
            if data[pos] != 0x0A:
                raise _GiveUp
            length, pos = _varint(data, pos + 1, end)
            stop = pos + length
            if stop > end:
                raise _GiveUp
            cells.append(self.value(pos, stop) if length else Cell(CELL_EMPTY))
            pos = stop
        return cells

    def value(self, start: int, end: int) -> Cell:
        """A non-empty ``AnyValue`` scalar in canonical form; marks its payload."""
        data = self.data
        tag = data[start]
        if tag == 0x21:
            if end - start != 9:
                raise _GiveUp
            self.mark(start + 1, end, _FREE)
            return Cell(CELL_DOUBLE, start + 1 - self.start, 8)
        if tag in (0x18, 0x10):
            if self.varint_payload(start + 1, end) != end:
                raise _GiveUp
            kind = CELL_INT if tag == 0x18 else CELL_BOOL
            return Cell(kind, start + 1 - self.start, end - start - 1)
        if tag == 0x0A:
            length, pos = _varint(data, start + 1, end)
            if pos + length != end:
                raise _GiveUp
            self.mark(pos, end, _FREE)
            return Cell(CELL_STRING, pos - self.start, length)
        raise _GiveUp


_SPECIAL_PAYLOAD = frozenset({semconv.SAMPLE_RATE, semconv.PREDICTION_ID, semconv.SAMPLE_INDICES})


def _utf8(raw: Bytes) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _GiveUp from exc


def build_template(data: Bytes, start: int, end: int) -> SpanTemplate | None:
    """The template of the span at ``data[start:end]``, ``None`` if it is not simple."""
    try:
        return _Builder(data, start, end).build()
    except _GiveUp:
        return None


# --- matching and decoding ---------------------------------------------------------


def stack_spans(data: bytes, ranges: list[tuple[int, int]], length: int) -> UInt8Array:
    """The spans (all ``length`` bytes long) as rows of a ``(n, words * 8)`` byte array
    (bytes past a span's end are padding: zeros, or the bytes that follow it)."""
    words = (length + 7) // 8
    width = words * 8
    first, last = ranges[0][0], ranges[-1][0]
    if len(ranges) > 1 and last + width <= len(data):
        stride, rest = divmod(last - first, len(ranges) - 1)
        if (
            not rest
            and stride >= length
            and all(start == first + i * stride for i, (start, _) in enumerate(ranges))
        ):
            # Evenly spaced spans (one layout repeated): one strided copy.
            buffer = np.frombuffer(data, dtype=np.uint8)
            view = np.lib.stride_tricks.as_strided(
                buffer[first:], shape=(len(ranges), width), strides=(stride, 1), writeable=False
            )
            return np.ascontiguousarray(view)
    padding = bytes(width - length)
    if padding:
        joined = b"".join([part for s, e in ranges for part in (data[s:e], padding)])
    else:
        joined = b"".join([data[s:e] for s, e in ranges])
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(ranges), words * 8)


# Row blocks of temporaries (``match``) hold about this many bytes.
_BLOCK_BYTES = 1 << 16


def match(template: SpanTemplate, rows: UInt8Array) -> npt.NDArray[np.bool_]:
    """Which rows (from ``stack_spans``) have the template's structure."""
    words = rows.view(np.uint64)
    n, k = words.shape
    result: npt.NDArray[np.bool_] = np.empty(n, dtype=bool)
    # In blocks of rows: the masked words and their comparison are temporaries as
    # large as the block, not the whole request (a request-sized temporary gets fresh
    # pages from the kernel, faulted in again on every request).
    step = max(1, _BLOCK_BYTES // max(1, k * 8))
    for lo in range(0, n, step):
        block = words[lo : lo + step]
        np.all((block & template.mask) == template.expected, axis=1, out=result[lo : lo + step])
    return result


def decode_doubles(rows: UInt8Array, offsets: list[int]) -> npt.NDArray[np.float64]:
    """``(n, len(offsets))`` doubles read at the given byte offsets of each row."""
    return _words(rows, "<f8")[:, np.asarray(offsets, dtype=np.intp)]


def decode_fixed64(rows: UInt8Array, offset: int) -> npt.NDArray[np.uint64]:
    """The little-endian fixed64 at ``offset`` of each row."""
    return np.ascontiguousarray(_words(rows, "<u8")[:, offset])


def _words(rows: UInt8Array, dtype: str) -> np.ndarray:
    """Every row's 8-byte values starting at each byte offset (an unaligned view)."""
    rows = np.ascontiguousarray(rows)
    m, width = rows.shape
    return np.ndarray((m, width - 7), dtype=dtype, buffer=rows, strides=(width, 1))


def decode_varints(rows: UInt8Array, cells: list[Cell]) -> npt.NDArray[np.uint64]:
    """``(n, len(cells))`` unsigned varint values (cells of pinned lengths)."""
    out = np.zeros((rows.shape[0], len(cells)), dtype=np.uint64)
    by_length: dict[int, list[int]] = {}
    for i, cell in enumerate(cells):
        by_length.setdefault(cell.length, []).append(i)
    for length, which in by_length.items():
        starts = np.asarray([cells[i].offset for i in which], dtype=np.intp)
        raw = rows[:, starts[:, None] + np.arange(length)].astype(np.uint64)
        shifts = np.arange(length, dtype=np.uint64) * np.uint64(7)
        out[:, which] = ((raw & np.uint64(0x7F)) << shifts).sum(axis=2, dtype=np.uint64)
    return out
