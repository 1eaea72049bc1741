"""Whole captured rows for multivariate drift: ``RowLayout`` and ``RowReservoir``.

The per-feature reservoirs of ``FeatureSketch`` do not keep a row's values
together, so joint-distribution tests need their own sample of whole rows.

``RowLayout`` turns columns of captured values into a float matrix, one column
per joint feature: numeric values as floats, categorical values as the index of
their reference bin (``0..K-1`` the reference's top categories, ``K`` other),
missing values as NaN. The same encoding is used for the reference rows, so both
sides meet on the same matrix.

``RowReservoir`` is a bounded weighted sample of such rows (or of embedding
vectors), with the trace id and weight (``1 / ml.sample.rate``) of each row.
Priority sampling, like ``FeatureSketch``'s value reservoir (priority ``w / u``,
keep the ``k + 1`` highest, estimated weight ``max(w, tau)``), so replicas and
panes merge exactly: the merge keeps the rows one reservoir would have kept.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .sketches import Binning, as_float, decode_array, encode_array, row_weights

DEFAULT_ROW_RESERVOIR_SIZE = 2000
# Whole rows a reference keeps (stored as float32: about 5 KB per column).
DEFAULT_REFERENCE_ROWS = 1000
# At most this many features enter the joint rows (the first ones of the reference).
MAX_JOINT_COLUMNS = 64
MAX_ROW_WIDTH = 1024


@dataclass(frozen=True, eq=False)
class RowLayout:
    """The joint columns: their names and bins (numeric, or categorical codes)."""

    names: tuple[str, ...]
    binnings: tuple[Binning, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.binnings):
            raise ValueError("a row layout needs one binning per column")
        if len(set(self.names)) != len(self.names):
            raise ValueError("row layout column names must be distinct")

    @property
    def width(self) -> int:
        return len(self.names)

    def categories(self) -> list[int | None]:
        """Per column: None when numeric, else the number of codes (top-K + other)."""
        return [None if b.kind == "numeric" else b.n_bins for b in self.binnings]

    def encode(
        self,
        columns: Mapping[str, np.ndarray],
        n: int,
        codes: Mapping[str, tuple[list[str], np.ndarray]] | None = None,
    ) -> np.ndarray:
        """``(n, width)`` float matrix of the rows (absent columns are all missing).

        ``codes``: ``category_codes`` of categorical columns, when the caller has them."""
        out = np.full((n, self.width), np.nan, dtype=np.float64)
        for j, (name, binning) in enumerate(zip(self.names, self.binnings, strict=True)):
            values = columns.get(name)
            if values is None:
                continue
            values = np.asarray(values)
            if values.shape != (n,):
                raise ValueError(f"column {name!r} must have {n} values, got {values.shape}")
            if binning.kind == "numeric":
                x = as_float(values)
                out[:, j] = np.where(np.isfinite(x), x, np.nan)
            else:
                _, _, bins = binning.assign_categorical(
                    values, None if codes is None else codes.get(name)
                )
                out[:, j] = np.where(bins >= 0, bins, np.nan)
        return out


def encode_float32(array: np.ndarray) -> str:
    """Compact text of a float array stored as float32 (base64 of little-endian bytes).

    Reference samples use it: half the size of float64, and 7 significant digits
    are far below any drift statistic's resolution."""
    data = np.ascontiguousarray(np.asarray(array, dtype=np.float64).ravel(), dtype="<f4")
    return base64.b64encode(data.tobytes()).decode("ascii")


def decode_float32(text: str) -> np.ndarray:
    """Inverse of ``encode_float32`` (as float64)."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 4:
        raise ValueError("encoded float32 array has a length that is not a multiple of 4")
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)


class RowReservoir:
    """A bounded, mergeable weighted sample of rows of a fixed width (see module doc)."""

    def __init__(self, width: int, size: int = DEFAULT_ROW_RESERVOIR_SIZE, seed: int | None = 0):
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_ROW_WIDTH:
            raise ValueError(f"row width must be an integer in [1, {MAX_ROW_WIDTH}], got {width!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"row reservoir size must be a positive integer, got {size!r}")
        self.width = width
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._rows = np.empty((0, width), dtype=np.float64)
        self._weights = np.empty(0, dtype=np.float64)
        self._priorities = np.empty(0, dtype=np.float64)
        self._ids: list[str] = []
        self.seen = 0  # raw rows offered

    def __len__(self) -> int:
        return min(self.size, self._weights.size)

    def update(
        self, rows: np.ndarray, weights: np.ndarray, trace_ids: Sequence[str] | None = None
    ) -> None:
        """Offer ``rows`` (``(n, width)``) with their weights and optional trace ids."""
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.width:
            raise ValueError(f"rows must have shape (n, {self.width}), got {x.shape}")
        if np.shape(weights) != (x.shape[0],):
            raise ValueError(f"weights must have shape ({x.shape[0]},), got {np.shape(weights)}")
        self.update_lazy(lambda picked: x if picked is None else x[picked], weights, trace_ids)

    def update_lazy(
        self,
        rows_of: Callable[[np.ndarray | None], np.ndarray],
        weights: np.ndarray,
        trace_ids: Sequence[str] | None = None,
    ) -> None:
        """``update`` for callers whose rows cost something to build: ``rows_of(None)``
        gives all ``(n, width)`` rows, ``rows_of(index)`` only the rows ``index``; a
        full reservoir asks only for the rows that enter it (same state as ``update``)."""
        w = row_weights(weights)
        n = int(w.shape[0])
        if trace_ids is not None and len(trace_ids) != n:
            raise ValueError(f"trace_ids has {len(trace_ids)} entries for {n} rows")
        if n == 0:
            return
        self.seen += n
        priorities = w / (1.0 - self._rng.random(n))
        picked: np.ndarray | None = None
        if self._priorities.size > self.size:
            picked = np.flatnonzero(priorities > self._priorities.min())
            if picked.size == 0:
                return
            w, priorities = w[picked], priorities[picked]
        x = np.asarray(rows_of(picked), dtype=np.float64)
        if x.shape != (w.size, self.width):
            raise ValueError(f"rows must have shape ({w.size}, {self.width}), got {x.shape}")
        if trace_ids is None:
            ids = [""] * int(w.size)
        else:
            chosen = trace_ids if picked is None else [trace_ids[i] for i in picked.tolist()]
            ids = [str(t) if t else "" for t in chosen]
        self._keep_top(
            np.concatenate([self._rows, x]),
            np.concatenate([self._weights, w]),
            np.concatenate([self._priorities, priorities]),
            self._ids + ids,
        )

    def _keep_top(
        self, rows: np.ndarray, weights: np.ndarray, priorities: np.ndarray, ids: list[str]
    ) -> None:
        keep = self.size + 1
        if priorities.size > keep:
            top = np.sort(np.argpartition(-priorities, keep - 1)[:keep])
            rows, weights, priorities = rows[top], weights[top], priorities[top]
            ids = [ids[i] for i in top.tolist()]
        self._rows, self._weights, self._priorities, self._ids = rows, weights, priorities, ids

    def merge(self, other: RowReservoir) -> RowReservoir:
        """Add ``other`` into this reservoir (in place) and return ``self``."""
        if not isinstance(other, RowReservoir):
            raise TypeError(f"can only merge a RowReservoir, got {type(other).__name__}")
        if other.width != self.width:
            raise ValueError(f"cannot merge rows of width {other.width} into width {self.width}")
        self.seen += other.seen
        self._keep_top(
            np.concatenate([self._rows, other._rows]),
            np.concatenate([self._weights, other._weights]),
            np.concatenate([self._priorities, other._priorities]),
            self._ids + other._ids,
        )
        return self

    def _order(self) -> np.ndarray:
        return np.argsort(-self._priorities, kind="stable")[: len(self)]

    def _tau(self) -> float:
        return float(self._priorities.min()) if self._priorities.size > self.size else 0.0

    def rows(self) -> np.ndarray:
        """The sampled rows, ``(len(self), width)`` (a copy)."""
        return self._rows[self._order()].copy()

    def weights(self) -> np.ndarray:
        """Estimated weights of the sampled rows: ``max(w, tau)`` (unbiased for sums)."""
        return np.maximum(self._weights[self._order()], self._tau())

    def trace_ids(self) -> list[str]:
        """Trace id of each sampled row (``""`` when unknown), aligned with ``rows()``."""
        return [self._ids[i] for i in self._order().tolist()]

    def copy(self) -> RowReservoir:
        """An independent copy (same rows, same random stream), without a round trip
        through ``to_dict``."""
        clone = object.__new__(RowReservoir)
        clone.width, clone.size, clone.seen = self.width, self.size, self.seen
        clone._rows = self._rows.copy()
        clone._weights = self._weights.copy()
        clone._priorities = self._priorities.copy()
        clone._ids = list(self._ids)
        clone._rng = np.random.default_rng(0)
        clone._rng.bit_generator.state = self._rng.bit_generator.state
        return clone

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "size": self.size,
            "seen": self.seen,
            "rows": encode_array(self._rows.ravel()),
            "weights": encode_array(self._weights),
            "priorities": encode_array(self._priorities),
            "trace_ids": list(self._ids),
            "rng": self._rng.bit_generator.state,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowReservoir:
        """Rebuild from ``to_dict`` output; ``ValueError`` if it is inconsistent."""
        try:
            reservoir = cls(int(data["width"]), int(data["size"]), seed=None)
            weights = decode_array(data["weights"])
            priorities = decode_array(data["priorities"])
            flat = decode_array(data["rows"])
            ids = [str(t) for t in data["trace_ids"]]
            n = weights.size
            if priorities.size != n or len(ids) != n or flat.size != n * reservoir.width:
                raise ValueError("row reservoir arrays differ in length")
            if n > reservoir.size + 1:
                raise ValueError("row reservoir holds more rows than its size")
            reservoir._rows = flat.reshape(n, reservoir.width)
            reservoir._weights, reservoir._priorities, reservoir._ids = weights, priorities, ids
            reservoir.seen = int(data["seen"])
            reservoir._rng.bit_generator.state = data["rng"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed row reservoir state: {exc!r}") from exc
        return reservoir

    def __repr__(self) -> str:
        return f"RowReservoir(width={self.width}, size={self.size}, kept={len(self)})"
