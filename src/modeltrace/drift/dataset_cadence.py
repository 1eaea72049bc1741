"""How often the aggregator recomputes the dataset-level drift entries.

The ``__multivariate__`` and ``__embedding__`` entries (``modeltrace.drift.joint``)
cost from a fraction of a second to seconds of CPU per evaluation, while the
per-feature tests cost milliseconds. ``DriftAggregator.latest_reports()`` runs on
every metrics collection (each Prometheus scrape), so ``DatasetCadence`` bounds
that cost: per (model, version) the dataset-level entries are recomputed at most
every ``interval_seconds`` and otherwise carried over from the last computation,
their ``detail`` saying so (``carried over from <UTC time>``). Per-feature drift
is always recomputed. ``interval_seconds=0`` recomputes every time.

Entries without a verdict (not enough rows yet) are not carried over: they cost
nothing to recompute and new rows may give them one.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Hashable, Sequence
from datetime import datetime, timezone

from modeltrace.semconv import EMBEDDING_FEATURE, MULTIVARIATE_FEATURE

from .report import FeatureDrift

DATASET_FEATURES = frozenset({MULTIVARIATE_FEATURE, EMBEDDING_FEATURE})
DEFAULT_INTERVAL_SECONDS = 30.0


def validate_interval(value: float) -> float:
    """``value`` as seconds >= 0 (finite); ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"multivariate_interval_seconds must be a number, got {value!r}")
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"multivariate_interval_seconds must be finite and >= 0, got {value!r}")
    return seconds


def _utc(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class DatasetCadence:
    """Per key: the last computed dataset-level entries and when (thread-safe)."""

    def __init__(self, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.interval_seconds = validate_interval(interval_seconds)
        self._lock = threading.Lock()
        # key -> (monotonic time of the snapshot, wall time of the report, entries)
        self._computed: dict[Hashable, tuple[float, float, list[FeatureDrift]]] = {}

    def carried(self, key: Hashable, monotonic_now: float) -> list[FeatureDrift] | None:
        """The entries to reuse for ``key`` at ``monotonic_now`` (marked as carried
        over), or None when they are due for recomputation."""
        if self.interval_seconds == 0:
            return None
        with self._lock:
            computed = self._computed.get(key)
        if computed is None:
            return None
        at, wall, entries = computed
        if monotonic_now - at >= self.interval_seconds or not entries:
            return None
        if not all(entry.enough_data for entry in entries):
            return None
        note = (
            f"carried over from {_utc(wall)} (recomputed at most every {self.interval_seconds:g} s)"
        )
        return [
            dataclasses.replace(
                entry,
                exemplar_trace_ids=list(entry.exemplar_trace_ids),
                detail="; ".join(part for part in (entry.detail, note) if part),
            )
            for entry in entries
        ]

    def record(
        self, key: Hashable, monotonic_at: float, wall: float, entries: Sequence[FeatureDrift]
    ) -> None:
        """Remember freshly computed entries (of a snapshot taken at ``monotonic_at``);
        an older snapshot never replaces a newer one."""
        fresh = [entry for entry in entries if entry.name in DATASET_FEATURES]
        with self._lock:
            previous = self._computed.get(key)
            if previous is None or previous[0] <= monotonic_at:
                self._computed[key] = (monotonic_at, wall, fresh)

    def forget(self, key: Hashable) -> None:
        """Drop what is remembered for ``key`` (its reference changed)."""
        with self._lock:
            self._computed.pop(key, None)
