"""Span templates with variable-length strings (text features) for ``otlp_fast``.

A ``SpanTemplate`` (``otlp_scan``) only matches spans whose every byte is where
the template's is, so spans carrying categorical features (strings of varying
length: ``"red"``, ``"green"``, missing values) rarely share one and fell back to
the generic decoder. Here the values of a template's text columns become *slots*:
each array element (``values`` tag, length, then nothing or a ``string_value``)
and each scalar text ``KeyValue.value`` may have any length in a matching span.
``match`` walks the slots of many spans at once with numpy (each text column's
shift from the ``KeyValue`` lengths, then one step per element index for all
columns and spans: when every length in the slots is one byte, the common case of
strings under 128 bytes, a step is one byte read and two additions, and the checks
follow in one pass over byte arrays; spans with longer varints take the general
walk), checks that the enclosing lengths (the ``KeyValue``'s, its value's, the
array's) add up, copies each span's bytes outside the slots into the template's
layout (``normalized`` rows: the template's own bytes in the slots), and checks
those rows against the template byte mask as ``otlp_scan.match`` does.
The strings themselves are read in bulk: every slot of every span keyed by its
length and bytes (two words for strings up to 14 bytes), grouped by a table of
hash buckets (no sort; every row checked against its bucket's), or when two
different strings share a bucket by a sort of 64-bit hashes checked for
collisions, then one UTF-8 decode per distinct string.

Spans that do not fit (other layouts, strings of 16 KiB or more, non-UTF-8 text)
are left to ``otlp_fast``'s plain templates and to the generic decoder.

``decode`` turns a matched group into ``otlp_fast``'s block: the template's decoder
on the normalized rows, then the text columns overwritten with the slot values,
with the generic decoder's types (``None`` for a missing or empty string; a column
without any string-typed value stays numeric).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from modeltrace.drift import otlp_scan
from modeltrace.drift.otlp_scan import CELL_EMPTY, CELL_STRING, ColumnLayout, SpanTemplate

__all__ = ["SlotGroup", "SlottedTemplate", "build", "decode", "group"]

IntArray = npt.NDArray[np.intp]
UInt8Array = npt.NDArray[np.uint8]

# Bytes of distinct strings read in one batch (n strings x longest string).
_MAX_STRING_BATCH = 1 << 26
# Slotted templates tried per request (recently used ones are tried first).
MAX_BUILDS = 8


@dataclass(frozen=True, slots=True)
class Slot:
    """One variable-length value: an array element or a scalar ``KeyValue.value``."""

    offset: int  # of its tag (0x0A element, 0x12 KeyValue.value), from the span start
    size: int  # its bytes in the template span (tag, length, AnyValue)
    tag: int
    column: int  # index into template.columns
    cell: int  # index into that column's cells
    scalar: bool


@dataclass(frozen=True, slots=True)
class Length:
    """A length varint enclosing slots ``first..stop-1`` (an ArrayValue's, a KeyValue's)."""

    offset: int
    size: int  # bytes of the varint (pinned)
    value: int  # in the template span
    first: int
    stop: int


@dataclass(slots=True)
class SlottedTemplate:
    template: SpanTemplate
    slots: list[Slot]
    lengths: list[Length]
    segments: list[tuple[int, int, int]]  # (template offset, width, slots before it)
    filler: UInt8Array  # the template span's bytes, padded to whole words
    # The slots by text column: the column's KeyValue length (in column order), the
    # text column of every length, and a (columns, most slots) grid of slot numbers
    # (-1 past a column's last slot): the walk advances all columns at once.
    kv: list[Length]
    length_column: list[int]
    grid: IntArray
    # The template with empty cells in place of the slots (what the block decoder
    # reads from normalized rows; the slot values replace them afterwards).
    decoding: SpanTemplate


@dataclass(slots=True)
class SlotGroup:
    """Spans that matched a slotted template."""

    template: SlottedTemplate
    positions: IntArray  # span numbers in the request, ascending
    rows: UInt8Array  # normalized rows (the template's layout)
    values: npt.NDArray[Any]  # (spans, slots) object: str or None
    typed: npt.NDArray[np.bool_]  # (spans, slots): a string-typed value (text column)


# --- building -------------------------------------------------------------------


class _SlotBuilder(otlp_scan._Builder):
    """``otlp_scan``'s template builder that also records the slots of text columns."""

    def __init__(self, data: otlp_scan.Bytes, start: int, end: int) -> None:
        super().__init__(data, start, end)
        self.kv_lengths: dict[int, tuple[int, int, int]] = {}  # value start -> KV varint
        # (layout, cell, slot offset, slot size, tag, enclosing varints (offset, size, value))
        self.found: list[tuple[ColumnLayout, int, int, int, int, list[tuple[int, int, int]]]] = []

    def _varint_before(self, pos: int) -> int:
        """The start of the varint that ends just before ``pos``."""
        first = pos - 1
        while first - 1 >= self.start and self.data[first - 1] >= 0x80:
            first -= 1
        return first

    def key_value(self, start: int, end: int) -> tuple[str, int, int]:
        key, value_start, value_end = super().key_value(start, end)
        first = self._varint_before(start)
        self.kv_lengths[value_start] = (first - self.start, start - first, end - start)
        return key, value_start, value_end

    def column(self, name: str, start: int, end: int) -> ColumnLayout:
        layout = super().column(name, start, end)
        if not layout.text:
            return layout
        data = self.data
        enclosing = [self.kv_lengths[start]]
        if layout.scalar:
            tag = self._varint_before(start) - 1
            self.found.append((layout, 0, tag - self.start, end - tag, 0x12, enclosing))
            return layout
        value = self._varint_before(start)  # KeyValue.value's length
        enclosing.append((value - self.start, start - value, end - start))
        length, pos = otlp_scan._varint(data, start + 1, end)
        enclosing.append((start + 1 - self.start, pos - start - 1, length))
        cell = 0
        while pos < end:
            element = pos
            length, pos = otlp_scan._varint(data, pos + 1, end)
            pos += length
            if layout.cells[cell].kind in (CELL_STRING, CELL_EMPTY):
                self.found.append(
                    (layout, cell, element - self.start, pos - element, 0x0A, enclosing)
                )
            cell += 1
        return layout


def build(data: bytes, start: int, end: int) -> SlottedTemplate | SpanTemplate | None:
    """The slotted template of the span at ``data[start:end]``; the plain template
    when the span has no text column; ``None`` when it is not a simple span."""
    builder = _SlotBuilder(data, start, end)
    try:
        template = builder.build()
    except otlp_scan._GiveUp:
        return None
    if template.ignored or not builder.found:
        return template
    column_of = {id(layout): i for i, layout in enumerate(template.columns)}
    slots: list[Slot] = []
    lengths: dict[tuple[int, int, int], list[int]] = {}
    for layout, cell, offset, size, tag, enclosing in builder.found:
        for varint in enclosing:
            lengths.setdefault(varint, []).append(len(slots))
        slots.append(Slot(offset, size, tag, column_of[id(layout)], cell, layout.scalar))
    segments = []
    here = 0
    for j, slot in enumerate(slots):
        if slot.offset > here:
            segments.append((here, slot.offset - here, j))
        here = slot.offset + slot.size
    if here < template.length:
        segments.append((here, template.length - here, len(slots)))
    filler = np.zeros(template.words * 8, dtype=np.uint8)
    filler[: template.length] = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
    all_lengths = [
        Length(offset, size, value, members[0], members[-1] + 1)
        for (offset, size, value), members in lengths.items()
    ]
    firsts = sorted({length.first for length in all_lengths})
    column_number = {first: c for c, first in enumerate(firsts)}
    kv: dict[int, Length] = {}
    for length in all_lengths:  # the KeyValue's length comes first for its column
        kv.setdefault(length.first, length)
    bounds = [*firsts, len(slots)]
    width = max(bounds[c + 1] - bounds[c] for c in range(len(firsts)))
    grid = np.full((len(firsts), width), -1, dtype=np.intp)
    for c in range(len(firsts)):
        grid[c, : bounds[c + 1] - bounds[c]] = np.arange(bounds[c], bounds[c + 1])
    columns = list(template.columns)
    for j, slot in enumerate(slots):
        if j == 0 or slots[j - 1].column != slot.column:
            layout = columns[slot.column]
            # Decoded as numbers (NaN in the slots); ``decode`` makes the text column.
            columns[slot.column] = replace(layout, cells=list(layout.cells), text=False)
        columns[slot.column].cells[slot.cell] = otlp_scan.Cell(CELL_EMPTY)
    return SlottedTemplate(
        template=template,
        slots=slots,
        lengths=all_lengths,
        segments=segments,
        filler=filler,
        kv=[kv[first] for first in firsts],
        length_column=[column_number[length.first] for length in all_lengths],
        grid=grid,
        decoding=replace(template, columns=columns),
    )


# --- matching -------------------------------------------------------------------


def _windows(buf: UInt8Array, width: int) -> UInt8Array:
    """Every ``width``-byte window of ``buf`` (a view: row ``i`` is ``buf[i:i+width]``)."""
    return np.lib.stride_tricks.as_strided(
        buf, shape=(buf.size - width + 1, width), strides=(1, 1), writeable=False
    )


def _gather(buf: UInt8Array, width: int, at: IntArray) -> UInt8Array:
    """``_windows(buf, width)[at]`` (every ``at`` in ``[0, buf.size - width]``), gathered
    as one ``width``-byte item per row: numpy copies fixed-size items in one loop,
    about three times faster than the row gather of a strided byte matrix."""
    if width == 0 or not buf.flags.c_contiguous or buf.size < width:
        return np.array(_windows(buf, width)[at])
    items = np.ndarray(
        (buf.size - width + 1,), dtype=np.dtype((np.void, width)), buffer=buf, strides=(1,)
    )
    return items[at].view(np.uint8).reshape(-1, width)


_HASH = np.uint64(0x9E3779B97F4A7C15)
# _LOW_BYTES[k]: a mask of the k low bytes of a little-endian word.
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


# Word matrices of up to 2**_INDEX_BITS rows are grouped by one sort of hash and row.
_INDEX_BITS = 24


def _group_words(words: npt.NDArray[np.uint64]) -> tuple[IntArray, IntArray] | None:
    """(a row of each distinct row, index of every row's distinct row) of a word
    matrix, by a 64-bit hash of each row (shortened by the row index bits for more
    than one word) checked for collisions; ``None`` when two different rows share a
    hash (the caller then sorts the rows themselves)."""
    n, k = words.shape
    hashed = words[:, 0].copy()
    with np.errstate(over="ignore"):
        for i in range(1, k):
            np.multiply(hashed, _HASH, out=hashed)
            np.bitwise_xor(hashed, words[:, i], out=hashed)
    bits = max(1, (n - 1).bit_length())
    if k > 1 and bits <= _INDEX_BITS:
        # The row index in the low bits of the hash (its high bits kept): one plain
        # sort (no argsort) gives both the groups and each row's place, each group's
        # first row first. Rows sharing the shortened hash are still checked below.
        # One more multiplication (odd: one to one) carries the low bits, where the
        # last word went in, into the high bits kept.
        with np.errstate(over="ignore"):
            np.multiply(hashed, _HASH, out=hashed)
        hashed >>= np.uint64(bits)
        hashed <<= np.uint64(bits)
        hashed |= np.arange(n, dtype=np.uint64)
        hashed.sort()
        order = (hashed & np.uint64((1 << bits) - 1)).astype(np.intp)
        hashed >>= np.uint64(bits)
        ordered = hashed
    else:
        order = np.argsort(hashed)
        ordered = hashed[order]
    new = np.ones(n, dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    inverse = np.empty(n, dtype=np.intp)
    counted = np.cumsum(new)
    counted -= 1
    inverse[order] = counted
    first = order[new]
    if k > 1:
        # Collision check in row blocks (small temporaries).
        step = max(1, _GATHER_BYTES // (k * 8))
        representative = first[inverse]
        for lo in range(0, n, step):
            block = words[lo : lo + step]
            if not bool((block == words[representative[lo : lo + step]]).all()):
                return None
    return first.astype(np.intp), inverse


# Buckets of the table that groups strings without a sort (``_bucket_words``): row
# numbers as int32, and only the buckets used are ever touched.
_BUCKET_BITS = 20
# More distinct rows than this (used buckets) go straight to the sort.
_BUCKET_GROUPS = 1 << 11


def _bucket_words(words: npt.NDArray[np.uint64]) -> tuple[IntArray, IntArray] | None:
    """``_group_words`` without a sort, for rows of few distinct values: a 64-bit hash
    of each row picks a bucket of a table, each bucket keeps one of its rows (the
    last written), and every row must equal the row kept by its bucket (``None``
    otherwise: two different rows share a bucket, or so many distinct rows that
    they most likely do). The groups are numbered in the order of the rows kept."""
    n, k = words.shape
    if n >= 1 << 31:
        return None
    hashed = words[:, 0].copy()
    with np.errstate(over="ignore"):
        np.multiply(hashed, _HASH, out=hashed)
        for i in range(1, k):
            np.bitwise_xor(hashed, words[:, i], out=hashed)
            np.multiply(hashed, _HASH, out=hashed)
    hashed >>= np.uint64(64 - _BUCKET_BITS)
    bucket = hashed.astype(np.intp)
    rows = np.arange(n, dtype=np.int32)
    table = np.empty(1 << _BUCKET_BITS, dtype=np.int32)
    table[bucket] = rows
    kept = table.take(bucket)
    first = np.flatnonzero(kept == rows)
    if first.size > _BUCKET_GROUPS:
        return None  # two of them most likely share a bucket: sort instead
    # Each row against its bucket's, gathered as one item per row (see ``_gather``).
    items = np.ascontiguousarray(words).view(np.dtype((np.void, 8 * k))).reshape(n)
    if not np.array_equal(items.take(kept).view(np.uint64).reshape(n, k), words):
        return None
    table[bucket[first]] = np.arange(first.size, dtype=np.int32)  # number the groups
    return first, table.take(bucket).astype(np.intp)


def _distinct_rows(keys: UInt8Array) -> tuple[IntArray, IntArray] | None:
    """``_group_words`` of a byte matrix (rows padded to whole words)."""
    n, width = keys.shape
    padded = -width % 8
    if padded:
        keys = np.concatenate([keys, np.zeros((n, padded), dtype=np.uint8)], axis=1)
    return _group_words(keys.view(np.uint64))


def _short_keys(
    buf: UInt8Array, starts: IntArray, sizes: IntArray
) -> npt.NDArray[np.uint64] | None:
    """Strings of at most 14 bytes as two words each: the one-byte length before
    the string, then the string, zero-padded (equal words <=> equal strings);
    ``None`` when a length before a string is not that one byte."""
    where = np.where(sizes > 0, starts - 1, 0)
    if where.size and int(where.min()) < 0:
        return None  # no length byte before the string
    if not bool(((buf[where] == sizes) | (sizes == 0)).all()):
        return None
    count = np.where(sizes > 0, sizes + 1, 0)
    # The 16 bytes at each ``where``: windows of the buffer itself, and of a zero-padded
    # copy of its last 16 bytes for the windows that run past its end (no padded copy of
    # the whole request, a temporary as large as the request).
    tail_start = max(buf.size - 16, 0)
    tail = np.zeros(32, dtype=np.uint8)
    tail[: buf.size - tail_start] = buf[tail_start:]
    late = where > tail_start
    if buf.size < 16:
        gathered = _gather(tail, 16, where)
    else:
        gathered = _gather(buf, 16, np.where(late, 0, where))
    if buf.size >= 16 and late.any():
        gathered[late] = _gather(tail, 16, where[late] - tail_start)
    words: npt.NDArray[np.uint64] = gathered.view("<u8")
    words[:, 0] &= _LOW_BYTES[np.minimum(count, 8)]
    words[:, 1] &= _LOW_BYTES[np.maximum(count - 8, 0)]
    return words


def _read_strings(
    buf: UInt8Array, starts: IntArray, sizes: IntArray
) -> tuple[list[str | None], IntArray, npt.NDArray[np.bool_]] | None:
    """The distinct strings at ``buf[start:start+size]`` (None when not UTF-8), and
    the index of each one; ``None`` when the batch is too large to read at once."""
    n = starts.size
    width = int(sizes.max(initial=0))
    if n == 0:
        return [], np.zeros(0, dtype=np.intp), np.zeros(0, dtype=bool)
    short = _short_keys(buf, starts, sizes) if width <= 14 else None
    found = None if short is None else _bucket_words(short) or _group_words(short)
    if found is None:
        if n * (width + 2) > _MAX_STRING_BATCH:
            return None
        found = _distinct_keys(buf, starts, sizes, width)
    first, index = found
    texts: list[str | None] = []
    bad = np.zeros(first.size, dtype=bool)
    for i, (start, size) in enumerate(
        zip(starts[first].tolist(), sizes[first].tolist(), strict=True)
    ):
        try:
            texts.append(bytes(buf[start : start + size]).decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(None)
            bad[i] = True
    return texts, index, bad[index]


def _distinct_keys(
    buf: UInt8Array, starts: IntArray, sizes: IntArray, width: int
) -> tuple[IntArray, IntArray]:
    """``_group_words`` of the strings of any length (up to ``width``): each one as
    its two-byte length and its bytes, zero-padded."""
    n = starts.size
    keys = np.zeros((n, width + 2), dtype=np.uint8)
    keys[:, 0] = sizes & 0xFF
    keys[:, 1] = sizes >> 8
    if width:
        keys[:, 2:] = _gather(buf, width, np.minimum(starts, buf.size - width))
        # Windows clipped at the end of the buffer start earlier: shift them back.
        late = np.flatnonzero(starts > buf.size - width)
        for i in late.tolist():
            chunk = buf[starts[i] : starts[i] + sizes[i]]
            keys[i, 2:] = 0
            keys[i, 2 : 2 + chunk.size] = chunk
        keys[:, 2:][np.arange(width)[None, :] >= sizes[:, None]] = 0
    found = _distinct_rows(keys)
    if found is not None:
        return found
    # Equal keys as fixed-width bytes <=> equal strings (the length comes first, so
    # numpy's stripping of trailing NULs cannot merge two of them).
    _, first, inverse = np.unique(
        keys.view(f"S{width + 2}").ravel(), return_index=True, return_inverse=True
    )
    return first.astype(np.intp), inverse.reshape(-1).astype(np.intp)


def _varints(
    at: Callable[[IntArray], IntArray], pos: IntArray, size: int
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Varints of exactly ``size`` bytes at ``pos``: (values, well-formed)."""
    value = np.zeros(pos.shape, dtype=np.intp)
    ok = np.ones(pos.shape, dtype=bool)
    for k in range(size):
        byte = at(pos + k)
        ok &= (byte >= 0x80) == (k < size - 1)
        value |= (byte & 0x7F) << (7 * k)
    return value, ok


def _walk(
    st: SlottedTemplate,
    at: Callable[[IntArray], IntArray],
    starts: IntArray,
    base: IntArray,
    limit: IntArray,
) -> tuple[npt.NDArray[np.bool_], IntArray, IntArray, IntArray, IntArray, npt.NDArray[np.bool_]]:
    """The slots of every span, one step per element index for all columns: (walk
    checks passed, each column's shift inside its slots, the shift after each slot,
    each slot's string start and size, string-typed slots). Any varint widths."""
    m = starts.size
    slots = st.slots
    n_slots = len(slots)
    n_columns = len(st.kv)
    limit = limit[:, None]
    inner = np.zeros((m, n_columns), dtype=np.intp)
    after = np.zeros((m, n_slots), dtype=np.intp)  # the shift after each slot
    payload = np.zeros((m, n_slots), dtype=np.intp)
    size = np.zeros((m, n_slots), dtype=np.intp)
    typed = np.zeros((m, n_slots), dtype=bool)
    offsets = np.asarray([slot.offset for slot in slots], dtype=np.intp)
    sizes = np.asarray([slot.size for slot in slots], dtype=np.intp)
    tags = np.asarray([slot.tag for slot in slots], dtype=np.intp)
    scalar = np.asarray([slot.scalar for slot in slots], dtype=bool)
    row_ok = np.ones((m, n_columns), dtype=bool)
    for step in range(st.grid.shape[1]):
        which = st.grid[:, step]
        cols = np.flatnonzero(which >= 0)
        j = which[cols]
        before = base[:, cols] + inner[:, cols]
        p = starts[:, None] + offsets[j] + before
        b0, b1 = at(p + 1), at(p + 2)
        wide = b0 >= 0x80
        e = np.where(wide, (b0 & 0x7F) | (b1 << 7), b0)
        good = (at(p) == tags[j]) & (~wide | (b1 < 0x80))
        q = p + 2 + wide  # the AnyValue
        c0, c1 = at(q + 1), at(q + 2)
        wide_l = c0 >= 0x80
        n = np.where(wide_l, (c0 & 0x7F) | (c1 << 7), c0)
        has = e > 0
        good &= ~has | ((at(q) == 0x0A) & (~wide_l | (c1 < 0x80)) & (e == 2 + wide_l + n))
        total = 2 + wide + e
        good &= p + total <= limit
        row_ok[:, cols] &= good
        payload[:, j] = q + 2 + wide_l
        size[:, j] = np.where(has, n, 0)
        typed[:, j] = has & ((n > 0) | ~scalar[j])
        inner[:, cols] += total - sizes[j]
        after[:, j] = before + total - sizes[j]
    return np.asarray(row_ok.all(axis=1)), inner, after, payload, size, typed


def _walk_narrow(
    st: SlottedTemplate, buf: UInt8Array, starts: IntArray, base: IntArray, limit: IntArray
) -> (
    tuple[
        npt.NDArray[np.bool_],
        IntArray,
        IntArray,
        IntArray,
        IntArray,
        npt.NDArray[np.bool_],
        npt.NDArray[np.bool_],
    ]
    | None
):
    """``_walk`` for slots whose lengths are all one byte (strings under 128 bytes),
    plus the spans where that does not hold (``slow``: ``_walk`` them instead).

    Each element is then its tag, its length ``e`` and ``e`` bytes: the walk is one
    byte read and two additions per step, and the checks (tags, the string's own
    tag and one-byte length ``n == e - 2``, the end) follow in one pass over byte
    arrays. A span with a length byte of 0x80 or more (or a slot before the start
    of the buffer) is ``slow``; every other span gets exactly ``_walk``'s values."""
    grid = st.grid
    n_columns, steps = grid.shape
    m = starts.size
    if buf.size < 4 or not m:
        return None
    offsets = np.asarray([slot.offset for slot in st.slots], dtype=np.intp)
    sizes = np.asarray([slot.size for slot in st.slots], dtype=np.intp)
    active = (grid >= 0).T  # (steps, columns)
    j = np.where(active, grid.T, 0)
    # From one slot's tag to the next one's: 2 + e + the template bytes between them.
    step_add = np.zeros((steps, n_columns), dtype=np.intp)
    step_add[:-1] = np.where(active[1:], offsets[j[1:]] - offsets[j[:-1]] - sizes[j[:-1]] + 2, 0)
    full = bool(active.all())
    at_tag = np.empty((steps, m, n_columns), dtype=np.intp)
    e = np.empty((steps, m, n_columns), dtype=np.uint8)
    np.add(starts[:, None] + offsets[j[0]], base, out=at_tag[0])
    slow = at_tag[0].min(axis=1) < 0
    after_tag = buf[1:]
    for step in range(steps):
        np.take(after_tag, at_tag[step], mode="clip", out=e[step])
        if step + 1 < steps:
            here = at_tag[step + 1]
            if full:
                np.add(at_tag[step], e[step], out=here)
            else:  # columns without a slot at the next step stay where they are
                np.multiply(e[step], active[step + 1], out=here)
                here += at_tag[step]
            here += step_add[step]
    tag = np.take(buf, at_tag, mode="clip")
    inner_tag = np.take(buf[2:], at_tag, mode="clip")
    n = np.take(buf[3:], at_tag, mode="clip")
    wide = (e | n) >= 0x80
    has = e > 0
    tags = np.asarray([slot.tag for slot in st.slots], dtype=np.uint8)[j]
    good = tag == tags[:, None, :]
    good &= ~has | ((inner_tag == 0x0A) & (e == n + 2))
    if not full:
        wide &= active[:, None, :]
        good |= ~active[:, None, :]
    slow |= wide.any(axis=(0, 2))
    row_ok = good.all(axis=(0, 2))
    # Every slot in slot order: (spans, columns x steps), the unused steps left out.
    order = np.flatnonzero(grid.ravel() >= 0)

    def by_slot(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
        flat = a.transpose(1, 2, 0).reshape(m, n_columns * steps)
        return flat if full else flat[:, order]

    slot_tag, slot_e, slot_n = by_slot(at_tag), by_slot(e), by_slot(n)
    end = slot_tag + 2
    end += slot_e  # the end of each slot
    last = np.asarray(
        [int(row[row >= 0][-1]) for row in grid], dtype=np.intp
    )  # each column's last slot
    row_ok &= (end[:, last] <= limit[:, None]).all(axis=1)
    payload = slot_tag + 4
    slot_has = slot_e > 0
    size = np.where(slot_has, slot_n, 0).astype(np.intp)
    scalar = np.asarray([slot.scalar for slot in st.slots], dtype=bool)
    typed = slot_has & ((slot_n > 0) | ~scalar)
    after = end
    after -= starts[:, None]
    after -= offsets + sizes
    inner = after[:, last] - base
    return row_ok, inner, after, payload, size, typed, slow


# Segments at least this wide are copied span by span (see ``match``).
_WIDE_SEGMENT = 1024
# Narrower segments are gathered in row blocks of about this many bytes.
_GATHER_BYTES = 1 << 16


def match(
    st: SlottedTemplate, buf: UInt8Array, starts: IntArray, lengths: IntArray
) -> tuple[IntArray, UInt8Array, npt.NDArray[Any], npt.NDArray[np.bool_]] | None:
    """Which of the spans ``buf[start:start+length]`` match: (their indices into
    ``starts``, normalized rows, slot values, string-typed slots); ``None`` if none.

    The shift of each text column (how much longer than the template's everything
    before it is) comes from the KeyValue lengths, one column after the other; the
    slots are then walked for all columns at once, and every enclosing length must
    agree with what the walk found."""
    m = starts.size

    def at(pos: IntArray) -> IntArray:
        return np.take(buf, pos, mode="clip").astype(np.intp)

    ok = np.ones(m, dtype=bool)
    n_columns = len(st.kv)
    base = np.zeros((m, n_columns), dtype=np.intp)
    shift = np.zeros(m, dtype=np.intp)
    for c, kv in enumerate(st.kv):
        base[:, c] = shift
        value, good = _varints(at, starts + kv.offset + shift, kv.size)
        ok &= good
        shift = shift + (value - kv.value)
    template = st.template
    ok &= lengths == template.length + shift
    if not ok.any():
        return None
    limit = starts + lengths
    narrow = _walk_narrow(st, buf, starts, base, limit)
    if narrow is None:
        row_ok, inner, after, payload, size, typed = _walk(st, at, starts, base, limit)
    else:
        row_ok, inner, after, payload, size, typed, slow = narrow
        if slow.any():
            pick = np.flatnonzero(slow)
            for array, part in zip(
                (row_ok, inner, after, payload, size, typed),
                _walk(st, at, starts[pick], base[pick], limit[pick]),
                strict=True,
            ):
                array[pick] = part
    ok &= row_ok
    if not ok.any():
        return None
    by_size: dict[int, list[int]] = {}  # the enclosing lengths, read by varint size
    for i, length in enumerate(st.lengths):
        by_size.setdefault(length.size, []).append(i)
    for varint_size, which in by_size.items():
        where = np.asarray([st.lengths[i].offset for i in which], dtype=np.intp)
        expected = np.asarray([st.lengths[i].value for i in which], dtype=np.intp)
        cols = np.asarray([st.length_column[i] for i in which], dtype=np.intp)
        value, good = _varints(at, starts[:, None] + where + base[:, cols], varint_size)
        good &= value == expected + inner[:, cols]
        ok &= good.all(axis=1)
    chosen = np.flatnonzero(ok)
    if not chosen.size:
        return None
    starts, after = starts[chosen], after[chosen]
    rows = np.empty((chosen.size, st.filler.size), dtype=np.uint8)
    rows[:] = st.filler
    for offset, width, before_count in st.segments:
        moved = starts + offset
        if before_count:
            moved = moved + after[:, before_count - 1]
        if width >= _WIDE_SEGMENT:
            # Span by span: a gather of wide windows would first make a temporary
            # copy of the whole block (fresh pages, faulted in on every request).
            block = rows[:, offset : offset + width]
            for i, start in enumerate(moved.tolist()):
                block[i] = buf[start : start + width]
        else:
            # In blocks of rows: the gather's temporary copy stays small.
            step = max(1, _GATHER_BYTES // width)
            for lo in range(0, moved.size, step):
                rows[lo : lo + step, offset : offset + width] = _gather(
                    buf, width, moved[lo : lo + step]
                )
    for length in st.lengths:
        rows[:, length.offset : length.offset + length.size] = st.filler[
            length.offset : length.offset + length.size
        ]
    hit = otlp_scan.match(template, rows)
    if not hit.all():
        chosen, rows = chosen[hit], rows[hit]
        if not chosen.size:
            return None
    payload, size, typed = payload[chosen], size[chosen], typed[chosen]
    strings = _read_strings(buf, payload.ravel(), size.ravel())
    if strings is None:
        return None
    texts, index, bad = strings
    spans_ok = ~bad.reshape(size.shape).any(axis=1)
    lookup = np.empty(len(texts) + 1, dtype=object)
    lookup[:-1] = texts
    lookup[-1] = None
    index = np.where(size.ravel() > 0, index, len(texts))  # empty strings are missing
    values = lookup[index].reshape(size.shape)
    if not spans_ok.all():
        chosen, rows, values, typed = (
            chosen[spans_ok],
            rows[spans_ok],
            values[spans_ok],
            typed[spans_ok],
        )
        if not chosen.size:
            return None
    return chosen, rows, values, typed


# --- grouping ----------------------------------------------------------------------


class _Cache:
    """Recently used slotted templates (bounded)."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._items: list[SlottedTemplate] = []
        self._lock = threading.Lock()

    def get(self) -> list[SlottedTemplate]:
        with self._lock:
            return list(self._items)

    def add(self, template: SlottedTemplate) -> None:
        with self._lock:
            self._items = [template, *(t for t in self._items if t is not template)]
            del self._items[self._size :]


_CACHE = _Cache()


def group(
    data: bytes,
    ranges: list[tuple[int, int]],
    plain: Callable[[int], bool],
    remember: Callable[[SpanTemplate], None],
) -> list[SlotGroup]:
    """Spans of the request that match slotted templates, grouped. ``plain(position)``
    says that a span matches a known plain template (the scan stops there: the
    request is not one of text features); ``remember`` receives the plain templates
    built on the way."""
    if not ranges:
        return []
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.asarray([s for s, _ in ranges], dtype=np.intp)
    lengths = np.asarray([e - s for s, e in ranges], dtype=np.intp)
    left = np.arange(len(ranges))
    groups: list[SlotGroup] = []

    def take(st: SlottedTemplate) -> bool:
        nonlocal left
        found = match(st, buf, starts[left], lengths[left])
        if found is None:
            return False
        chosen, rows, values, typed = found
        groups.append(SlotGroup(st, left[chosen], rows, values, typed))
        keep = np.ones(left.size, dtype=bool)
        keep[chosen] = False
        left = left[keep]
        return True

    for st in _CACHE.get():
        if left.size and take(st):
            _CACHE.add(st)
    tried: set[int] = set()
    builds = misses = 0
    while builds < MAX_BUILDS and misses < 2:
        untried = [int(p) for p in left[:8].tolist() if int(p) not in tried]
        if not untried:
            break
        first = untried[0]
        tried.add(first)
        if plain(first):
            break
        builds += 1
        built = build(data, *ranges[first])
        if not isinstance(built, SlottedTemplate):
            if built is not None:
                remember(built)
            misses += 1
            continue
        if take(built) and first not in set(left.tolist()):
            _CACHE.add(built)
            misses = 0
        else:
            misses += 1
    return groups


# --- decoding ----------------------------------------------------------------------


def decode(
    found: SlotGroup, decode_block: Callable[..., tuple[Any, IntArray]]
) -> tuple[Any, IntArray]:
    """``otlp_fast._decode_block`` on the normalized rows, with the text columns
    made from the slot values and the numeric cells next to them (same block type,
    same rejected positions)."""
    st = found.template
    template = st.template
    block, rejected = decode_block(st.decoding, found.positions, found.rows)
    if not block.positions.size:
        return block, rejected
    keep = np.searchsorted(found.positions, block.positions)
    values, typed = found.values[keep], found.typed[keep]
    by_column: dict[int, list[int]] = {}
    for j, slot in enumerate(st.slots):
        by_column.setdefault(slot.column, []).append(j)
    for column, which in by_column.items():
        layout = template.columns[column]
        numbers = block.columns[layout.name]  # float64, NaN in the slots
        if not bool(typed[:, which].any()):
            continue  # no string-typed value: numbers, as the generic decoder
        k = len(layout.cells)
        if len(which) == k:
            block.columns[layout.name] = np.ascontiguousarray(values[:, which]).reshape(-1)
            continue
        out = np.empty(numbers.size, dtype=object)
        present = np.flatnonzero(~np.isnan(numbers))
        out[present] = numbers[present].tolist()
        grid = out.reshape(-1, k)
        grid[:, [st.slots[j].cell for j in which]] = values[:, which]
        block.columns[layout.name] = out
    return block, rejected
