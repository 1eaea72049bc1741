"""Mergeable per-feature state of a production window: the ``FeatureSketch``.

A sketch summarises the values one feature took in a window, on the bins fixed
by the training-time reference (``Binning``):

* weighted counts per bin: for a numeric feature the reference's bin edges
  plus an underflow and an overflow bin, for a categorical feature the
  reference's top-K categories plus ``other``;
* weighted and raw counters of missing values, of categories never seen in the
  reference (``unseen``) and of numeric values outside the reference
  ``[min, max]`` (``out_of_range``);
* a bounded weighted sample of the raw numeric values (priority sampling,
  Duffield, Lund and Thorup 2007: priority ``w / u``, keep the ``k + 1`` highest;
  the estimated weight of a kept item is ``max(w, tau)`` with ``tau`` the
  ``(k + 1)``-th priority). It merges exactly: the sample of a merge is the
  sample a single sketch would have kept from the same priorities;
* a few exemplar trace ids per bin (the most recent ones), for root-cause links.

Every row is weighted, normally by ``1 / ml.sample.rate``. The API follows
River's convention: ``update``, ``merge``, ``to_dict`` / ``from_dict``.
Numeric updates are vectorised with numpy (bins by counting the edges below each
value, or ``searchsorted`` for many edges; ``bincount``).
"""

from __future__ import annotations

import base64
import ctypes
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

FeatureKind = Literal["numeric", "categorical"]
KINDS: tuple[str, ...] = ("numeric", "categorical")
OTHER_LABEL = "other"
DEFAULT_RESERVOIR_SIZE = 1000
DEFAULT_EXEMPLARS_PER_BIN = 3


# --- value normalisation ---------------------------------------------------


def category_key(value: Any) -> str | None:
    """The category string of one value, ``None`` when the value is missing.

    Missing: ``None``, NaN and ``""`` (the missing-string marker on spans).
    Integral floats map to the integer's text so that ``1``, ``1.0`` and
    ``np.int64(1)`` are the same category; booleans map to ``"True"``/``"False"``.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isfinite(number) and number == math.floor(number):
            return str(int(number))
        return repr(number)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value)
    return text if text != "" else None


def category_keys(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category strings of a column and its missing mask (see ``category_key``)."""
    kind = values.dtype.kind
    if kind in "US":
        keys = values.astype(str)
        return keys, keys == ""
    if kind == "b":
        return np.where(values, "True", "False"), np.zeros(values.shape, dtype=bool)
    if kind in "iu":
        return values.astype(str), np.zeros(values.shape, dtype=bool)
    if kind == "f":
        missing = np.isnan(values)
        uniques, inverse = np.unique(values, return_inverse=True)
        mapped = np.array([category_key(u) or "" for u in uniques.tolist()], dtype=object)
        keys = mapped[inverse.reshape(-1)] if uniques.size else np.array([], dtype=object)
        return keys.astype(str), missing
    return _object_category_keys(values)


# Exact types whose equal values always have the same ``category_key`` (so a group
# of equal values needs one call); ``Decimal("1.0") == Decimal("1.00")`` has two keys.
_GROUPABLE = (str, np.str_, int, float, bool, np.bool_, np.integer, np.floating)


def _object_category_keys(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``category_keys`` of an object column without a Python call per value.

    Rows are split by their exact type (equal values of different types, like
    ``True`` and ``1``, have different keys): strings are their own key, ``None``
    is missing, and the other groupable types go through ``category_key`` once
    per distinct value (``np.unique``); any other type is keyed value by value.
    """
    n = values.shape[0]
    if n == 0:
        return np.array([], dtype=str), np.zeros(0, dtype=bool)
    items = values.tolist()
    if values.dtype.kind != "O":  # e.g. datetimes: key the objects ``tolist`` gives
        values = np.empty(n, dtype=object)
        values[:] = items
    types = set(map(type, items))
    # Missing is decided on the objects: a str array drops trailing NULs, so "\x00"
    # (a category) would read as "" (missing) there.
    if types == {str}:
        return values.astype(str), values == ""
    code_of = {kind: code for code, kind in enumerate(types)}
    codes = np.fromiter(map(code_of.__getitem__, map(type, items)), dtype=np.intp, count=n)
    out = np.empty(n, dtype=object)
    for kind, code in code_of.items():
        rows = np.flatnonzero(codes == code) if len(types) > 1 else slice(None)
        group = values[rows]
        if kind is type(None):
            out[rows] = ""
        elif kind is str or kind is np.str_:
            out[rows] = group
        elif issubclass(kind, _GROUPABLE):
            if issubclass(kind, (float, np.floating)):
                group = group.astype(np.float64)
            uniques, inverse = np.unique(group, return_inverse=True)
            mapped = np.array([category_key(u) or "" for u in uniques.tolist()], dtype=object)
            out[rows] = mapped[inverse.reshape(-1)]
        else:
            out[rows] = [category_key(v) or "" for v in group.tolist()]
    return out.astype(str), out == ""


def _addresses(values: np.ndarray) -> np.ndarray:
    """The address of every element's object in a contiguous 1-D object array (the
    array's own pointer buffer, copied): equal addresses are the same object."""
    pointers = ctypes.cast(values.ctypes.data, ctypes.POINTER(ctypes.c_size_t))
    return np.ctypeslib.as_array(pointers, shape=(values.shape[0],)).copy()


def category_codes(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The distinct category keys of a column and every row's index into them
    (``-1`` where missing): ``category_keys`` followed by a factorisation.

    A column of ``str`` objects and ``None`` is factorised by hashing (a dict),
    without converting it to a fixed-width string array and sorting; when rows
    repeat the same objects (the decoders share one ``str`` per distinct value),
    rows are first grouped by the objects' addresses (``np.unique``) and only the
    distinct objects are hashed. Every other column goes through ``category_keys``
    and ``np.unique``. The keys are the same either way (their order is not
    specified).
    """
    n = values.shape[0]
    if values.dtype.kind == "O" and n and values.ndim == 1:
        values = np.ascontiguousarray(values)
        addresses = _addresses(values)
        order = np.argsort(addresses)
        ordered = addresses[order]
        new = np.ones(n, dtype=bool)
        new[1:] = ordered[1:] != ordered[:-1]
        first = order[new]  # a row of each distinct object
        inverse = np.empty(n, dtype=np.intp)
        inverse[order] = np.cumsum(new) - 1
        repeated = first.size * 4 <= n
        items = values[first].tolist() if repeated else values.tolist()
        if set(map(type, items)) <= {str, type(None)}:
            index: dict[str | None, int] = dict.fromkeys(items, 0)
            # numpy's str arrays drop trailing NULs ("a\x00" is "a" there): leave
            # such keys to ``category_keys`` so that both paths agree.
            if not any(key.endswith("\x00") for key in index if key is not None):
                keys = [key for key in index if isinstance(key, str) and key]  # None, "": missing
                for key in index:
                    index[key] = -1
                for i, key in enumerate(keys):
                    index[key] = i
                codes = np.fromiter(map(index.__getitem__, items), dtype=np.intp, count=len(items))
                return keys, codes[inverse.reshape(-1)] if repeated else codes
    keys_array, missing = category_keys(values)
    if not keys_array.size:
        return [], np.zeros(0, dtype=np.intp)
    uniques, inverse = np.unique(keys_array, return_inverse=True)
    codes = inverse.reshape(-1).astype(np.intp)
    codes[missing] = -1
    return [str(u) for u in uniques.tolist()], codes


def _sum_of_squares(w: np.ndarray) -> float:
    """``w @ w`` without BLAS: OpenBLAS threads a 1-D dot of this size, and on a
    busy machine its threads wait for cores (15 ms instead of 40 us for 50k rows)."""
    return float(np.einsum("i,i->", w, w))


def as_float(values: np.ndarray) -> np.ndarray:
    """A numeric column as float64; ``None``, ``""`` and non-numeric text become NaN."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    try:
        return np.asarray(values, dtype=object).astype(np.float64)
    except (TypeError, ValueError):
        out = np.empty(values.shape[0], dtype=np.float64)
        for i, value in enumerate(values.tolist()):
            try:
                out[i] = float(value) if value is not None else math.nan
            except (TypeError, ValueError):
                out[i] = math.nan
        return out


# --- array encoding for compact, exact state ---------------------------------


def encode_array(array: np.ndarray) -> str:
    """Exact, compact text form of a float64 array (base64 of little-endian bytes)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f8").tobytes()).decode("ascii")


def decode_array(text: str) -> np.ndarray:
    """Inverse of ``encode_array``."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 8:
        raise ValueError("encoded float64 array has a length that is not a multiple of 8")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64)


# --- bins ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Binning:
    """The bins of one feature, fixed by the reference.

    Numeric: ``edges`` (sorted, distinct, ``edges[0]`` the reference minimum and
    ``edges[-1]`` its maximum) give ``max(len(edges) - 1, 1)`` inner bins, the last
    one closed on the right, plus bin 0 (underflow, ``< edges[0]``) and the last
    bin (overflow, ``> edges[-1]``). Categorical: one bin per top-K category, in
    order, plus ``other``; ``known`` holds every category of the reference (up to
    a cap) so that unseen ones can be told from rare ones, or ``None`` when the
    reference had too many to keep (unseen categories are then not counted).
    """

    kind: FeatureKind
    edges: np.ndarray | None = None
    categories: tuple[str, ...] = ()
    known: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "numeric":
            if self.edges is None:
                raise ValueError("a numeric binning needs edges")
            edges = np.asarray(self.edges, dtype=np.float64)
            if edges.ndim != 1 or edges.size == 0:
                raise ValueError("bin edges must be a non-empty 1-D array")
            if not np.all(np.isfinite(edges)):
                raise ValueError("bin edges must be finite")
            if edges.size > 1 and not np.all(np.diff(edges) > 0):
                raise ValueError("bin edges must be strictly increasing")
            object.__setattr__(self, "edges", edges)
        else:
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("categories must be distinct")
            object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
            index = {c: i for i, c in enumerate(self.categories)}
            object.__setattr__(self, "_index", index)

    @property
    def n_inner(self) -> int:
        assert self.edges is not None
        return max(int(self.edges.size) - 1, 1)

    @property
    def n_bins(self) -> int:
        if self.kind == "numeric":
            return self.n_inner + 2
        return len(self.categories) + 1

    def labels(self) -> list[str]:
        """Human-readable bin names, aligned with the counts."""
        if self.kind == "categorical":
            return [*self.categories, OTHER_LABEL]
        assert self.edges is not None
        e = self.edges
        inner = (
            [f"[{e[0]:.6g}, {e[0]:.6g}]"]
            if e.size == 1
            else [
                f"[{e[i]:.6g}, {e[i + 1]:.6g}{']' if i == e.size - 2 else ')'}"
                for i in range(e.size - 1)
            ]
        )
        return [f"< {e[0]:.6g}", *inner, f"> {e[-1]:.6g}"]

    def same_as(self, other: Binning) -> bool:
        if self.kind != other.kind:
            return False
        if self.kind == "numeric":
            assert self.edges is not None and other.edges is not None
            return bool(np.array_equal(self.edges, other.edges))
        return self.categories == other.categories and self.known == other.known

    def assign_numeric(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(float values, missing mask, bin index of every row; -1 where missing)."""
        assert self.edges is not None
        x = as_float(values)
        edges = self.edges
        if edges.size > 1:
            # searchsorted already gives the bin (0 underflow, 1..n_inner inner) except
            # at the top, k == edges.size: the maximum itself (last inner bin, closed),
            # overflow, or NaN (sorted last: missing).
            if _count_edges(edges, x.shape[0]):
                # The number of edges <= x counted in bytes, one comparison per edge
                # (several times faster than the binary searches over unsorted
                # values); NaN compares false: counted as above every edge.
                counted = np.zeros(x.shape[0], dtype=np.uint8)
                above = np.empty(x.shape[0], dtype=bool)
                for edge in edges.tolist():
                    np.greater_equal(x, edge, out=above)
                    counted += above.view(np.uint8)
                counted[np.isnan(x)] = edges.size
                bins = counted.astype(np.intp)
            else:
                bins = np.searchsorted(edges, x, side="right")
            top = np.flatnonzero(bins == edges.size)
            missing = np.zeros(x.shape[0], dtype=bool)
            if top.size:
                at_top = x[top]
                nan = np.isnan(at_top)
                missing[top[nan]] = True
                bins[top] = np.where(at_top == edges[-1], edges.size - 1, edges.size)
                bins[top[nan]] = -1
            return x, missing, bins
        missing = np.isnan(x)
        k = np.searchsorted(self.edges, x, side="right")
        bins = np.minimum(np.maximum(k, 1), self.n_inner)
        bins[x < self.edges[0]] = 0
        bins[x > self.edges[-1]] = self.n_inner + 1
        bins[missing] = -1
        return x, missing, bins

    def assign_categorical(
        self, values: np.ndarray, codes: tuple[list[str], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(missing mask, unseen mask, bin index of every row; -1 where missing).

        ``codes``: ``category_codes(values)``, when the caller already has it."""
        keys, row_codes = category_codes(values) if codes is None else codes
        missing = row_codes < 0
        bins = np.full(row_codes.shape[0], -1, dtype=np.int64)
        unseen = np.zeros(row_codes.shape[0], dtype=bool)
        if keys:
            index: dict[str, int] = self._index  # type: ignore[attr-defined]
            other = len(self.categories)
            unique_bins = np.array([index.get(k, other) for k in keys], dtype=np.int64)
            present = np.flatnonzero(~missing)
            bins[present] = unique_bins[row_codes[present]]
            if self.known is not None:
                known = self.known
                unique_unseen = np.array([k not in known for k in keys], dtype=bool)
                unseen[present] = unique_unseen[row_codes[present]]
        return missing, unseen, bins

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "numeric":
            assert self.edges is not None
            return {"kind": "numeric", "edges": [float(e) for e in self.edges]}
        return {
            "kind": "categorical",
            "categories": list(self.categories),
            "known": sorted(self.known) if self.known is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Binning:
        kind = data.get("kind")
        if kind == "numeric":
            return cls("numeric", edges=np.asarray(data["edges"], dtype=np.float64))
        if kind == "categorical":
            known = data.get("known")
            return cls(
                "categorical",
                categories=tuple(data["categories"]),
                known=frozenset(str(k) for k in known) if known is not None else None,
            )
        raise ValueError(f"binning kind must be one of {KINDS}, got {kind!r}")


# --- the sketch ------------------------------------------------------------


def row_weights(weights: Any) -> np.ndarray:
    """``weights`` as a 1-D float64 array of finite values > 0 (1 / sample rate per row)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights must be 1-D, got shape {w.shape}")
    if w.size and not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise ValueError("weights must be finite and > 0 (1 / sample rate)")
    return w


def _validate_batch(
    values: np.ndarray, weights: np.ndarray, trace_ids: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"values must be a 1-D array, got shape {values.shape}")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != values.shape[0]:
        raise ValueError(
            f"weights must be a 1-D array as long as values ({values.shape[0]}), "
            f"got shape {w.shape}"
        )
    if w.size and not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise ValueError("weights must be finite and > 0 (1 / sample rate)")
    if trace_ids is not None and len(trace_ids) != values.shape[0]:
        raise ValueError(
            f"trace_ids must be as long as values ({values.shape[0]}), got {len(trace_ids)}"
        )
    return values, w


def _last_rows_per_bin(ids: np.ndarray, n_ids: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin, row) of the last ``limit`` rows of every bin, bin after bin, rows in order.

    ``ids``: a ``(k, n)`` matrix of bin ids in ``0..n_ids``, ``n_ids`` meaning no bin;
    every bin id occurs in one line only (lines are features with their own bins,
    rows the batch's rows). Bins with at most ``limit`` rows keep all of them; the
    others find theirs in a tail of the batch (usually a short one). Then only
    those rows are sorted by bin.
    """
    lines, size = ids.shape
    empty = np.empty(0, dtype=np.intp)
    counts = np.bincount(ids.ravel(), minlength=n_ids + 1)
    common = counts > limit
    common[n_ids] = False
    rare = (counts > 0) & ~common
    rare[n_ids] = False
    tail = min(size, 64 * limit)
    if tail < size and common.any():
        # Common bins find theirs in the tail; those with fewer than ``limit`` rows
        # there (sparse ones, usually few rows) are taken from the whole batch,
        # like the rare ones, instead of widening the tail for every bin.
        found = np.bincount(ids[:, size - tail :].ravel(), minlength=counts.size)
        everywhere = rare | (common & (found < limit))
        head = size - tail
        if everywhere.any():
            line, column = np.nonzero(everywhere[ids[:, :head]])
            early = line * size + column
        else:
            early = empty
        line, column = np.nonzero((common | rare)[ids[:, head:]])
        rows = np.concatenate([early, line * size + column + head])
    else:
        rows = np.flatnonzero((common | rare)[ids])
    if rows.size == 0:
        return empty, empty
    flat = ids.ravel()
    order = rows[np.argsort(flat[rows] * (lines * size) + rows)]
    sorted_bins = flat[order]
    boundary = np.flatnonzero(sorted_bins[1:] != sorted_bins[:-1]) + 1
    starts = np.concatenate(([0], boundary))
    ends = np.concatenate((boundary, [sorted_bins.size]))
    take = np.minimum(ends - starts, limit)
    first = np.cumsum(take) - take
    picks = np.arange(int(take.sum())) + np.repeat(ends - take - first, take)
    return np.repeat(sorted_bins[starts], take), order[picks] % size


def _remember_rows(
    slots: Sequence[list[str]],
    bins: np.ndarray,
    rows: np.ndarray,
    trace_ids: Sequence[str],
    limit: int,
) -> None:
    """Append the trace ids of ``rows`` to the exemplar slots of their ``bins``, in order."""
    for bin_index, row in zip(bins.tolist(), rows.tolist(), strict=True):
        trace_id = trace_ids[row]
        if not trace_id:
            continue
        trace_id = str(trace_id)
        slot = slots[bin_index]
        if trace_id in slot:
            slot.remove(trace_id)
        slot.append(trace_id)
        if len(slot) > limit:
            del slot[0]


class FeatureSketch:
    """Mergeable summary of one feature's values in a window (see module doc)."""

    def __init__(
        self,
        binning: Binning,
        *,
        reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
        exemplars_per_bin: int = DEFAULT_EXEMPLARS_PER_BIN,
        seed: int | None = 0,
    ) -> None:
        if reservoir_size < 0:
            raise ValueError(f"reservoir_size must be >= 0, got {reservoir_size}")
        if exemplars_per_bin < 0:
            raise ValueError(f"exemplars_per_bin must be >= 0, got {exemplars_per_bin}")
        self.binning = binning
        self.reservoir_size = int(reservoir_size)
        self.exemplars_per_bin = int(exemplars_per_bin)
        self._rng = np.random.default_rng(seed)
        self._counts = np.zeros(binning.n_bins, dtype=np.float64)
        self._n = 0
        self._weight = 0.0
        self._weight_sq = 0.0  # sum of squared weights of valid rows (Kish size)
        self._missing = 0.0
        self._missing_raw = 0
        self._unseen = 0.0
        self._unseen_raw = 0
        self._out_of_range = 0.0
        self._out_of_range_raw = 0
        # Priority sample: k + 1 items with the highest priorities w / u.
        self._res_values = np.empty(0, dtype=np.float64)
        self._res_weights = np.empty(0, dtype=np.float64)
        self._res_priorities = np.empty(0, dtype=np.float64)
        self._exemplars: list[list[str]] = [[] for _ in range(binning.n_bins)]

    # -- properties used by evaluation --

    @property
    def kind(self) -> FeatureKind:
        return self.binning.kind

    @property
    def counts(self) -> np.ndarray:
        """Weighted counts per bin (a copy), valid values only."""
        return self._counts.copy()

    @property
    def n(self) -> int:
        """Raw rows seen, missing included."""
        return self._n

    @property
    def weight(self) -> float:
        """Weighted rows seen, missing included."""
        return self._weight

    @property
    def n_valid(self) -> int:
        """Raw rows with a value (not missing)."""
        return self._n - self._missing_raw

    @property
    def valid_weight(self) -> float:
        """Weighted rows with a value (the sum of ``counts``)."""
        return float(self._counts.sum())

    @property
    def effective_n(self) -> float:
        """Kish effective sample size of the valid rows: ``(sum w)^2 / sum w^2``."""
        if self._weight_sq <= 0:
            return 0.0
        return self.valid_weight**2 / self._weight_sq

    @property
    def missing(self) -> float:
        return self._missing

    @property
    def missing_raw(self) -> int:
        return self._missing_raw

    @property
    def unseen(self) -> float:
        return self._unseen

    @property
    def unseen_raw(self) -> int:
        return self._unseen_raw

    @property
    def out_of_range(self) -> float:
        return self._out_of_range

    @property
    def out_of_range_raw(self) -> int:
        return self._out_of_range_raw

    def _kept(self) -> int:
        return min(self.reservoir_size, self._res_values.size)

    def _order(self) -> np.ndarray:
        return np.argsort(-self._res_priorities, kind="stable")[: self._kept()]

    def _tau(self) -> float:
        if self._res_priorities.size > self.reservoir_size:
            return float(self._res_priorities.min())
        return 0.0

    def reservoir_values(self) -> np.ndarray:
        """The sampled raw values (numeric features; empty for categoricals)."""
        return self._res_values[self._order()].copy()

    def reservoir_weights(self) -> np.ndarray:
        """Estimated weights of the sampled values: ``max(w, tau)``.

        Weighted by these, the sample estimates the weighted distribution of every
        value seen without bias; when nothing was dropped they are the weights.
        """
        return np.maximum(self._res_weights[self._order()], self._tau())

    def exemplars(self, bin_index: int) -> list[str]:
        """The most recent trace ids whose values fell into ``bin_index``."""
        if not -self.binning.n_bins <= bin_index < self.binning.n_bins:
            raise IndexError(f"bin {bin_index} out of range 0..{self.binning.n_bins - 1}")
        return list(self._exemplars[bin_index])

    # -- update / merge --

    def update(
        self,
        values: np.ndarray,
        weights: np.ndarray,
        trace_ids: Sequence[str] | None = None,
    ) -> None:
        """Add a batch of values with their weights (and optional trace ids per row)."""
        values, w = _validate_batch(values, weights, trace_ids)
        self.update_checked(values, w, trace_ids)

    def update_checked(
        self,
        values: np.ndarray,
        w: np.ndarray,
        trace_ids: Sequence[str] | None = None,
        codes: tuple[list[str], np.ndarray] | None = None,
    ) -> None:
        """``update`` for callers that already validated the batch: ``values`` 1-D,
        ``w`` float64 weights as long, finite and > 0, ``trace_ids`` as long or None;
        ``codes``: ``category_codes(values)`` of a categorical batch, if known."""
        if int(values.shape[0]) == 0:
            return
        bins = self._update_bins(values, w, codes)
        if trace_ids is not None and self.exemplars_per_bin:
            self._add_exemplars(bins, trace_ids)

    def _update_bins(
        self,
        values: np.ndarray,
        w: np.ndarray,
        codes: tuple[list[str], np.ndarray] | None = None,
    ) -> np.ndarray:
        """``update_checked`` of a non-empty batch without its exemplars: the bin of
        each row (negative: missing)."""
        n_rows = int(values.shape[0])
        unseen: np.ndarray | None = None
        out_of_range: np.ndarray | None = None
        n_bins = self.binning.n_bins
        if self.binning.kind == "numeric":
            x, missing, bins = self.binning.assign_numeric(values)
            out_of_range = (bins == 0) | (bins == n_bins - 1)
        else:
            missing, unseen, bins = self.binning.assign_categorical(values, codes)
        missing_raw = int(np.count_nonzero(missing))
        self._n += n_rows
        self._weight += float(w.sum())
        self._missing_raw += missing_raw
        if missing_raw:
            valid = ~missing
            self._missing += float(w[missing].sum())
            wv = w[valid]
            bv = bins[valid]
        else:
            valid = None
            wv, bv = w, bins
        self._weight_sq += _sum_of_squares(wv)
        self._counts += np.bincount(bv, weights=wv, minlength=n_bins)
        if unseen is not None:
            self._unseen += float(w[unseen].sum())
            self._unseen_raw += int(unseen.sum())
        if out_of_range is not None:
            self._out_of_range += float(w[out_of_range].sum())
            self._out_of_range_raw += int(np.count_nonzero(out_of_range))
            finite = np.isfinite(x)
            if valid is not None:
                finite &= valid
            if finite.all():
                self._sample(x, w)
            else:
                self._sample(x[finite], w[finite])
        return bins

    def _sample(self, values: np.ndarray, weights: np.ndarray) -> None:
        if self.reservoir_size == 0 or values.size == 0:
            return
        u = 1.0 - self._rng.random(values.size)  # uniform on (0, 1]
        priorities = weights / u
        if self._res_priorities.size > self.reservoir_size:
            # Full: only items above the lowest kept priority can enter.
            enter = priorities > self._res_priorities.min()
            if not enter.any():
                return
            values, weights, priorities = values[enter], weights[enter], priorities[enter]
        self._keep_top(
            np.concatenate([self._res_values, values]),
            np.concatenate([self._res_weights, weights]),
            np.concatenate([self._res_priorities, priorities]),
        )

    def _keep_top(self, values: np.ndarray, weights: np.ndarray, priorities: np.ndarray) -> None:
        keep = self.reservoir_size + 1
        if priorities.size > keep:
            top = np.argpartition(-priorities, keep - 1)[:keep]
            values, weights, priorities = values[top], weights[top], priorities[top]
        self._res_values, self._res_weights, self._res_priorities = values, weights, priorities

    def _add_exemplars(self, bins: np.ndarray, trace_ids: Sequence[str]) -> None:
        limit = self.exemplars_per_bin
        if bins.size <= limit:  # small batches (typically one row per span)
            for row, bin_index in enumerate(bins.tolist()):
                if bin_index >= 0 and trace_ids[row]:
                    self._remember(self._exemplars[bin_index], str(trace_ids[row]))
            return
        n_bins = self.binning.n_bins
        ids = np.where(bins >= 0, bins, n_bins)
        picked_bins, picked_rows = _last_rows_per_bin(ids[None, :], n_bins, limit)
        _remember_rows(self._exemplars, picked_bins, picked_rows, trace_ids, limit)

    def _remember(self, slot: list[str], trace_id: str) -> None:
        """Append ``trace_id`` as the most recent exemplar of a bin, keeping the last few."""
        if trace_id in slot:
            slot.remove(trace_id)
        slot.append(trace_id)
        if len(slot) > self.exemplars_per_bin:
            del slot[0]

    def merge(self, other: FeatureSketch) -> FeatureSketch:
        """Add ``other`` into this sketch (in place) and return ``self``.

        Counts and counters add exactly; the sample keeps the highest priorities of
        both, which is the sample one sketch would have kept from all the items;
        ``other``'s exemplars count as the more recent ones.
        """
        if not isinstance(other, FeatureSketch):
            raise TypeError(f"can only merge a FeatureSketch, got {type(other).__name__}")
        if not self.binning.same_as(other.binning):
            raise ValueError("cannot merge sketches built on different bins")
        self._counts += other._counts
        self._n += other._n
        self._weight += other._weight
        self._weight_sq += other._weight_sq
        self._missing += other._missing
        self._missing_raw += other._missing_raw
        self._unseen += other._unseen
        self._unseen_raw += other._unseen_raw
        self._out_of_range += other._out_of_range
        self._out_of_range_raw += other._out_of_range_raw
        if self.reservoir_size:
            self._keep_top(
                np.concatenate([self._res_values, other._res_values]),
                np.concatenate([self._res_weights, other._res_weights]),
                np.concatenate([self._res_priorities, other._res_priorities]),
            )
        limit = self.exemplars_per_bin
        for mine, theirs in zip(self._exemplars, other._exemplars, strict=True):
            for trace_id in theirs:
                if trace_id in mine:
                    mine.remove(trace_id)
                mine.append(trace_id)
            del mine[: max(len(mine) - limit, 0)]
        return self

    def copy(self) -> FeatureSketch:
        """An independent copy (same state, same random stream), without a round trip
        through ``to_dict``."""
        clone = object.__new__(FeatureSketch)
        for name, value in self.__dict__.items():
            if isinstance(value, np.ndarray):
                value = value.copy()
            clone.__dict__[name] = value
        clone._exemplars = [list(slot) for slot in self._exemplars]
        rng = np.random.default_rng(0)
        rng.bit_generator.state = self._rng.bit_generator.state
        clone._rng = rng
        return clone

    # -- serialisation --

    def to_dict(self, *, include_binning: bool = True) -> dict[str, Any]:
        """JSON-able state. Without the binning (a window stores it once, in the
        reference), ``from_dict`` needs it passed back."""
        state: dict[str, Any] = {
            "counts": [float(c) for c in self._counts],
            "n": self._n,
            "weight": self._weight,
            "weight_sq": self._weight_sq,
            "missing": self._missing,
            "missing_raw": self._missing_raw,
            "unseen": self._unseen,
            "unseen_raw": self._unseen_raw,
            "out_of_range": self._out_of_range,
            "out_of_range_raw": self._out_of_range_raw,
            "reservoir_size": self.reservoir_size,
            "exemplars_per_bin": self.exemplars_per_bin,
            "reservoir": {
                "values": encode_array(self._res_values),
                "weights": encode_array(self._res_weights),
                "priorities": encode_array(self._res_priorities),
            },
            "exemplars": [list(slot) for slot in self._exemplars],
            "rng": self._rng.bit_generator.state,
        }
        if include_binning:
            state["binning"] = self.binning.to_dict()
        return state

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], binning: Binning | None = None) -> FeatureSketch:
        """Rebuild a sketch from ``to_dict`` output; ``ValueError`` if it is inconsistent."""
        try:
            if binning is None:
                if "binning" not in data:
                    raise ValueError("sketch state has no binning and none was given")
                binning = Binning.from_dict(data["binning"])
            sketch = cls(
                binning,
                reservoir_size=int(data["reservoir_size"]),
                exemplars_per_bin=int(data["exemplars_per_bin"]),
                seed=None,
            )
            counts = np.asarray(data["counts"], dtype=np.float64)
            if counts.shape != (binning.n_bins,):
                raise ValueError(
                    f"sketch has {counts.size} bin counts but its binning has {binning.n_bins} bins"
                )
            sketch._counts = counts
            sketch._n = int(data["n"])
            sketch._weight = float(data["weight"])
            sketch._weight_sq = float(data["weight_sq"])
            sketch._missing = float(data["missing"])
            sketch._missing_raw = int(data["missing_raw"])
            sketch._unseen = float(data["unseen"])
            sketch._unseen_raw = int(data["unseen_raw"])
            sketch._out_of_range = float(data["out_of_range"])
            sketch._out_of_range_raw = int(data["out_of_range_raw"])
            res = data["reservoir"]
            values = decode_array(res["values"])
            weights = decode_array(res["weights"])
            priorities = decode_array(res["priorities"])
            if not values.size == weights.size == priorities.size:
                raise ValueError("sketch reservoir arrays differ in length")
            if values.size > sketch.reservoir_size + 1:
                raise ValueError("sketch reservoir holds more items than its size")
            sketch._res_values, sketch._res_weights = values, weights
            sketch._res_priorities = priorities
            exemplars = [[str(t) for t in slot] for slot in data["exemplars"]]
            if len(exemplars) != binning.n_bins:
                raise ValueError("sketch exemplar slots do not match its bins")
            sketch._exemplars = [
                slot[-sketch.exemplars_per_bin :] if sketch.exemplars_per_bin else []
                for slot in exemplars
            ]
            sketch._rng.bit_generator.state = data["rng"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed sketch state: {exc!r}") from exc
        return sketch

    def __repr__(self) -> str:
        return (
            f"FeatureSketch(kind={self.kind!r}, bins={self.binning.n_bins}, n={self._n}, "
            f"weight={self._weight:g}, missing={self._missing:g})"
        )


# ``Binning.assign_numeric`` counts the edges below each value (instead of binary
# searches) for at most this many edges and at least this many values.
_COUNTED_EDGES = 64
_COUNTED_VALUES = 1024


def _count_edges(edges: np.ndarray, n: int) -> bool:
    """Whether counting the edges ``<= x`` gives ``searchsorted``'s bins faster: few
    edges, many values, the edges strictly increasing (no NaN)."""
    return (
        n >= _COUNTED_VALUES
        and edges.size <= _COUNTED_EDGES
        and bool((edges[1:] > edges[:-1]).all())
    )


def _assign_numeric_rows(
    sketches: Sequence[FeatureSketch], columns: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """``Binning.assign_numeric`` of every column at once: ``(k, n)`` float values and
    bins (the bins of missing values are meaningless: NaN values mark them).

    The bin is the number of edges ``<= x`` (what ``searchsorted(side="right")``
    gives), counted with one comparison per edge over all features (edges padded
    with NaN, which compares false), except at the top: the maximum itself belongs
    to the last inner bin, larger values to the overflow bin.
    """
    edges = [s.binning.edges for s in sketches]
    assert all(e is not None for e in edges)
    sizes = np.array([e.size for e in edges], dtype=np.intp)  # type: ignore[union-attr]
    x = np.empty((len(columns), columns[0].shape[0]), dtype=np.float64)
    for i, values in enumerate(columns):
        x[i] = as_float(values)
    padded = np.full((len(edges), int(sizes.max())), np.nan)
    for i, e in enumerate(edges):
        padded[i, : sizes[i]] = e
    # Counted in bytes when they fit (a quarter of the memory traffic of intp).
    counted = np.zeros(x.shape, dtype=np.uint8 if padded.shape[1] < 255 else np.intp)
    above = np.empty(x.shape, dtype=bool)
    for j in range(padded.shape[1]):
        np.greater_equal(x, padded[:, j : j + 1], out=above)
        counted += above.view(np.uint8) if counted.dtype == np.uint8 else above
    bins = counted.astype(np.intp)
    top = padded[np.arange(len(edges)), sizes - 1]
    bins[(bins == sizes[:, None]) & (x == top[:, None])] -= 1
    for i in np.flatnonzero(sizes == 1).tolist():  # a constant reference column
        bins[i] = sketches[i].binning.assign_numeric(columns[i])[2]
    return x, bins


def update_numeric_sketches(
    sketches: Sequence[FeatureSketch],
    columns: Sequence[np.ndarray],
    w: np.ndarray,
    trace_ids: Sequence[str] | None = None,
) -> None:
    """``update_checked`` of several numeric sketches fed the same rows, at once.

    ``columns[i]`` (1-D, as long as ``w``) goes into ``sketches[i]``; ``w`` and
    ``trace_ids`` are validated as for ``update_checked``. The bins of every feature
    go into one matrix of bin ids offset per feature: one ``bincount`` gives all the
    counts (each bin still sums its weights in row order, so the state is exactly
    the one of per-sketch updates) and one pass picks the exemplars of all features.
    Each sketch keeps its own random draws for its sample.
    """
    if len(sketches) != len(columns):
        raise ValueError(f"{len(sketches)} sketches for {len(columns)} columns")
    n_rows = int(w.shape[0])
    if n_rows == 0 or not sketches:
        return
    limit = sketches[0].exemplars_per_bin
    if (
        len(sketches) == 1
        or n_rows <= limit
        or any(s.kind != "numeric" or s.exemplars_per_bin != limit for s in sketches)
    ):
        for sketch, values in zip(sketches, columns, strict=True):
            sketch.update_checked(values, w, trace_ids)
        return
    sizes = np.array([s.binning.n_bins for s in sketches], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    n_ids = int(offsets[-1])  # the id of missing values
    x, bins = _assign_numeric_rows(sketches, columns)
    missing = np.isnan(x)
    ids = bins  # offset in place: a second (k, n) array is a fresh block of pages per batch
    ids += offsets[:-1, None]
    ids[missing] = n_ids
    counts = np.bincount(ids.ravel(), weights=np.tile(w, len(sketches)), minlength=n_ids + 1)
    missing_raw = np.count_nonzero(missing, axis=1).tolist()
    out_of_range = (ids == offsets[:-1, None]) | (ids == offsets[1:, None] - 1)
    out_of_range_raw = np.count_nonzero(out_of_range, axis=1).tolist()
    finite = np.isfinite(x)
    all_finite = finite.all(axis=1).tolist()
    weight = float(w.sum())
    weight_sq = _sum_of_squares(w)
    for i, sketch in enumerate(sketches):
        sketch._n += n_rows
        sketch._weight += weight
        sketch._missing_raw += missing_raw[i]
        if missing_raw[i]:
            sketch._missing += float(w[missing[i]].sum())
            wv = w[~missing[i]]
            sketch._weight_sq += _sum_of_squares(wv)
        else:
            sketch._weight_sq += weight_sq
        sketch._counts += counts[offsets[i] : offsets[i + 1]]
        if out_of_range_raw[i]:
            sketch._out_of_range += float(w[out_of_range[i]].sum())
            sketch._out_of_range_raw += out_of_range_raw[i]
        if all_finite[i]:
            sketch._sample(x[i], w)
        else:
            sketch._sample(x[i][finite[i]], w[finite[i]])
    if trace_ids is not None and limit:
        slots = [slot for sketch in sketches for slot in sketch._exemplars]
        picked_bins, picked_rows = _last_rows_per_bin(ids, n_ids, limit)
        _remember_rows(slots, picked_bins, picked_rows, trace_ids, limit)


def update_categorical_sketches(
    sketches: Sequence[FeatureSketch],
    columns: Sequence[np.ndarray],
    w: np.ndarray,
    trace_ids: Sequence[str] | None = None,
    codes: Sequence[tuple[list[str], np.ndarray] | None] | None = None,
) -> None:
    """``update_checked`` of several sketches fed the same rows (``codes[i]``: the
    category codes of ``columns[i]`` or None), their exemplars picked in one pass over
    the bins of all features offset per feature (the same exemplars as one
    ``update_checked`` per sketch)."""
    if len(sketches) != len(columns):
        raise ValueError(f"{len(sketches)} sketches for {len(columns)} columns")
    known = list(codes) if codes is not None else [None] * len(sketches)
    n_rows = int(w.shape[0])
    if n_rows == 0 or not sketches:
        return
    limit = sketches[0].exemplars_per_bin
    if (
        trace_ids is None
        or not limit
        or len(sketches) == 1
        or n_rows <= limit
        or any(s.exemplars_per_bin != limit for s in sketches)
        or len({id(s) for s in sketches}) < len(sketches)
    ):
        for sketch, values, code in zip(sketches, columns, known, strict=True):
            sketch.update_checked(values, w, trace_ids, codes=code)
        return
    sizes = [s.binning.n_bins for s in sketches]
    offsets = np.concatenate(([0], np.cumsum(sizes))).tolist()
    n_ids = int(offsets[-1])  # no bin: missing values
    ids = np.empty((len(sketches), n_rows), dtype=np.intp)
    for i, (sketch, values, code) in enumerate(zip(sketches, columns, known, strict=True)):
        bins = sketch._update_bins(values, w, code)
        np.add(bins, offsets[i], out=ids[i])
        ids[i][bins < 0] = n_ids
    slots = [slot for sketch in sketches for slot in sketch._exemplars]
    picked_bins, picked_rows = _last_rows_per_bin(ids, n_ids, limit)
    _remember_rows(slots, picked_bins, picked_rows, trace_ids, limit)
