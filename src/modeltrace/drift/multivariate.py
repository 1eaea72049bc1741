"""Multivariate drift tests on samples of whole rows (pure numpy).

Univariate tests miss drift in the joint distribution (a correlation flips while
every marginal stays put) and cannot handle embeddings. Three tests compare a
reference sample of rows with a current one, each with weights (1 / sample rate):

* ``domain_classifier``: a ridge classifier tells reference rows from current
  ones on quadratic features (pairwise products; for wide rows squares plus
  seeded random Fourier features), scored by stratified k-fold cross-validated,
  weighted ROC AUC. 0.5 means the two samples cannot be told apart.
* ``mmd_test``: the squared maximum mean discrepancy (weighted V-statistic) with
  an RBF kernel ``exp(-|x - y|^2 / (2 s^2))``, ``s^2`` the median squared
  distance of the pooled rows (median heuristic), and a seeded permutation
  p-value.
* ``PCAModel``: PCA on the standardised reference rows keeping ~65% of the
  variance; a row's reconstruction error is its distance to its reconstruction
  (NannyML's data-reconstruction drift).

``RowEncoder`` prepares rows first: missing values become the reference medians
(numeric) or the reference's most frequent category, numeric columns are
standardised on the reference, categorical codes (``rows.RowLayout``) are one-hot
encoded on the reference's top categories.

``null_statistics`` draws what each statistic looks like without drift: the
reference sample is split at random into a pseudo-reference and a pseudo-window
(sizes in the live ratio) many times, and the values are scaled to the live
sizes. Its quantile is the method's calibrated no-drift band.

Every loop that repeats work (folds, permutations, null draws) stops at a
``deadline`` (``time.monotonic()`` seconds) and says how far it got.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

MethodName = Literal["domain_classifier", "mmd", "pca_reconstruction"]
METHODS: tuple[MethodName, ...] = ("domain_classifier", "mmd", "pca_reconstruction")
# Fewer rows than this on either side: no verdict ("not enough data").
MIN_ROWS = 30
DEFAULT_FOLDS = 5
DEFAULT_RIDGE = 0.1
DEFAULT_PERMUTATIONS = 200
DEFAULT_MMD_ROWS = 500
DEFAULT_VARIANCE = 0.65
# Rows wider than this get squares + random Fourier features instead of all products.
MAX_QUADRATIC_INPUTS = 20
RANDOM_FEATURES = 128
_PERMUTATION_CHUNK = 25


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _weights(w: np.ndarray | None, n: int, what: str) -> np.ndarray:
    if w is None:
        return np.ones(n, dtype=np.float64)
    out = np.asarray(w, dtype=np.float64)
    if out.shape != (n,):
        raise ValueError(f"{what} weights must have shape ({n},), got {out.shape}")
    if n and not (np.all(np.isfinite(out)) and np.all(out > 0)):
        raise ValueError(f"{what} weights must be finite and > 0")
    return out


def _matrix(x: np.ndarray, what: str) -> np.ndarray:
    out = np.asarray(x, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"{what} rows must be a 2-D array, got shape {out.shape}")
    return out


def kish_size(weights: np.ndarray) -> float:
    """Effective sample size ``(sum w)^2 / sum w^2``."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    return total * total / float(np.dot(w, w)) if w.size else 0.0


# --- encoding ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RowEncoder:
    """Imputation, standardisation and one-hot encoding fitted on reference rows."""

    categories: tuple[int | None, ...]
    fill: np.ndarray  # per column: median (numeric) or most frequent code
    center: np.ndarray  # per column (numeric: mean after imputation; categorical: 0)
    scale: np.ndarray  # per column (numeric: std or 1; categorical: 1)

    @classmethod
    def fit(cls, reference: np.ndarray, categories: Sequence[int | None]) -> RowEncoder:
        """``categories``: per column None (numeric) or the number of codes."""
        x = _matrix(reference, "reference")
        if len(categories) != x.shape[1]:
            raise ValueError(f"{len(categories)} column kinds for {x.shape[1]} columns")
        fill = np.zeros(x.shape[1])
        center = np.zeros(x.shape[1])
        scale = np.ones(x.shape[1])
        for j, n_codes in enumerate(categories):
            column = x[:, j]
            valid = column[np.isfinite(column)]
            if n_codes is None:
                fill[j] = float(np.median(valid)) if valid.size else 0.0
                filled = np.where(np.isfinite(column), column, fill[j])
                center[j] = float(filled.mean()) if filled.size else 0.0
                std = float(filled.std()) if filled.size else 0.0
                scale[j] = std if std > 0 else 1.0
            else:
                if n_codes < 1:
                    raise ValueError(f"column {j} has {n_codes} categories")
                codes = np.clip(valid.astype(np.int64), 0, n_codes - 1)
                fill[j] = (
                    float(np.argmax(np.bincount(codes, minlength=n_codes))) if codes.size else 0
                )
        return cls(tuple(categories), fill, center, scale)

    @property
    def width(self) -> int:
        return sum(1 if c is None else c for c in self.categories)

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """``(n, width)`` encoded rows."""
        x = _matrix(rows, "rows")
        if x.shape[1] != len(self.categories):
            raise ValueError(f"rows have {x.shape[1]} columns, expected {len(self.categories)}")
        x = np.where(np.isfinite(x), x, self.fill)
        parts: list[np.ndarray] = []
        for j, n_codes in enumerate(self.categories):
            if n_codes is None:
                parts.append(((x[:, j] - self.center[j]) / self.scale[j])[:, None])
            else:
                codes = np.clip(np.round(x[:, j]).astype(np.int64), 0, n_codes - 1)
                one_hot = np.zeros((x.shape[0], n_codes))
                one_hot[np.arange(x.shape[0]), codes] = 1.0
                parts.append(one_hot)
        return np.hstack(parts) if parts else np.empty((x.shape[0], 0))


# --- ROC AUC --------------------------------------------------------------------


def weighted_auc(
    negative: np.ndarray,
    positive: np.ndarray,
    negative_weights: np.ndarray | None = None,
    positive_weights: np.ndarray | None = None,
) -> float:
    """Weighted ROC AUC: P(score of a positive > score of a negative), ties count 1/2."""
    neg = np.asarray(negative, dtype=np.float64)
    pos = np.asarray(positive, dtype=np.float64)
    wn = _weights(negative_weights, neg.size, "negative")
    wp = _weights(positive_weights, pos.size, "positive")
    if neg.size == 0 or pos.size == 0:
        raise ValueError("AUC needs at least one score on each side")
    uniques, inverse = np.unique(np.concatenate([neg, pos]), return_inverse=True)
    neg_at = np.bincount(inverse[: neg.size], weights=wn, minlength=uniques.size)
    below = np.cumsum(neg_at) - neg_at  # negative weight strictly below each value
    pos_index = inverse[neg.size :]
    wins = np.dot(wp, below[pos_index] + 0.5 * neg_at[pos_index])
    return float(wins / (wn.sum() * wp.sum()))


# --- domain classifier -------------------------------------------------------------


def classifier_features(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Linear and quadratic features: all pairwise products for narrow rows, else
    squares plus seeded random Fourier features (an RBF-kernel approximation)."""
    x = _matrix(x, "encoded")
    p = x.shape[1]
    if p <= MAX_QUADRATIC_INPUTS:
        i, j = np.triu_indices(p)
        return np.hstack([x, x[:, i] * x[:, j]])
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((p, RANDOM_FEATURES)) / math.sqrt(p)
    phase = rng.uniform(0.0, 2.0 * math.pi, RANDOM_FEATURES)
    fourier = math.sqrt(2.0) * np.cos(x @ omega + phase)
    return np.hstack([x, x * x, fourier])


@dataclass(frozen=True)
class ClassifierResult:
    """Cross-validated AUC and the out-of-fold score of every scored row."""

    auc: float
    reference_scores: np.ndarray  # NaN for rows of folds not run
    current_scores: np.ndarray
    folds: int  # folds run
    complete: bool  # all folds ran before the deadline


def _stratified_folds(n_ref: int, n_cur: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    fold = np.empty(n_ref + n_cur, dtype=np.int64)
    fold[:n_ref] = rng.permutation(n_ref) % folds
    fold[n_ref:] = rng.permutation(n_cur) % folds
    return fold


def domain_classifier(
    reference: np.ndarray,
    current: np.ndarray,
    reference_weights: np.ndarray | None = None,
    current_weights: np.ndarray | None = None,
    *,
    folds: int = DEFAULT_FOLDS,
    ridge: float = DEFAULT_RIDGE,
    seed: int = 0,
    deadline: float | None = None,
) -> ClassifierResult | None:
    """Reference (0) vs current (1) on encoded rows; ``None`` if no fold finished.

    Each class gets the same total weight in the fit (row weights normalised
    within the class); the AUC weighs each scored row by its own weight."""
    ref, cur = _matrix(reference, "reference"), _matrix(current, "current")
    if ref.shape[1] != cur.shape[1]:
        raise ValueError("reference and current rows differ in width")
    if not 2 <= folds <= min(ref.shape[0], cur.shape[0]):
        raise ValueError(f"folds must be in [2, rows per side], got {folds}")
    if not (math.isfinite(ridge) and ridge > 0):
        raise ValueError(f"ridge must be > 0, got {ridge}")
    wr = _weights(reference_weights, ref.shape[0], "reference")
    wc = _weights(current_weights, cur.shape[0], "current")
    n_ref, n = ref.shape[0], ref.shape[0] + cur.shape[0]
    phi = classifier_features(np.vstack([ref, cur]), seed)
    y = np.concatenate([np.zeros(n_ref), np.ones(n - n_ref)])
    fit_w = np.concatenate([wr / wr.sum(), wc / wc.sum()]) * (n / 2.0)
    fold = _stratified_folds(n_ref, n - n_ref, folds, np.random.default_rng(seed))
    weighted = phi * fit_w[:, None]
    gram, moment = weighted.T @ phi, weighted.T @ y
    total_w, total_s, total_y = float(fit_w.sum()), weighted.sum(axis=0), float(fit_w @ y)
    scores = np.full(n, np.nan)
    eye = np.eye(phi.shape[1])
    done = 0
    for f in range(folds):
        if done and _expired(deadline):
            break
        rows = np.flatnonzero(fold == f)
        part = weighted[rows]
        w_train = total_w - float(fit_w[rows].sum())
        mean = (total_s - part.sum(axis=0)) / w_train
        y_mean = (total_y - float(fit_w[rows] @ y[rows])) / w_train
        g = gram - part.T @ phi[rows] - w_train * np.outer(mean, mean)
        b = moment - part.T @ y[rows] - w_train * mean * y_mean
        beta = np.linalg.solve(g + ridge * w_train * eye, b)
        scores[rows] = (phi[rows] - mean) @ beta
        done += 1
    if not done:
        return None
    ref_scores, cur_scores = scores[:n_ref], scores[n_ref:]
    rs, cs = np.isfinite(ref_scores), np.isfinite(cur_scores)
    auc = weighted_auc(ref_scores[rs], cur_scores[cs], wr[rs], wc[cs])
    return ClassifierResult(auc, ref_scores, cur_scores, done, done == folds)


# --- MMD -------------------------------------------------------------------------


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances (clipped at 0)."""
    d = a @ b.T
    d *= -2.0
    d += (a * a).sum(axis=1)[:, None]
    d += (b * b).sum(axis=1)[None, :]
    return np.maximum(d, 0.0, out=d)


def median_bandwidth(pooled: np.ndarray, max_rows: int = 500, seed: int = 0) -> float:
    """Median heuristic: the median squared distance between distinct pooled rows
    (on at most ``max_rows`` of them), 1.0 when that is 0."""
    x = _matrix(pooled, "pooled")
    if x.shape[0] > max_rows:
        x = x[np.random.default_rng(seed).choice(x.shape[0], max_rows, replace=False)]
    d = squared_distances(x, x)[np.triu_indices(x.shape[0], k=1)]
    median = float(np.median(d)) if d.size else 0.0
    return median if median > 0 else 1.0


@dataclass(frozen=True)
class MMDResult:
    """``mmd2`` (weighted V-statistic), its permutation p-value (None without
    permutations), the kernel's ``2 s^2`` denominator, the witness value of each
    current row used (higher: more current-like) and those rows' indices."""

    mmd2: float
    p_value: float | None
    bandwidth: float
    permutations: int
    complete: bool
    witness: np.ndarray
    current_rows: np.ndarray


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, limit, replace=False))


def mmd_test(
    reference: np.ndarray,
    current: np.ndarray,
    reference_weights: np.ndarray | None = None,
    current_weights: np.ndarray | None = None,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    max_rows: int = DEFAULT_MMD_ROWS,
    seed: int = 0,
    deadline: float | None = None,
) -> MMDResult:
    """Weighted MMD^2 with an RBF kernel (median heuristic) and a permutation p-value.

    With more than ``max_rows`` rows a side is subsampled (seeded). A permutation
    reassigns rows (with their weights) to the two sides; ``p = (1 + #{perm >=
    observed}) / (1 + permutations run)``."""
    ref, cur = _matrix(reference, "reference"), _matrix(current, "current")
    if ref.shape[1] != cur.shape[1]:
        raise ValueError("reference and current rows differ in width")
    if ref.shape[0] < 2 or cur.shape[0] < 2:
        raise ValueError("MMD needs at least 2 rows per side")
    if permutations < 0 or max_rows < 2:
        raise ValueError("permutations must be >= 0 and max_rows >= 2")
    wr = _weights(reference_weights, ref.shape[0], "reference")
    wc = _weights(current_weights, cur.shape[0], "current")
    rng = np.random.default_rng(seed)
    ref_rows = _subsample(ref.shape[0], max_rows, rng)
    cur_rows = _subsample(cur.shape[0], max_rows, rng)
    pooled = np.vstack([ref[ref_rows], cur[cur_rows]])
    weights = np.concatenate([wr[ref_rows], wc[cur_rows]])
    n_x = ref_rows.size
    bandwidth = 2.0 * median_bandwidth(pooled, seed=seed)
    kernel = squared_distances(pooled, pooled)
    kernel *= -1.0 / bandwidth
    np.exp(kernel, out=kernel)
    v = np.concatenate([weights[:n_x] / weights[:n_x].sum(), -weights[n_x:] / weights[n_x:].sum()])
    kv = kernel @ v
    observed = float(v @ kv)
    witness = -kv[n_x:]  # mean kernel to current minus mean kernel to reference
    exceed, done = 0, 0
    # One chunk always runs (a p-value to report), the rest only before the deadline.
    while done < permutations and not (done and _expired(deadline)):
        chunk = min(_PERMUTATION_CHUNK, permutations - done)
        order = np.argsort(rng.random((chunk, pooled.shape[0])), axis=1)
        side_x = np.zeros((chunk, pooled.shape[0]), dtype=bool)
        np.put_along_axis(side_x, order[:, :n_x], True, axis=1)
        w = np.broadcast_to(weights, side_x.shape)
        wx = np.where(side_x, w, 0.0)
        wy = w - wx
        vs = (wx / wx.sum(axis=1, keepdims=True) - wy / wy.sum(axis=1, keepdims=True)).T
        stats = np.einsum("ip,ip->p", vs, kernel @ vs)
        exceed += int(np.sum(stats >= observed - 1e-12 * abs(observed)))
        done += chunk
    p_value = (1 + exceed) / (1 + done) if done else None
    return MMDResult(
        mmd2=observed,
        p_value=p_value,
        bandwidth=bandwidth,
        permutations=done,
        complete=done == permutations,
        witness=witness,
        current_rows=cur_rows,
    )


# --- PCA reconstruction error ----------------------------------------------------


@dataclass(frozen=True, eq=False)
class PCAModel:
    """PCA of standardised reference rows keeping ``variance`` of the variance."""

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (p, c)

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        weights: np.ndarray | None = None,
        variance: float = DEFAULT_VARIANCE,
    ) -> PCAModel:
        x = _matrix(reference, "reference")
        if x.shape[0] < 2:
            raise ValueError("PCA needs at least 2 reference rows")
        if not 0.0 < variance <= 1.0:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        w = _weights(weights, x.shape[0], "reference")
        w = w / w.sum()
        mean = w @ x
        std = np.sqrt(w @ (x - mean) ** 2)
        scale = np.where(std > 0, std, 1.0)
        z = (x - mean) / scale * np.sqrt(w)[:, None]
        _, singular, vt = np.linalg.svd(z, full_matrices=False)
        energy = singular**2
        total = float(energy.sum())
        if total <= 0:
            keep = 1
        else:
            keep = int(np.searchsorted(np.cumsum(energy) / total, variance - 1e-12) + 1)
        return cls(mean, scale, vt[: min(keep, vt.shape[0])].T)

    @property
    def n_components(self) -> int:
        return int(self.components.shape[1])

    def errors(self, rows: np.ndarray) -> np.ndarray:
        """Per row: Euclidean distance between the standardised row and its
        reconstruction from the kept components."""
        z = (_matrix(rows, "rows") - self.mean) / self.scale
        residual = z - (z @ self.components) @ self.components.T
        return np.sqrt((residual * residual).sum(axis=1))


def weighted_mean(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    v = np.asarray(values, dtype=np.float64)
    w = _weights(weights, v.size, "value")
    return float(w @ v / w.sum())


# --- no-drift distributions --------------------------------------------------------


@dataclass(frozen=True)
class NullDistribution:
    """Values of a statistic on reference splits, scaled to the live sizes."""

    values: np.ndarray
    complete: bool  # every requested draw ran before the deadline
    draws: int = 0  # draws run

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.values, q))

    def extend(self, more: NullDistribution, wanted: int) -> NullDistribution:
        draws = self.draws + more.draws
        return NullDistribution(np.concatenate([self.values, more.values]), draws >= wanted, draws)


def split_sizes(n_reference: int, n_current: float) -> tuple[int, int]:
    """Pseudo-reference and pseudo-window sizes, in the live ratio, from the reference."""
    total = n_reference
    b = round(total * n_current / (n_reference + n_current))
    b = min(max(b, MIN_ROWS), total - MIN_ROWS)
    return total - b, b


def null_statistics(
    method: MethodName,
    reference: np.ndarray,
    n_current: float,
    *,
    draws: int = 40,
    folds: int = DEFAULT_FOLDS,
    max_rows: int = DEFAULT_MMD_ROWS,
    seed: int = 0,
    deadline: float | None = None,
    start: int = 0,
) -> NullDistribution | None:
    """The statistic of ``method`` between two disjoint random parts of the
    (encoded) reference rows, ``draws`` times, scaled to comparing all reference
    rows with ``n_current`` rows: AUC deviations from 0.5 by the Mann-Whitney
    standard error ratio ``sqrt((n1 + n2 + 1) / (n1 n2))``, MMD^2 by
    ``1/n1 + 1/n2``; reconstruction errors are means of ``n_current`` rows drawn
    from the held-out part (PCA fitted on the other part). ``start``: the first
    draw's number (to continue an interrupted calibration with new draws). ``None``
    when the reference is too small to split or no draw finished."""
    ref = _matrix(reference, "reference")
    n_ref = ref.shape[0]
    if n_ref < 2 * MIN_ROWS or n_current < 1:
        return None
    a, b = split_sizes(n_ref, n_current)
    values: list[float] = []
    done = 0
    for draw in range(start, start + draws):
        if done and _expired(deadline):
            break
        rng = np.random.default_rng([seed, draw])
        order = rng.permutation(n_ref)
        part_a, part_b = ref[order[:a]], ref[order[a:]]
        if method == "domain_classifier":
            result = domain_classifier(part_a, part_b, folds=folds, seed=seed + draw)
            if result is None:
                break
            live = math.sqrt((n_ref + n_current + 1) / (n_ref * n_current))
            split = math.sqrt((a + b + 1) / (a * b))
            values.append(0.5 + (result.auc - 0.5) * live / split)
        elif method == "mmd":
            mmd = mmd_test(part_a, part_b, permutations=0, max_rows=max_rows, seed=seed + draw)
            live_n = (1 / min(n_ref, max_rows)) + (1 / min(n_current, max_rows))
            split_n = (1 / min(a, max_rows)) + (1 / min(b, max_rows))
            values.append(mmd.mmd2 * live_n / split_n)
        elif method == "pca_reconstruction":
            errors = PCAModel.fit(part_a).errors(part_b)
            size = max(round(n_current), 1)
            picks = rng.integers(0, errors.size, size=(10, size))
            values.extend(errors[picks].mean(axis=1).tolist())
        else:
            raise ValueError(f"unknown multivariate method {method!r}")
        done += 1
    if not values:
        return None
    return NullDistribution(np.asarray(values), done == draws, done)
