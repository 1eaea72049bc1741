"""Dataset-level drift entries: ``__multivariate__`` (joint rows) and ``__embedding__``.

``evaluate_dataset`` runs the multivariate tests (``modeltrace.drift.multivariate``)
on the reference's row samples and the window's (``rows.RowReservoir``) and
returns one ``FeatureDrift`` per (pseudo-feature, method), with the method name
in ``method``:

* ``domain_classifier``: score = cross-validated ROC AUC; exemplars are the
  current rows the classifier finds most current-like (highest out-of-fold score);
* ``mmd``: score = MMD^2, ``p_value`` = its permutation p-value; exemplars are the
  rows with the highest witness value;
* ``pca_reconstruction``: score = mean reconstruction error of the current rows;
  exemplars are the rows worst reconstructed.

Thresholds (``MultivariateSettings.thresholds``):

* ``"calibrated"`` (default): the ``quantile`` (0.99) of the statistic on
  reference splits of the live sizes (``multivariate.null_statistics``), computed
  once per (reference sample, method, window-size bucket) and cached, so later
  evaluations only pay for the test itself; ``drifted = score > threshold``;
* ``"fixed"``: AUC >= 0.55, MMD p-value < 0.05, reconstruction error >= 1.1 x the
  reference's own mean error.

Each evaluation has a time budget (permutations and folds stop when it runs out)
and so has each calibration; ``detail`` says what ran. With fewer than
``multivariate.MIN_ROWS`` rows on a side there is no verdict (``enough_data``
False), like the univariate tests.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from modeltrace.semconv import EMBEDDING_FEATURE, MULTIVARIATE_FEATURE

from . import multivariate as mv
from .reference import Reference
from .report import FeatureDrift
from .rows import RowReservoir

ThresholdMode = Literal["calibrated", "fixed"]
FIXED_THRESHOLDS: dict[str, float] = {
    "domain_classifier": 0.55,  # AUC
    "mmd": 0.05,  # significance level of the permutation p-value
    "pca_reconstruction": 1.10,  # ratio to the reference's own mean error
}
# Fewer null draws than this: the calibrated threshold is not trusted (fixed used).
MIN_NULL_VALUES = 10
MAX_EXEMPLARS = 5
CACHE_SIZE = 128


@dataclass(frozen=True)
class MultivariateSettings:
    """How ``evaluate_dataset`` runs (see the module doc)."""

    methods: tuple[str, ...] = mv.METHODS
    thresholds: ThresholdMode = "calibrated"
    quantile: float = 0.99
    time_budget: float = 1.0  # seconds per pseudo-feature, all methods together
    calibration_budget: float = 2.0  # seconds per calibration (cache miss)
    calibration_draws: int = 60  # an interrupted calibration continues at the next evaluation
    permutations: int = mv.DEFAULT_PERMUTATIONS
    folds: int = mv.DEFAULT_FOLDS
    max_rows: int = 2000  # current rows used by the classifier and PCA (subsampled)
    mmd_rows: int = mv.DEFAULT_MMD_ROWS
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(mv.METHODS))
        if unknown:
            raise ValueError(f"unknown multivariate methods {unknown}; known: {list(mv.METHODS)}")
        if self.thresholds not in ("calibrated", "fixed"):
            raise ValueError(f"thresholds must be 'calibrated' or 'fixed', got {self.thresholds!r}")
        if not 0.5 <= self.quantile < 1.0:
            raise ValueError(f"quantile must be in [0.5, 1), got {self.quantile}")
        for name in ("time_budget", "calibration_budget"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        for name, low in (
            ("calibration_draws", 1),
            ("permutations", 0),
            ("folds", 2),
            ("max_rows", mv.MIN_ROWS),
            ("mmd_rows", 2),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


# --- calibration cache -----------------------------------------------------------


class CalibrationCache:
    """A bounded LRU cache of no-drift distributions (thread-safe)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[object, ...], mv.NullDistribution | None] = OrderedDict()
        self._lock = threading.Lock()
        self.misses = 0

    def get(
        self,
        key: tuple[object, ...],
        compute: Callable[[int], mv.NullDistribution | None],
        wanted: int,
    ) -> mv.NullDistribution | None:
        """The cached distribution; ``compute(start)`` runs draws from ``start`` on a
        miss, or continues one that ran out of time (until ``wanted`` draws ran)."""
        with self._lock:
            cached = self._items.get(key)
            if key in self._items:
                self._items.move_to_end(key)
                if cached is None or cached.complete:
                    return cached
        more = compute(cached.draws if cached is not None else 0)
        value: mv.NullDistribution | None
        if cached is not None:
            value = cached if more is None else cached.extend(more, wanted)
        else:
            value = more
        with self._lock:
            self.misses += 1
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


DEFAULT_CACHE = CalibrationCache()


def size_bucket(n: float) -> float:
    """The window size calibrations are run at: ``n`` rounded to a power of 2^(1/4)."""
    return float(2.0 ** (round(4.0 * math.log2(max(n, 1.0))) / 4.0))


def _sample_token(rows: np.ndarray, categories: Sequence[int | None]) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
    digest.update(repr(tuple(categories)).encode())
    return digest.hexdigest()[:24]


# --- evaluation --------------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    """One pseudo-feature's inputs: reference rows and the window's sample."""

    name: str
    kind: str
    categories: tuple[int | None, ...]
    reference: np.ndarray
    current: np.ndarray
    weights: np.ndarray
    trace_ids: list[str]
    note: str = ""


def _missing_ratio(rows: np.ndarray, weights: np.ndarray | None = None) -> float:
    if rows.size == 0:
        return 0.0
    per_row = np.isnan(rows).mean(axis=1)
    return mv.weighted_mean(per_row, weights)


def _top_ids(values: np.ndarray, trace_ids: Sequence[str], limit: int = MAX_EXEMPLARS) -> list[str]:
    found: list[str] = []
    for index in np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable").tolist():
        trace_id = trace_ids[index]
        if trace_id and trace_id not in found:
            found.append(trace_id)
            if len(found) >= limit:
                break
    return found


class _Evaluation:
    """The methods on one pseudo-feature, sharing the encoding and the deadline."""

    def __init__(self, side: _Side, settings: MultivariateSettings, cache: CalibrationCache):
        self.side = side
        self.settings = settings
        self.cache = cache
        self.deadline: float | None = None  # set by start(), after the calibrations
        self.thresholds: dict[str, tuple[float, str]] = {}
        encoder = mv.RowEncoder.fit(side.reference, side.categories)
        self.ref = encoder.transform(side.reference)
        self.cur = encoder.transform(side.current)
        self.n_current = mv.kish_size(side.weights)
        self.token = _sample_token(side.reference, side.categories)

    def entry(
        self,
        method: str,
        score: float,
        threshold: float,
        drifted: bool,
        exemplars: list[str],
        detail: str,
        p_value: float | None = None,
    ) -> FeatureDrift:
        side = self.side
        return FeatureDrift(
            name=side.name,
            kind=side.kind,
            method=method,
            score=float(score),
            threshold=float(threshold),
            drifted=bool(drifted),
            p_value=p_value,
            n_reference=int(side.reference.shape[0]),
            n_current=int(side.current.shape[0]),
            exemplar_trace_ids=exemplars if drifted else [],
            missing_ratio=_missing_ratio(side.current, side.weights),
            reference_missing_ratio=_missing_ratio(side.reference),
            detail="; ".join(part for part in (detail, side.note) if part),
        )

    def calibrated(self, method: mv.MethodName) -> tuple[float | None, str]:
        """(threshold, detail) from the no-drift distribution; None to use the fixed one."""
        s = self.settings
        bucket = size_bucket(self.n_current)
        key = (
            self.token,
            method,
            bucket,
            s.calibration_draws,
            s.folds,
            s.mmd_rows,
            s.seed,
        )

        def compute(start: int) -> mv.NullDistribution | None:
            return mv.null_statistics(
                method,
                self.ref,
                bucket,
                draws=s.calibration_draws - start,
                folds=s.folds,
                max_rows=s.mmd_rows,
                seed=s.seed,
                deadline=time.monotonic() + s.calibration_budget,
                start=start,
            )

        null = self.cache.get(key, compute, s.calibration_draws)
        if null is None or null.values.size < MIN_NULL_VALUES:
            return None, "calibration impossible (reference too small or out of time): fixed"
        budget = "" if null.complete else " (calibration time budget ran out; continues)"
        return null.quantile(s.quantile), (
            f"threshold: {s.quantile:.0%} quantile of {null.draws} reference splits of "
            f"~{bucket:.0f} rows{budget}"
        )

    def classifier(self) -> FeatureDrift:
        s = self.settings
        folds = min(s.folds, self.ref.shape[0], self.cur.shape[0])
        result = mv.domain_classifier(
            self.ref,
            self.cur,
            None,
            self.side.weights,
            folds=folds,
            seed=s.seed,
            deadline=self.deadline,
        )
        assert result is not None  # the first fold always runs
        detail = f"AUC over {result.folds}/{folds} folds"
        if not result.complete:
            detail += " (time budget ran out)"
        threshold, note = self._threshold("domain_classifier")
        drifted = result.auc > threshold if threshold_kind(s, note) else result.auc >= threshold
        return self.entry(
            "domain_classifier",
            result.auc,
            threshold,
            drifted,
            _top_ids(result.current_scores, self.side.trace_ids),
            f"{detail}; {note}",
        )

    def mmd(self) -> FeatureDrift:
        s = self.settings
        result = mv.mmd_test(
            self.ref,
            self.cur,
            None,
            self.side.weights,
            permutations=s.permutations,
            max_rows=s.mmd_rows,
            seed=s.seed,
            deadline=self.deadline,
        )
        witness = np.full(self.cur.shape[0], np.nan)
        witness[result.current_rows] = result.witness
        detail = f"{result.permutations}/{s.permutations} permutations"
        if not result.complete:
            detail += " (time budget ran out)"
        threshold, note = self._threshold("mmd")
        if threshold_kind(s, note):
            drifted = result.mmd2 > threshold
        else:
            drifted = result.p_value is not None and result.p_value < threshold
            if result.p_value is None:
                note += " (no permutation ran: no verdict)"
        return self.entry(
            "mmd",
            result.mmd2,
            threshold,
            drifted,
            _top_ids(witness, self.side.trace_ids),
            f"{detail}; {note}",
            p_value=result.p_value,
        )

    def pca(self) -> FeatureDrift:
        model = mv.PCAModel.fit(self.ref)
        errors = model.errors(self.cur)
        score = mv.weighted_mean(errors, self.side.weights)
        threshold, note = self._threshold("pca_reconstruction")
        if not threshold_kind(self.settings, note):
            baseline = float(model.errors(self.ref).mean())
            threshold = FIXED_THRESHOLDS["pca_reconstruction"] * baseline
        return self.entry(
            "pca_reconstruction",
            score,
            threshold,
            score > threshold,
            _top_ids(errors, self.side.trace_ids),
            f"{model.n_components} components; {note}",
        )

    def start(self, methods: Sequence[str]) -> None:
        """Fix every method's threshold (calibrations have their own budget), then
        start the evaluation's time budget."""
        for method in methods:
            self.thresholds[method] = self._calibrate(cast("mv.MethodName", method))
        self.deadline = time.monotonic() + self.settings.time_budget

    def _threshold(self, method: mv.MethodName) -> tuple[float, str]:
        return self.thresholds[method]

    def _calibrate(self, method: mv.MethodName) -> tuple[float, str]:
        if self.settings.thresholds == "calibrated":
            value, note = self.calibrated(method)
            if value is not None:
                return value, note
            return FIXED_THRESHOLDS[method], note
        return FIXED_THRESHOLDS[method], "fixed threshold"


def threshold_kind(settings: MultivariateSettings, note: str) -> bool:
    """True when the threshold in use is a calibrated one (compare the score to it)."""
    return settings.thresholds == "calibrated" and note.startswith("threshold:")


def _not_enough(side: _Side, method: str, why: str) -> FeatureDrift:
    return FeatureDrift(
        name=side.name,
        kind=side.kind,
        method=method,
        score=0.0,
        threshold=math.nan,
        drifted=False,
        p_value=None,
        n_reference=int(side.reference.shape[0]),
        n_current=int(side.current.shape[0]),
        enough_data=False,
        detail=why,
    )


def _evaluate_side(
    side: _Side, settings: MultivariateSettings, cache: CalibrationCache
) -> list[FeatureDrift]:
    n_ref, n_cur = side.reference.shape[0], side.current.shape[0]
    if n_ref < 2 * mv.MIN_ROWS or n_cur < mv.MIN_ROWS:
        why = (
            f"not enough data: {n_ref} reference and {n_cur} current rows "
            f"(at least {2 * mv.MIN_ROWS} and {mv.MIN_ROWS})"
        )
        return [_not_enough(side, method, why) for method in settings.methods]
    run = _Evaluation(side, settings, cache)
    run.start(settings.methods)
    by_method: dict[str, Callable[[], FeatureDrift]] = {
        "domain_classifier": run.classifier,
        "pca_reconstruction": run.pca,
        "mmd": run.mmd,
    }
    # Cheap methods first; MMD's permutations take what is left of the budget.
    order = [m for m in ("domain_classifier", "pca_reconstruction", "mmd") if m in settings.methods]
    entries: dict[str, FeatureDrift] = {method: by_method[method]() for method in order}
    return [entries[m] for m in settings.methods]


def _current(
    sample: RowReservoir, columns: int, limit: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    rows, weights, ids = sample.rows()[:, :columns], sample.weights(), sample.trace_ids()
    # A canonical order: the result depends on the sampled rows, not on the order a
    # replica merge or a restore left them in.
    order = np.lexsort((np.asarray(ids, dtype=str), weights, *rows.T[::-1]))
    rows, weights, ids = rows[order], weights[order], [ids[i] for i in order.tolist()]
    note = ""
    if rows.shape[0] > limit:
        keep = np.sort(np.random.default_rng(seed).choice(rows.shape[0], limit, replace=False))
        note = f"{limit} of {rows.shape[0]} current rows used"
        rows, weights, ids = rows[keep], weights[keep], [ids[i] for i in keep.tolist()]
    return rows, weights, ids, note


def evaluate_dataset(
    reference: Reference,
    joint: RowReservoir | None,
    embedded: RowReservoir | None,
    settings: MultivariateSettings | None = None,
    cache: CalibrationCache | None = None,
) -> list[FeatureDrift]:
    """``__multivariate__`` and ``__embedding__`` entries (one per method), for the
    samples that exist on both sides; empty when there are none."""
    settings = settings if settings is not None else MultivariateSettings()
    if not settings.methods:
        return []
    cache = cache if cache is not None else DEFAULT_CACHE
    sides: list[_Side] = []
    layout = reference.row_layout()
    if layout is not None and reference.rows is not None and joint is not None and len(joint):
        rows, weights, ids, note = _current(joint, layout.width, settings.max_rows, settings.seed)
        sides.append(
            _Side(
                MULTIVARIATE_FEATURE,
                "multivariate",
                tuple(layout.categories()),
                reference.rows.rows,
                rows,
                weights,
                ids,
                note,
            )
        )
    if reference.embedding is not None and embedded is not None and len(embedded):
        k = reference.embedding.dim
        rows, weights, ids, note = _current(embedded, k, settings.max_rows, settings.seed)
        norms = embedded.rows()[:, k]
        ref_norm = (
            float(np.mean(reference.embedding.norms)) if reference.embedding.norms.size else 0
        )
        if ref_norm > 0 and norms.size:
            ratio = mv.weighted_mean(norms, embedded.weights()) / ref_norm
            note = "; ".join(p for p in (note, f"mean norm ratio {ratio:.3g}") if p)
        sides.append(
            _Side(
                EMBEDDING_FEATURE,
                "embedding",
                (None,) * k,
                reference.embedding.rows,
                rows,
                weights,
                ids,
                note,
            )
        )
    entries: list[FeatureDrift] = []
    for side in sides:
        entries.extend(_evaluate_side(side, settings, cache))
    return entries
