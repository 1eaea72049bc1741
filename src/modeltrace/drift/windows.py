"""The production window of one (model, version): tumbling panes of sketches.

Captured rows go into the current *pane* (a dict feature -> ``FeatureSketch``
built on the reference's bins). Panes are merged on demand into the window:

* a sliding **time** window (default): panes of ``pane_seconds`` (default 5
  minutes) aligned on the epoch; the window holds the panes that end after
  ``watermark - window_seconds`` (default the last hour), the watermark being the
  latest timestamp seen (or the ``now`` given to ``expire``/``current``);
* a **count** window (``count=N``): panes of ``pane_rows`` rows (default N/10);
  the window holds the newest panes that together cover the last N rows.

State is bounded whatever the traffic: a bounded number of panes, each holding
at most one bounded sketch per tracked feature. Features missing from the
reference, and reference features beyond ``max_features``, are not tracked:
their rows are counted (and a few names kept) for the report, never stored.
Windows of several replicas merge exactly (``merge``): pane counts add and
reservoirs merge by weight (give replicas different seeds, or none, so their
samples are independent).

For multivariate drift each pane also keeps bounded samples of whole rows
(``rows.RowReservoir``): the joint rows of the reference's row layout, and the
projected embeddings (plus norms) of rows whose projection is the reference's.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .reference import Reference
from .rows import DEFAULT_ROW_RESERVOIR_SIZE, RowReservoir
from .sketches import (
    DEFAULT_EXEMPLARS_PER_BIN,
    Binning,
    FeatureSketch,
    category_codes,
    row_weights,
    update_categorical_sketches,
    update_numeric_sketches,
)

STATE_FORMAT = "modeltrace.window"
STATE_VERSION = 1
DEFAULT_MAX_FEATURES = 500
# Names of untracked features remembered for the report (the counts are exact).
MAX_REPORTED_NAMES = 20


def reference_fingerprint(reference: Reference) -> str:
    """A short hash of the reference's bins: window states only load on the same bins."""
    parts: list[Any] = [[name, f.binning.to_dict()] for name, f in reference.features.items()]
    # Row samples are part of the state only when the reference has them (older
    # references keep their fingerprint).
    if reference.rows is not None:
        parts.append(["__rows__", list(reference.rows.columns)])
    if reference.embedding is not None:
        parts.append(["__embedding__", reference.embedding.projection])
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


_PANE_IDS = itertools.count()


@dataclass
class Pane:
    """One tumbling pane: its key (start time, or sequence number for count
    windows), its rows, the time span of its data and one sketch per feature.
    ``uid`` and ``revision`` (bumped when its sketches change) key the window's
    cache of merged panes."""

    key: float
    rows: int = 0
    weight: float = 0.0
    first_ts: float = math.inf
    last_ts: float = -math.inf
    sketches: dict[str, FeatureSketch] = field(default_factory=dict)
    joint: RowReservoir | None = None
    embedded: RowReservoir | None = None
    uid: int = field(default_factory=lambda: next(_PANE_IDS), compare=False, repr=False)
    revision: int = field(default=0, compare=False, repr=False)


@dataclass
class WindowCounters:
    """What the window refused to track, for data-quality reporting."""

    unknown_feature_rows: int = 0
    unknown_features: list[str] = field(default_factory=list)
    capped_feature_rows: int = 0
    capped_features: list[str] = field(default_factory=list)
    late_rows: int = 0
    # Embedding rows recorded with another projection than the reference's.
    embedding_mismatch_rows: int = 0

    def note_unknown(self, name: str, rows: int) -> None:
        self.unknown_feature_rows += rows
        if name not in self.unknown_features and len(self.unknown_features) < MAX_REPORTED_NAMES:
            self.unknown_features.append(name)

    def note_capped(self, name: str, rows: int) -> None:
        self.capped_feature_rows += rows
        if name not in self.capped_features and len(self.capped_features) < MAX_REPORTED_NAMES:
            self.capped_features.append(name)

    def add(self, other: WindowCounters) -> None:
        self.unknown_feature_rows += other.unknown_feature_rows
        for name in other.unknown_features:
            self.note_unknown(name, 0)
        self.capped_feature_rows += other.capped_feature_rows
        for name in other.capped_features:
            self.note_capped(name, 0)
        self.late_rows += other.late_rows
        self.embedding_mismatch_rows += other.embedding_mismatch_rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "unknown_feature_rows": self.unknown_feature_rows,
            "unknown_features": list(self.unknown_features),
            "capped_feature_rows": self.capped_feature_rows,
            "capped_features": list(self.capped_features),
            "late_rows": self.late_rows,
            "embedding_mismatch_rows": self.embedding_mismatch_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowCounters:
        return cls(
            unknown_feature_rows=int(data.get("unknown_feature_rows", 0)),
            unknown_features=[str(n) for n in data.get("unknown_features", [])][
                :MAX_REPORTED_NAMES
            ],
            capped_feature_rows=int(data.get("capped_feature_rows", 0)),
            capped_features=[str(n) for n in data.get("capped_features", [])][:MAX_REPORTED_NAMES],
            late_rows=int(data.get("late_rows", 0)),
            embedding_mismatch_rows=int(data.get("embedding_mismatch_rows", 0)),
        )


def _positive(name: str, value: float) -> float:
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


class ModelWindow:
    """Tumbling panes merged into a sliding time window or a count window."""

    def __init__(
        self,
        reference: Reference,
        pane_seconds: float = 300.0,
        window_seconds: float = 3600.0,
        count: int | None = None,
        max_features: int = DEFAULT_MAX_FEATURES,
        *,
        pane_rows: int | None = None,
        reservoir_size: int | None = None,
        exemplars_per_bin: int = DEFAULT_EXEMPLARS_PER_BIN,
        seed: int | None = None,
        row_reservoir_size: int = DEFAULT_ROW_RESERVOIR_SIZE,
    ) -> None:
        if not isinstance(reference, Reference):
            raise TypeError(f"reference must be a Reference, got {type(reference).__name__}")
        self.reference = reference
        self.pane_seconds = _positive("pane_seconds", pane_seconds)
        self.window_seconds = _positive("window_seconds", window_seconds)
        if self.window_seconds < self.pane_seconds:
            raise ValueError(
                f"window_seconds ({window_seconds}) must be >= pane_seconds ({pane_seconds})"
            )
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a positive integer or None, got {count!r}")
        self.count = count
        if pane_rows is None:
            pane_rows = max(1, math.ceil(count / 10)) if count is not None else 0
        elif not isinstance(pane_rows, int) or pane_rows < 1:
            raise ValueError(f"pane_rows must be a positive integer, got {pane_rows!r}")
        self.pane_rows = pane_rows
        if not isinstance(max_features, int) or max_features < 1:
            raise ValueError(f"max_features must be a positive integer, got {max_features!r}")
        self.max_features = max_features
        if reservoir_size is not None and reservoir_size < 0:
            raise ValueError(f"reservoir_size must be >= 0, got {reservoir_size}")
        self.reservoir_size = reservoir_size
        self.exemplars_per_bin = exemplars_per_bin
        if (
            isinstance(row_reservoir_size, bool)
            or not isinstance(row_reservoir_size, int)
            or row_reservoir_size < 1
        ):
            raise ValueError(
                f"row_reservoir_size must be a positive integer, got {row_reservoir_size!r}"
            )
        self.row_reservoir_size = row_reservoir_size
        self._layout = reference.row_layout()
        # Embedding rows: the k projected values, then the original vector's norm.
        self._embedding_width = (
            reference.embedding.dim + 1 if reference.embedding is not None else 0
        )
        # Without a seed, fresh entropy: replicas then sample independently, which
        # keeps merged reservoirs a proper weighted sample. The seed is part of the
        # state, so a restored window continues the same random streams.
        if seed is None:
            entropy = np.random.SeedSequence().entropy
            seed = entropy if isinstance(entropy, int) else 0
        self.seed = int(seed)
        names = list(reference.features)
        self._tracked: dict[str, int] = {n: i for i, n in enumerate(names[:max_features])}
        self._fingerprint = reference_fingerprint(reference)
        self._panes: dict[float, Pane] = {}
        # current(): the merge of all live panes but the newest, by their (uid, revision).
        self._merged_cache: tuple[tuple[tuple[int, int], ...], dict[str, FeatureSketch]] | None
        self._merged_cache = None
        self._watermark = -math.inf
        self._next_seq = 0
        self.counters = WindowCounters()

    # -- introspection --

    @property
    def mode(self) -> str:
        return "count" if self.count is not None else "time"

    @property
    def tracked_features(self) -> list[str]:
        return list(self._tracked)

    @property
    def panes(self) -> list[Pane]:
        """The live panes, oldest first."""
        return [self._panes[k] for k in sorted(self._panes)]

    @property
    def watermark(self) -> float:
        """The latest timestamp seen (``-inf`` before any data)."""
        return self._watermark

    @property
    def rows(self) -> int:
        """Raw rows in the live panes."""
        return sum(p.rows for p in self._panes.values())

    @property
    def weight(self) -> float:
        """Weighted rows in the live panes."""
        return sum(p.weight for p in self._panes.values())

    def bounds(self) -> tuple[float | None, float | None]:
        """(start, end) of the data in the window, ``(None, None)`` when empty."""
        panes = list(self._panes.values())
        if not panes:
            return None, None
        if self.count is None:
            start = min(p.key for p in panes)
            return start, max(self._watermark, start)
        return min(p.first_ts for p in panes), max(p.last_ts for p in panes)

    # -- update --

    def _binning(self, name: str) -> Binning:
        return self.reference.features[name].binning

    def _new_sketch(self, name: str, pane_key: float) -> FeatureSketch:
        feature = self.reference.features[name]
        pane_number = int(pane_key // self.pane_seconds) if self.count is None else int(pane_key)
        sequence = np.random.SeedSequence([self.seed, pane_number % 2**32, self._tracked[name]])
        return feature.new_sketch(
            reservoir_size=self.reservoir_size,
            exemplars_per_bin=self.exemplars_per_bin,
            seed=int(sequence.generate_state(1)[0]),
        )

    def _row_seed(self, pane_key: float, stream: int) -> int:
        pane_number = int(pane_key // self.pane_seconds) if self.count is None else int(pane_key)
        sequence = np.random.SeedSequence([self.seed, pane_number % 2**32, 2**31 + stream])
        return int(sequence.generate_state(1)[0])

    def _pane(self, key: float) -> Pane:
        pane = self._panes.get(key)
        if pane is None:
            pane = self._panes[key] = Pane(key=key)
        return pane

    def update(
        self,
        columns: Mapping[str, np.ndarray],
        weights: np.ndarray,
        trace_ids: Sequence[str] | None,
        timestamp: float,
        embeddings: np.ndarray | None = None,
    ) -> int:
        """Add a batch of captured rows; return the rows accepted (0 if too late).

        ``columns``: feature name -> values aligned with ``weights`` (1 / sample
        rate per row); a feature absent from ``columns`` is not counted as missing.
        ``trace_ids``: one per row, or None. ``timestamp``: seconds since the epoch.
        ``embeddings``: ``(n, k + 1)`` rows of the reference's projection (k values,
        then the original norm), NaN rows for rows without an embedding; ignored
        when the reference has no embedding sample.
        """
        w = row_weights(weights)
        n = int(w.shape[0])
        ts = float(timestamp)
        if not math.isfinite(ts):
            raise ValueError(f"timestamp must be finite, got {timestamp!r}")
        if trace_ids is not None and len(trace_ids) != n:
            raise ValueError(f"trace_ids has {len(trace_ids)} entries for {n} rows")
        arrays: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            array = np.asarray(values)
            if array.ndim != 1 or array.shape[0] != n:
                raise ValueError(
                    f"column {name!r} must be 1-D with {n} values, got shape {array.shape}"
                )
            arrays[str(name)] = array
        if embeddings is not None and self._embedding_width:
            embeddings = np.asarray(embeddings, dtype=np.float64)
            if embeddings.shape != (n, self._embedding_width):
                raise ValueError(
                    f"embeddings must have shape ({n}, {self._embedding_width}), "
                    f"got {embeddings.shape}"
                )
        else:
            embeddings = None
        if n == 0:
            return 0
        codes = self._category_codes(arrays)
        if self.count is None:
            key = math.floor(ts / self.pane_seconds) * self.pane_seconds
            horizon = max(self._watermark, ts) - self.window_seconds
            if key + self.pane_seconds <= horizon:
                self.counters.late_rows += n
                return 0
            self._add(self._pane(key), arrays, w, trace_ids, ts, slice(0, n), embeddings, codes)
            self._watermark = max(self._watermark, ts)
            self.expire(self._watermark)
            return n
        start = 0
        while start < n:
            pane = self._panes.get(float(self._next_seq - 1)) if self._next_seq else None
            if pane is None or pane.rows >= self.pane_rows:
                pane = self._pane(float(self._next_seq))
                self._next_seq += 1
            stop = min(n, start + self.pane_rows - pane.rows)
            self._add(pane, arrays, w, trace_ids, ts, slice(start, stop), embeddings, codes)
            start = stop
        self._watermark = max(self._watermark, ts)
        self._trim_count()
        return n

    def _category_codes(
        self, arrays: Mapping[str, np.ndarray]
    ) -> dict[str, tuple[list[str], np.ndarray]]:
        """``category_codes`` of every categorical column the batch feeds (sketches
        or joint rows), once per batch: its panes and the joint rows slice them."""
        layout = self._layout
        joint = set(layout.names) if layout is not None else set()
        features = self.reference.features
        return {
            name: category_codes(values)
            for name, values in arrays.items()
            if (name in self._tracked or name in joint)
            and name in features
            and features[name].binning.kind == "categorical"
        }

    def _add(
        self,
        pane: Pane,
        arrays: Mapping[str, np.ndarray],
        weights: np.ndarray,
        trace_ids: Sequence[str] | None,
        ts: float,
        rows: slice,
        embeddings: np.ndarray | None = None,
        codes: Mapping[str, tuple[list[str], np.ndarray]] | None = None,
    ) -> None:
        w = weights[rows]
        ids = None if trace_ids is None else list(trace_ids[rows])
        pane.revision += 1
        # This pane's rows of the batch's category codes (same keys, fewer rows).
        sliced = {
            name: (keys, row_codes[rows]) for name, (keys, row_codes) in (codes or {}).items()
        }
        self._add_rows(pane, arrays, w, ids, rows, embeddings, sliced)
        pane.rows += int(w.shape[0])
        pane.weight += float(w.sum())
        pane.first_ts = min(pane.first_ts, ts)
        pane.last_ts = max(pane.last_ts, ts)
        numeric: list[FeatureSketch] = []
        numeric_columns: list[np.ndarray] = []
        categorical: list[FeatureSketch] = []
        categorical_columns: list[np.ndarray] = []
        categorical_codes: list[tuple[list[str], np.ndarray] | None] = []
        for name, values in arrays.items():
            if name not in self._tracked:
                if name in self.reference.features:
                    self.counters.note_capped(name, int(w.shape[0]))
                else:
                    self.counters.note_unknown(name, int(w.shape[0]))
                continue
            sketch = pane.sketches.get(name)
            if sketch is None:
                sketch = pane.sketches[name] = self._new_sketch(name, pane.key)
            if sketch.kind == "numeric":
                numeric.append(sketch)
                numeric_columns.append(values[rows])
            else:  # update() validated the batch
                categorical.append(sketch)
                categorical_columns.append(values[rows])
                categorical_codes.append(sliced.get(name))
        # All numeric features in one pass, all categorical exemplars in one pass (the
        # same state as one update per sketch).
        update_categorical_sketches(categorical, categorical_columns, w, ids, categorical_codes)
        update_numeric_sketches(numeric, numeric_columns, w, ids)

    def _add_rows(
        self,
        pane: Pane,
        arrays: Mapping[str, np.ndarray],
        w: np.ndarray,
        ids: list[str] | None,
        rows: slice,
        embeddings: np.ndarray | None,
        codes: Mapping[str, tuple[list[str], np.ndarray]] | None = None,
    ) -> None:
        """The pane's whole-row samples: joint rows and embedding rows. ``codes``:
        category codes of the pane's rows (``category_codes``), by column."""
        layout = self._layout
        if layout is not None and any(name in arrays for name in layout.names):
            if pane.joint is None:
                pane.joint = RowReservoir(
                    layout.width, self.row_reservoir_size, seed=self._row_seed(pane.key, 0)
                )
            selected = {n: arrays[n][rows] for n in layout.names if n in arrays}
            known = codes or {}

            def encode(picked: np.ndarray | None) -> np.ndarray:
                # A full reservoir asks only for the rows that enter it.
                if picked is None:
                    return layout.encode(selected, int(w.shape[0]), known)
                return layout.encode(
                    {n: v[picked] for n, v in selected.items()},
                    picked.size,
                    {n: (keys, row_codes[picked]) for n, (keys, row_codes) in known.items()},
                )

            pane.joint.update_lazy(encode, w, ids)
        if embeddings is not None:
            block = embeddings[rows]
            present = np.flatnonzero(np.all(np.isfinite(block[:, :-1]), axis=1))  # norm may be NaN
            if present.size:
                if pane.embedded is None:
                    pane.embedded = RowReservoir(
                        self._embedding_width,
                        self.row_reservoir_size,
                        seed=self._row_seed(pane.key, 1),
                    )
                pane.embedded.update(
                    block[present],
                    w[present],
                    None if ids is None else [ids[i] for i in present.tolist()],
                )

    def _merged_rows(self, which: str, now: float | None) -> RowReservoir | None:
        merged: RowReservoir | None = None
        for key in self._live_keys(now):
            sample: RowReservoir | None = getattr(self._panes[key], which)
            if sample is None:
                continue
            merged = sample.copy() if merged is None else merged.merge(sample)
        return merged

    def joint_rows(self, now: float | None = None) -> RowReservoir | None:
        """The window's sample of whole joint rows (a new object), None without any."""
        return self._merged_rows("joint", now)

    def embedding_rows(self, now: float | None = None) -> RowReservoir | None:
        """The window's sample of embedding rows (k values + norm), None without any."""
        return self._merged_rows("embedded", now)

    def _live_keys(self, now: float | None) -> list[float]:
        keys = sorted(self._panes)
        if now is not None and self.count is None:
            horizon = float(now) - self.window_seconds
            keys = [k for k in keys if k + self.pane_seconds > horizon]
        return keys

    # -- expiry and reading --

    def expire(self, now: float) -> int:
        """Drop time panes that ended before ``now - window_seconds``; return how many.

        Count windows do not expire with time (a no-op returning 0)."""
        if self.count is not None:
            return 0
        horizon = float(now) - self.window_seconds
        old = [k for k in self._panes if k + self.pane_seconds <= horizon]
        for key in old:
            del self._panes[key]
        return len(old)

    def _trim_count(self) -> None:
        assert self.count is not None
        keys = sorted(self._panes)
        total = sum(self._panes[k].rows for k in keys)
        for key in keys:
            rows = self._panes[key].rows
            if total - rows < self.count:
                break
            del self._panes[key]
            total -= rows

    def current(self, now: float | None = None) -> dict[str, FeatureSketch]:
        """The window's merged sketches (new objects), feature -> sketch.

        With ``now`` (time windows), only panes still inside ``now - window_seconds``
        are merged; nothing is dropped (that is ``expire``'s job)."""
        keys = sorted(self._panes)
        if now is not None and self.count is None:
            horizon = float(now) - self.window_seconds
            keys = [k for k in keys if k + self.pane_seconds > horizon]
        if len(keys) < 2:
            return self._merge_panes(keys)
        # The older panes rarely change: reuse their merge, then add the newest pane
        # (merging is a left fold, so the result is the same as merging all).
        older = self._merged_older(keys[:-1])
        newest = self._panes[keys[-1]].sketches
        merged: dict[str, FeatureSketch] = {}
        for name in self._tracked:
            base = older.get(name)
            sketch = newest.get(name)
            if base is not None:
                merged[name] = base.copy()
                if sketch is not None:
                    merged[name].merge(sketch)
            elif sketch is not None:
                merged[name] = sketch.copy()
        return merged

    def _merge_panes(self, keys: list[float]) -> dict[str, FeatureSketch]:
        merged: dict[str, FeatureSketch] = {}
        for name in self._tracked:
            for key in keys:
                sketch = self._panes[key].sketches.get(name)
                if sketch is None:
                    continue
                if name in merged:
                    merged[name].merge(sketch)
                else:
                    merged[name] = sketch.copy()
        return merged

    def _merged_older(self, keys: list[float]) -> dict[str, FeatureSketch]:
        """The merge of the panes ``keys`` (cached; callers copy before changing it)."""
        signature = tuple((self._panes[k].uid, self._panes[k].revision) for k in keys)
        cached = self._merged_cache
        if cached is not None and cached[0] == signature:
            return cached[1]
        merged = self._merge_panes(keys)
        self._merged_cache = (signature, merged)
        return merged

    # -- merge --

    def merge(self, other: ModelWindow) -> ModelWindow:
        """Add another replica's window of the same reference and settings (in place)."""
        if not isinstance(other, ModelWindow):
            raise TypeError(f"can only merge a ModelWindow, got {type(other).__name__}")
        if other._fingerprint != self._fingerprint:
            raise ValueError("cannot merge windows built on different references")
        if (other.count, other.pane_seconds, other.pane_rows) != (
            self.count,
            self.pane_seconds,
            self.pane_rows,
        ):
            raise ValueError("cannot merge windows with different pane/window settings")
        self.counters.add(other.counters)
        if self.count is None:
            for key, theirs in other._panes.items():
                self._merge_pane(self._pane(key), theirs)
            self._watermark = max(self._watermark, other._watermark)
            self.expire(self._watermark)
            return self
        # Count windows: interleave both replicas' panes by time, then keep the last N rows.
        panes = sorted(
            [*self._panes.values(), *(_copy_pane(p) for p in other._panes.values())],
            key=lambda p: (p.last_ts, p.first_ts),
        )
        self._panes = {}
        for seq, pane in enumerate(panes):
            pane.key = float(seq)
            self._panes[pane.key] = pane
        self._next_seq = len(panes)
        self._watermark = max(self._watermark, other._watermark)
        self._trim_count()
        return self

    def _merge_pane(self, mine: Pane, theirs: Pane) -> None:
        mine.revision += 1
        mine.rows += theirs.rows
        mine.weight += theirs.weight
        mine.first_ts = min(mine.first_ts, theirs.first_ts)
        mine.last_ts = max(mine.last_ts, theirs.last_ts)
        for which in ("joint", "embedded"):
            sample: RowReservoir | None = getattr(theirs, which)
            if sample is None:
                continue
            own: RowReservoir | None = getattr(mine, which)
            setattr(mine, which, sample.copy() if own is None else own.merge(sample))
        for name, sketch in theirs.sketches.items():
            if name in mine.sketches:
                mine.sketches[name].merge(sketch)
            elif name in self._tracked:
                mine.sketches[name] = sketch.copy()

    # -- state --

    def to_state(self) -> dict[str, Any]:
        """JSON-able state (bounded: panes x tracked features x bounded sketches)."""
        return {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "reference": self._fingerprint,
            "settings": {
                "pane_seconds": self.pane_seconds,
                "window_seconds": self.window_seconds,
                "count": self.count,
                "pane_rows": self.pane_rows,
                "max_features": self.max_features,
                "reservoir_size": self.reservoir_size,
                "exemplars_per_bin": self.exemplars_per_bin,
                "seed": self.seed,
                "row_reservoir_size": self.row_reservoir_size,
            },
            "watermark": self._watermark if math.isfinite(self._watermark) else None,
            "next_seq": self._next_seq,
            "counters": self.counters.to_dict(),
            "panes": [_pane_state(p) for p in self.panes],
        }

    def to_bytes(self) -> bytes:
        """``to_state`` as compressed JSON bytes."""
        text = json.dumps(self.to_state(), separators=(",", ":"), allow_nan=False)
        return zlib.compress(text.encode("utf-8"), 6)

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | bytes, reference: Reference) -> ModelWindow:
        """Rebuild a window from ``to_state``/``to_bytes`` output and its reference.

        Raises ``ValueError`` when the state is malformed, of another format, or was
        built on other bins than ``reference``'s."""
        if isinstance(state, (bytes, bytearray, memoryview)):
            try:
                state = json.loads(zlib.decompress(bytes(state)).decode("utf-8"))
            except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"window state bytes are not readable: {exc}") from exc
        if not isinstance(state, Mapping):
            raise ValueError(f"window state must be a mapping, got {type(state).__name__}")
        if state.get("format") != STATE_FORMAT or state.get("format_version") != STATE_VERSION:
            raise ValueError(
                f"not a {STATE_FORMAT} v{STATE_VERSION} state: format "
                f"{state.get('format')!r} version {state.get('format_version')!r}"
            )
        if state.get("reference") != reference_fingerprint(reference):
            raise ValueError("window state was built on other bins than this reference")
        try:
            settings = state["settings"]
            window = cls(
                reference,
                pane_seconds=settings["pane_seconds"],
                window_seconds=settings["window_seconds"],
                count=settings["count"],
                max_features=settings["max_features"],
                pane_rows=settings["pane_rows"] or None,
                reservoir_size=settings["reservoir_size"],
                exemplars_per_bin=settings["exemplars_per_bin"],
                seed=settings["seed"],
                row_reservoir_size=int(
                    settings.get("row_reservoir_size", DEFAULT_ROW_RESERVOIR_SIZE)
                ),
            )
            watermark = state["watermark"]
            window._watermark = -math.inf if watermark is None else float(watermark)
            window._next_seq = int(state["next_seq"])
            window.counters = WindowCounters.from_dict(state["counters"])
            for item in state["panes"]:
                pane = Pane(
                    key=float(item["key"]),
                    rows=int(item["rows"]),
                    weight=float(item["weight"]),
                    first_ts=_ts_in(item["first_ts"], math.inf),
                    last_ts=_ts_in(item["last_ts"], -math.inf),
                )
                for name, sketch_state in item["sketches"].items():
                    if name not in window._tracked:
                        raise ValueError(f"pane holds untracked feature {name!r}")
                    pane.sketches[name] = FeatureSketch.from_dict(
                        sketch_state, binning=window._binning(name)
                    )
                pane.joint = _rows_in(item.get("joint"), window._layout_width())
                pane.embedded = _rows_in(item.get("embedded"), window._embedding_width)
                window._panes[pane.key] = pane
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed window state: {exc!r}") from exc
        return window

    def _layout_width(self) -> int:
        return self._layout.width if self._layout is not None else 0

    def __repr__(self) -> str:
        return (
            f"ModelWindow(mode={self.mode!r}, panes={len(self._panes)}, rows={self.rows}, "
            f"features={len(self._tracked)})"
        )


def _ts_in(value: object, default: float) -> float:
    return default if value is None else float(value)  # type: ignore[arg-type]


def _rows_in(data: object, width: int) -> RowReservoir | None:
    """A pane's row sample from its state (None when absent); checks its width."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ValueError("a pane's row sample must be a mapping")
    sample = RowReservoir.from_dict(data)
    if sample.width != width:
        raise ValueError(f"pane row sample has width {sample.width}, expected {width}")
    return sample


def _ts_out(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _pane_state(pane: Pane) -> dict[str, Any]:
    return {
        "key": pane.key,
        "rows": pane.rows,
        "weight": pane.weight,
        "first_ts": _ts_out(pane.first_ts),
        "last_ts": _ts_out(pane.last_ts),
        "sketches": {
            name: sketch.to_dict(include_binning=False) for name, sketch in pane.sketches.items()
        },
        **({"joint": pane.joint.to_dict()} if pane.joint is not None else {}),
        **({"embedded": pane.embedded.to_dict()} if pane.embedded is not None else {}),
    }


def _copy_pane(pane: Pane) -> Pane:
    return Pane(
        key=pane.key,
        rows=pane.rows,
        weight=pane.weight,
        first_ts=pane.first_ts,
        last_ts=pane.last_ts,
        sketches={name: sketch.copy() for name, sketch in pane.sketches.items()},
        joint=pane.joint.copy() if pane.joint is not None else None,
        embedded=pane.embedded.copy() if pane.embedded is not None else None,
    )
