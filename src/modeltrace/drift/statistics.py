"""Drift statistics: pure functions comparing a reference with a current window.

Two kinds of input are compared:

* **counts**: per-bin (possibly weighted) counts of the reference and of the
  current window over the same bins (numeric bins fixed from the reference's
  quantiles, or categories plus an ``other`` bucket). Used by PSI,
  Jensen-Shannon, Hellinger and chi-square.
* **samples**: raw values (possibly weighted by ``1/sample rate``), e.g. the
  reservoirs of a reference and of a window. Used by Kolmogorov-Smirnov and
  Wasserstein.

Everything here is numpy only (no scipy at runtime); the tests check each
statistic against scipy. Results are always finite numbers: empty inputs give
"no evidence" values (distance 0, p-value 1) and ``run_method`` reports them as
``enough_data=False``. Non-finite sample values (NaN, +/-inf) are ignored
together with their weights; invalid counts or weights (negative, NaN, shape
mismatch) are caller errors and raise ``ValueError``.

The method table (``METHODS``) and the default policy (``default_method``) are
explained, with the simulation behind them, in ``docs/drift-methods.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "METHODS",
    "MethodResult",
    "MethodSpec",
    "chi2_sf",
    "chi_square",
    "default_method",
    "effective_sample_size",
    "hellinger",
    "jensen_shannon",
    "kolmogorov_sf",
    "ks_2samp",
    "psi",
    "resolve_method",
    "run_method",
    "wasserstein",
    "wasserstein_normed",
]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]
FeatureKind = Literal["numeric", "categorical"]
MethodInput = Literal["counts", "samples"]
MethodKind = Literal["distance", "pvalue"]

# Cochran's rule: chi-square bins with a smaller expected count are pooled.
MIN_EXPECTED_COUNT = 5.0
# Sample size at or below which the default policy uses a statistical test (KS,
# chi-square); above it, a distance with a fixed threshold (see docs/drift-methods.md).
TEST_MAX_SAMPLES = 1000
# Relative scale used to normalise Wasserstein when the reference is constant.
CONSTANT_REFERENCE_SCALE = 1e-3
# Effective sample sizes up to this use the exact Kolmogorov distribution of
# size n (Durbin's matrix method); above, Stephens' corrected limit distribution.
_EXACT_KS_MAX_N = 100


# --------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------


def _counts_pair(ref_counts: ArrayLike, cur_counts: ArrayLike) -> tuple[FloatArray, FloatArray]:
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    for label, arr in (("ref_counts", ref), ("cur_counts", cur)):
        if arr.ndim != 1:
            raise ValueError(f"{label} must be 1-dimensional, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{label} must be finite (no NaN or inf)")
        if np.any(arr < 0):
            raise ValueError(f"{label} must be non-negative")
    if ref.shape != cur.shape:
        raise ValueError(
            f"ref_counts and cur_counts must have the same bins, got {ref.size} and {cur.size}"
        )
    return ref, cur


def _proportions(counts: FloatArray) -> FloatArray:
    largest = counts.max(initial=0.0)
    if largest <= 0:
        return np.zeros_like(counts)
    scaled = counts / largest  # huge weighted counts cannot overflow the sum
    return scaled / scaled.sum()


def _samples(
    values: ArrayLike, weights: ArrayLike | None, label: str
) -> tuple[FloatArray, FloatArray]:
    """Finite values and their positive weights, sorted by value."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if weights is None:
        w = np.ones_like(x)
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != x.shape:
            raise ValueError(
                f"{label} weights must match its values, got {w.size} weights for {x.size} values"
            )
        if np.any(np.isnan(w)) or np.any(np.isinf(w)):
            raise ValueError(f"{label} weights must be finite (no NaN or inf)")
        if np.any(w < 0):
            raise ValueError(f"{label} weights must be non-negative")
    keep = np.isfinite(x) & (w > 0)
    x, w = x[keep], w[keep]
    order = np.argsort(x, kind="stable")
    return x[order], w[order]


def effective_sample_size(weights: ArrayLike) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 for no weight).

    Equals the number of samples when all weights are equal.
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    w = w[np.isfinite(w) & (w > 0)]
    if w.size == 0:
        return 0.0
    # Scale first so that large weights cannot overflow the squares.
    w = w / w.max()
    return float(w.sum() ** 2 / np.square(w).sum())


# --------------------------------------------------------------------------
# binned (counts) statistics
# --------------------------------------------------------------------------


def psi(ref_counts: ArrayLike, cur_counts: ArrayLike, eps: float = 1e-4) -> float:
    """Population Stability Index ``sum (q - p) * ln(q / p)`` over the bins.

    ``p`` and ``q`` are the reference and current proportions. A bin with a
    proportion below ``eps`` (e.g. zero count) has its proportion replaced by
    ``eps`` on that side, so a bin that is empty on one side contributes a
    finite, large term instead of infinity; bins empty on both sides contribute
    nothing. Symmetric in its two arguments; 0 for identical proportions.
    Returns 0.0 when either side has no mass.
    """
    if not (math.isfinite(eps) and 0 < eps < 1):
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    ref, cur = _counts_pair(ref_counts, cur_counts)
    if not (ref.any() and cur.any()):
        return 0.0
    p = np.maximum(_proportions(ref), eps)
    q = np.maximum(_proportions(cur), eps)
    return float(max(np.sum((q - p) * np.log(q / p)), 0.0))


def jensen_shannon(ref_counts: ArrayLike, cur_counts: ArrayLike) -> float:
    """Jensen-Shannon distance (square root of the divergence, natural log).

    Ranges over ``[0, sqrt(ln 2)]`` (about 0.833); same convention as
    ``scipy.spatial.distance.jensenshannon`` with its default base. No
    smoothing is needed: the mixture ``m = (p + q) / 2`` is positive wherever
    ``p`` or ``q`` is, and ``0 * ln 0`` is taken as 0. Returns 0.0 when either
    side has no mass.
    """
    ref, cur = _counts_pair(ref_counts, cur_counts)
    if not (ref.any() and cur.any()):
        return 0.0
    p, q = _proportions(ref), _proportions(cur)
    m = (p + q) / 2.0

    def kl_to_m(a: FloatArray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    divergence = (kl_to_m(p) + kl_to_m(q)) / 2.0
    return float(math.sqrt(min(max(divergence, 0.0), math.log(2.0))))


def hellinger(ref_counts: ArrayLike, cur_counts: ArrayLike) -> float:
    """Hellinger distance ``sqrt(1 - sum sqrt(p * q))``, in ``[0, 1]``.

    Equivalently ``||sqrt(p) - sqrt(q)||_2 / sqrt(2)``. Returns 0.0 when either
    side has no mass.
    """
    ref, cur = _counts_pair(ref_counts, cur_counts)
    if not (ref.any() and cur.any()):
        return 0.0
    diff = np.sqrt(_proportions(ref)) - np.sqrt(_proportions(cur))
    return float(min(math.sqrt(float(np.dot(diff, diff)) / 2.0), 1.0))


def chi_square(
    ref_counts: ArrayLike,
    cur_counts: ArrayLike,
    n_current: float | None = None,
    *,
    n_reference: float | None = None,
    min_expected: float = MIN_EXPECTED_COUNT,
) -> tuple[float, float]:
    """Chi-square test of homogeneity of two binned samples: (statistic, p-value).

    The 2 x K contingency table (reference row, current row) is tested for
    equal bin proportions, like ``scipy.stats.chi2_contingency(table,
    correction=False)``; bins empty in both rows are dropped, so the degrees of
    freedom are (number of bins left - 1). Treating the reference as a sample
    too (rather than as the true distribution) keeps the test calibrated when
    the reference is not much larger than the window.

    Sparse bins are pooled first (Cochran's rule): every bin whose expected
    count is below ``min_expected`` in either row goes into one pooled bin,
    grown with the next smallest bins until it reaches ``min_expected`` too.
    Without this the chi-square approximation rejects too often on small
    windows with rare categories (7-8% instead of 5% at n = 30-100 with a long
    tail of categories, see docs/drift-methods.md). ``min_expected=0``
    disables pooling.

    ``n_current`` is the effective sample size of the current window (for
    weighted counts: the Kish size or the raw number of captured rows, never
    the weighted total); the current proportions are scaled to it. Without it
    the counts' total is used. ``n_reference`` does the same for the reference.
    Returns ``(0.0, 1.0)`` (no evidence) when either side is empty or fewer
    than two bins are left.
    """
    if not (math.isfinite(min_expected) and min_expected >= 0):
        raise ValueError(f"min_expected must be a finite number >= 0, got {min_expected!r}")
    ref, cur = _counts_pair(ref_counts, cur_counts)
    ref_row = _scaled_row(ref, n_reference, "n_reference")
    cur_row = _scaled_row(cur, n_current, "n_current")
    n_ref, n_cur = ref_row.sum(), cur_row.sum()
    if n_ref <= 0 or n_cur <= 0:
        return 0.0, 1.0
    keep = (ref_row + cur_row) > 0
    ref_row, cur_row = _pool_sparse_bins(ref_row[keep], cur_row[keep], min_expected)
    if ref_row.size < 2:
        return 0.0, 1.0
    column = ref_row + cur_row
    total = n_ref + n_cur
    expected_ref = column * (n_ref / total)
    expected_cur = column * (n_cur / total)
    statistic = float(
        np.sum((ref_row - expected_ref) ** 2 / expected_ref)
        + np.sum((cur_row - expected_cur) ** 2 / expected_cur)
    )
    return statistic, chi2_sf(statistic, ref_row.size - 1)


def _pool_sparse_bins(
    ref_row: FloatArray, cur_row: FloatArray, min_expected: float
) -> tuple[FloatArray, FloatArray]:
    """Merge the bins whose smaller expected count is below ``min_expected``."""
    column = ref_row + cur_row
    total = column.sum()
    expected = column * (min(ref_row.sum(), cur_row.sum()) / total)
    if column.size < 2 or not np.any(expected < min_expected):
        return ref_row, cur_row
    order = np.argsort(expected, kind="stable")
    pooled = expected < min_expected
    pooled_expected = float(expected[pooled].sum())
    for index in order:
        if pooled_expected >= min_expected:
            break
        if not pooled[index]:
            pooled[index] = True
            pooled_expected += float(expected[index])
    rest = ~pooled
    return (
        np.append(ref_row[rest], ref_row[pooled].sum()),
        np.append(cur_row[rest], cur_row[pooled].sum()),
    )


def _scaled_row(counts: FloatArray, n: float | None, label: str) -> FloatArray:
    if n is None:
        return counts
    if not (math.isfinite(n) and n >= 0):
        raise ValueError(f"{label} must be a finite number >= 0, got {n!r}")
    total = counts.sum()
    if total <= 0 or n == 0:
        return np.zeros_like(counts)
    return counts * (n / total)


# --------------------------------------------------------------------------
# special functions: chi-square and Kolmogorov survival functions
# --------------------------------------------------------------------------


def chi2_sf(x: float, df: float) -> float:
    """Survival function of the chi-square distribution, ``P(X > x)``.

    Computed as the regularized upper incomplete gamma ``Q(df / 2, x / 2)``:
    by its power series for ``x < a + 1`` and by a Lentz continued fraction
    otherwise (the standard split that keeps both converging quickly).
    """
    if not (math.isfinite(df) and df > 0):
        raise ValueError(f"df must be a finite number > 0, got {df!r}")
    if math.isnan(x):
        raise ValueError("x must not be NaN")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    return _gamma_q(df / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    log_prefactor = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        # P(a, x) = x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a + 1) ... (a + n))
        term = 1.0 / a
        total = term
        denom = a
        for _ in range(100_000):
            denom += 1.0
            term *= x / denom
            total += term
            if term < total * 1e-17:
                break
        lower = math.exp(log_prefactor) * total
        return min(max(1.0 - lower, 0.0), 1.0)
    # Q(a, x) = x^a e^-x / Gamma(a) * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a - ...))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    fraction = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < tiny:
            d = tiny
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        delta = d * c
        fraction *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(max(math.exp(log_prefactor) * fraction, 0.0), 1.0)


def kolmogorov_sf(d: float, n: float) -> float:
    """``P(D_n > d)`` for the two-sided one-sample KS statistic of ``n`` samples.

    For ``n <= 100`` the exact distribution, n rounded to an integer: Durbin's
    matrix formula, or in the tail below 1e-3 twice the exact one-sided
    (Birnbaum-Tingey) probability, which agrees to about 1e-10. Above 100,
    Kolmogorov's limit distribution at Stephens' corrected argument
    ``(sqrt(n) + 0.12 + 0.11 / sqrt(n)) * d``: within 0.5% of the exact tail
    around p = 0.05 and within 4% down to p = 1e-6 (scipy's ``kstwo`` is the
    reference in the tests). For two samples pass ``n = n1 * n2 / (n1 + n2)``.
    """
    if math.isnan(d) or math.isnan(n):
        raise ValueError("d and n must not be NaN")
    if n <= 0 or d <= 0:
        return 1.0
    if d >= 1:
        return 0.0
    if math.isinf(n):
        return 0.0
    n_int = max(round(n), 1)
    if n_int <= _EXACT_KS_MAX_N:
        # In the far tail twice the one-sided probability is exact to ~1e-10
        # (relative) and much cheaper than the matrix method.
        tail = 2.0 * _smirnov_sf(d, n_int)
        if tail < 1e-3:
            return tail
        return _kolmogorov_sf_exact(d, n_int)
    root = math.sqrt(n)
    return _kolmogorov_limit_sf((root + 0.12 + 0.11 / root) * d)


def _kolmogorov_limit_sf(t: float) -> float:
    """``P(K > t)`` for Kolmogorov's limit distribution ``K = sup |Brownian bridge|``."""
    if t <= 0:
        return 1.0
    if t < 1.0:
        # Jacobi-theta form of the CDF, fast for small t.
        factor = math.sqrt(2.0 * math.pi) / t
        s = 0.0
        for k in range(1, 40):
            term = math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * t * t))
            s += term
            if term < 1e-17 * s:
                break
        return min(max(1.0 - factor * s, 0.0), 1.0)
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * t * t)
        total += term if k % 2 == 1 else -term
        if term < 1e-17 * total:
            break
    return min(max(2.0 * total, 0.0), 1.0)


def _smirnov_sf(d: float, n: int) -> float:
    """Exact one-sided ``P(D_n^+ >= d)`` (Birnbaum-Tingey finite sum)."""
    j = np.arange(0, math.floor(n * (1.0 - d)) + 1, dtype=np.float64)
    base = 1.0 - d - j / n
    keep = base > 0
    j, base = j[keep], base[keep]
    if j.size == 0:
        return 0.0
    # log C(n, j) by cumulative sums of log((n - i + 1) / i).
    steps = np.log((n - np.arange(1, j[-1] + 1) + 1) / np.arange(1, j[-1] + 1))
    log_binom = np.concatenate(([0.0], np.cumsum(steps)))[j.astype(np.int64)]
    log_terms = log_binom + (n - j) * np.log(base) + (j - 1) * np.log(d + j / n)
    top = float(log_terms.max())
    return min(d * math.exp(top) * float(np.exp(log_terms - top).sum()), 1.0)


def _kolmogorov_sf_exact(d: float, n: int) -> float:
    """Exact ``P(D_n >= d)`` by the Durbin / Marsaglia-Tsang-Wang matrix method."""
    if n * d <= 0.5:
        return 1.0
    if d >= 1.0 - 1.0 / n:
        # Only the extreme configurations: P = 2 (1 - d)^n.
        return min(2.0 * (1.0 - d) ** n, 1.0)
    k = math.ceil(n * d - 1e-12)
    h = k - n * d
    m = 2 * k - 1
    i = np.arange(m)[:, None]
    j = np.arange(m)[None, :]
    power = i - j + 1
    h_matrix = (power >= 0).astype(np.float64)
    powers_of_h = h ** np.arange(1, m + 1, dtype=np.float64)
    h_matrix[:, 0] -= powers_of_h
    h_matrix[m - 1, :] -= powers_of_h[::-1]
    if 2 * h - 1 > 0:
        h_matrix[m - 1, 0] += (2 * h - 1) ** m
    log_fact = np.array([math.lgamma(p + 1.0) for p in range(m + 1)])
    positive = power > 0
    h_matrix[positive] *= np.exp(-log_fact[power[positive]])
    value, log_scale = _scaled_matrix_power(h_matrix, n)
    entry = value[k - 1, k - 1]
    if entry <= 0:
        return 1.0
    log_cdf = math.log(entry) + log_scale + math.lgamma(n + 1.0) - n * math.log(n)
    cdf = math.exp(min(log_cdf, 0.0))
    return min(max(1.0 - cdf, 0.0), 1.0)


def _scaled_matrix_power(matrix: FloatArray, exponent: int) -> tuple[FloatArray, float]:
    """``matrix ** exponent`` as (mantissa matrix, natural-log scale), overflow-safe."""
    result = np.eye(matrix.shape[0])
    result_log = 0.0
    base = matrix.copy()
    base_log = 0.0
    e = exponent
    while e > 0:
        if e & 1:
            result = result @ base
            result_log += base_log
            scale = float(np.abs(result).max())
            if scale > 0:
                result /= scale
                result_log += math.log(scale)
        e >>= 1
        if e:
            base = base @ base
            base_log *= 2.0
            scale = float(np.abs(base).max())
            if scale > 0:
                base /= scale
                base_log += math.log(scale)
    return result, result_log


# --------------------------------------------------------------------------
# sample statistics
# --------------------------------------------------------------------------


def _weighted_cdf_at(sorted_x: FloatArray, sorted_w: FloatArray, points: FloatArray) -> FloatArray:
    """Weighted empirical CDF ``P(X <= point)`` evaluated at ``points``."""
    cumulative = np.concatenate(([0.0], np.cumsum(sorted_w)))
    cumulative /= cumulative[-1]
    return cumulative[np.searchsorted(sorted_x, points, side="right")]


def ks_2samp(
    ref: ArrayLike,
    cur: ArrayLike,
    ref_weights: ArrayLike | None = None,
    cur_weights: ArrayLike | None = None,
    *,
    n_reference: float | None = None,
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test: (statistic, two-sided p-value).

    The statistic is the largest gap between the two (weighted) empirical
    CDFs. The p-value is ``kolmogorov_sf(D, n1 * n2 / (n1 + n2))`` with the
    effective (Kish) sample sizes, which equal the sample counts when
    unweighted; this is the asymptotic method of
    ``scipy.stats.ks_2samp(method="asymp")``. Non-finite values are ignored.

    ``n_reference`` replaces the reference's sample size when ``ref`` is not a
    random sample but stands for more rows: a quantile sample of a reference
    of N rows (``Reference`` keeps one) has the empirical CDF of all N rows
    to within ``1 / len(ref)``, so the test must use N; with the sample's own
    size it would be conservative (no false positives, less power).
    Returns ``(0.0, 1.0)`` when either sample is empty or ``n_reference`` is 0.
    """
    n1 = _optional_size(n_reference, "n_reference")
    ref_x, ref_w = _samples(ref, ref_weights, "ref")
    cur_x, cur_w = _samples(cur, cur_weights, "cur")
    if ref_x.size == 0 or cur_x.size == 0 or n1 == 0:
        return 0.0, 1.0
    return _ks_from_gap(_cdf_gap(ref_x, ref_w, cur_x, cur_w)[1], ref_w, cur_w, n1)


def _cdf_gap(
    ref_x: FloatArray, ref_w: FloatArray, cur_x: FloatArray, cur_w: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Every value of both sorted samples and ``|F_ref - F_cur|`` at each of them."""
    points = np.union1d(ref_x, cur_x)
    gap = np.abs(_weighted_cdf_at(ref_x, ref_w, points) - _weighted_cdf_at(cur_x, cur_w, points))
    return points, gap


def _ks_from_gap(
    gap: FloatArray, ref_w: FloatArray, cur_w: FloatArray, n1: float | None
) -> tuple[float, float]:
    statistic = float(min(gap.max(), 1.0))
    if n1 is None:
        n1 = effective_sample_size(ref_w)
    n2 = effective_sample_size(cur_w)
    return statistic, kolmogorov_sf(statistic, n1 * n2 / (n1 + n2))


def _optional_size(n: float | None, label: str) -> float | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 0:
        raise ValueError(f"{label} must be a finite number >= 0, got {n!r}")
    return float(n)


def wasserstein(
    ref: ArrayLike,
    cur: ArrayLike,
    ref_weights: ArrayLike | None = None,
    cur_weights: ArrayLike | None = None,
) -> float:
    """First Wasserstein (earth mover's) distance ``integral |F_ref - F_cur| dx``.

    In the units of the values. Non-finite values are ignored; returns 0.0
    when either sample is empty.
    """
    ref_x, ref_w = _samples(ref, ref_weights, "ref")
    cur_x, cur_w = _samples(cur, cur_weights, "cur")
    if ref_x.size == 0 or cur_x.size == 0:
        return 0.0
    return _wasserstein_sorted(ref_x, ref_w, cur_x, cur_w)


def _wasserstein_sorted(
    ref_x: FloatArray, ref_w: FloatArray, cur_x: FloatArray, cur_w: FloatArray
) -> float:
    return _wasserstein_from_gap(*_cdf_gap(ref_x, ref_w, cur_x, cur_w))


def _wasserstein_from_gap(points: FloatArray, gap_at_points: FloatArray) -> float:
    if points.size < 2:
        return 0.0
    gap = gap_at_points[:-1]  # the CDFs are steps: constant from each point to the next
    moved = gap > 0  # skips 0 * inf where extreme values overflow the spacing
    with np.errstate(over="ignore"):
        distance = float(np.dot(gap[moved], np.diff(points)[moved]))
    return distance if math.isfinite(distance) else float(np.finfo(np.float64).max)


def _weighted_std(sorted_x: FloatArray, weights: FloatArray) -> float:
    """Weighted population standard deviation, safe for large offsets and magnitudes."""
    # Centre on the median, then scale to [-1, 1]: no cancellation, no overflow.
    centred = sorted_x / 2.0 - sorted_x[sorted_x.size // 2] / 2.0
    magnitude = float(np.abs(centred).max())
    if magnitude == 0.0:
        return 0.0
    unit = centred / magnitude
    mean = np.average(unit, weights=weights)
    variance = float(np.average(np.square(unit - mean), weights=weights))
    return 2.0 * magnitude * math.sqrt(variance)


def wasserstein_normed(
    ref: ArrayLike,
    cur: ArrayLike,
    ref_weights: ArrayLike | None = None,
    cur_weights: ArrayLike | None = None,
) -> float:
    """Wasserstein distance divided by the reference's (weighted) standard deviation.

    A score of 0.1 means the current distribution is, on average, a tenth of a
    reference standard deviation away. When the reference is constant (value
    ``c``) the scale is ``1e-3 * max(|c|, 1)`` instead, so an identical
    constant scores 0 and any real move of the values scores high.
    Non-finite values are ignored; returns 0.0 when either sample is empty.
    """
    ref_x, ref_w = _samples(ref, ref_weights, "ref")
    cur_x, cur_w = _samples(cur, cur_weights, "cur")
    if ref_x.size == 0 or cur_x.size == 0:
        return 0.0
    return _normalise_distance(_wasserstein_sorted(ref_x, ref_w, cur_x, cur_w), ref_x, ref_w)


def _normalise_distance(distance: float, ref_x: FloatArray, ref_w: FloatArray) -> float:
    """A Wasserstein distance over the reference spread (see ``wasserstein_normed``)."""
    if distance == 0.0:
        return 0.0
    if ref_x[0] == ref_x[-1]:
        scale = CONSTANT_REFERENCE_SCALE * max(abs(float(ref_x[0])), 1.0)
    else:
        scale = _weighted_std(ref_x, ref_w)
        if not scale > 0:
            scale = CONSTANT_REFERENCE_SCALE * max(abs(float(ref_x[ref_x.size // 2])), 1.0)
    score = distance / scale
    return float(score) if math.isfinite(score) else float(np.finfo(np.float64).max)


# --------------------------------------------------------------------------
# method table and default policy
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """A drift method: what it reads, how its verdict is made, its default threshold.

    ``kind == "pvalue"``: drifted when ``p_value < threshold`` (significance
    level). ``kind == "distance"``: drifted when ``score >= threshold`` and, for
    a distance with a ``guard_level``, also when the matching test on the same
    data (KS for samples) is significant at that level: ``p_value <
    guard_level``. The guard keeps a distance computed on bounded samples (the
    reservoirs) from flagging sampling noise; see docs/drift-methods.md.
    """

    name: str
    input: MethodInput
    kind: MethodKind
    threshold: float
    description: str
    guard_level: float | None = None


@dataclass(frozen=True)
class MethodResult:
    """The outcome of one method on one feature.

    ``score`` is the distance, or the test statistic for p-value methods;
    ``p_value`` is the test's p-value, or for a guarded distance the p-value of
    its guard test, else None. ``enough_data`` is False when either
    side had no usable data (empty window, all values missing or non-finite):
    then ``score == 0.0``, ``p_value is None`` and ``drifted is False``, a
    "no verdict" result rather than NaN.
    """

    score: float
    p_value: float | None
    drifted: bool
    enough_data: bool = True


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "ks",
            "samples",
            "pvalue",
            0.05,
            "two-sample Kolmogorov-Smirnov: score is the largest gap between the CDFs",
        ),
        MethodSpec(
            "wasserstein_normed",
            "samples",
            "distance",
            0.1,
            "Wasserstein-1 distance in reference standard deviations"
            " (drifted only if the KS test on the same samples also has p < 0.05)",
            guard_level=0.05,
        ),
        MethodSpec(
            "chi_square",
            "counts",
            "pvalue",
            0.05,
            "chi-square test of homogeneity of the bin proportions: score is the statistic",
        ),
        MethodSpec(
            "jensen_shannon",
            "counts",
            "distance",
            0.1,
            "Jensen-Shannon distance (natural log), 0 to 0.833",
        ),
        MethodSpec(
            "psi",
            "counts",
            "distance",
            0.1,
            "Population Stability Index; 0.1 moderate, 0.25 major shift",
        ),
        MethodSpec(
            "hellinger",
            "counts",
            "distance",
            0.1,
            "Hellinger distance, 0 to 1",
        ),
    )
}

# Other spellings accepted in overrides (Evidently's names among them).
_ALIASES: dict[str, str] = {
    "kolmogorov_smirnov": "ks",
    "ks_2samp": "ks",
    "wasserstein": "wasserstein_normed",
    "chisquare": "chi_square",
    "chi2": "chi_square",
    "jensenshannon": "jensen_shannon",
    "js": "jensen_shannon",
}


def resolve_method(name: str) -> MethodSpec:
    """The ``MethodSpec`` for a method name or alias (case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"method name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    spec = METHODS.get(key)
    if spec is None:
        known = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown drift method {name!r}; known methods: {known}")
    return spec


def default_method(kind: FeatureKind, n_current: float) -> tuple[str, float]:
    """The default (method name, threshold) for a feature kind and window size.

    Numeric: KS at p < 0.05 up to 1000 samples, normalised Wasserstein >= 0.1
    above (guarded: the KS test on the same samples must agree at p < 0.05,
    because both sides are bounded reservoirs). Categorical: chi-square at
    p < 0.05 up to 1000 samples, Jensen-Shannon distance >= 0.1 above.
    ``n_current`` is the effective size of the current window. See
    docs/drift-methods.md for the reasoning.
    """
    if not (isinstance(n_current, (int, float)) and math.isfinite(n_current) and n_current >= 0):
        raise ValueError(f"n_current must be a finite number >= 0, got {n_current!r}")
    if kind == "numeric":
        name = "ks" if n_current <= TEST_MAX_SAMPLES else "wasserstein_normed"
    elif kind == "categorical":
        name = "chi_square" if n_current <= TEST_MAX_SAMPLES else "jensen_shannon"
    else:
        raise ValueError(f"kind must be 'numeric' or 'categorical', got {kind!r}")
    return name, METHODS[name].threshold


def _check_threshold(spec: MethodSpec, threshold: float) -> float:
    value = float(threshold)
    if spec.kind == "pvalue":
        if not (0.0 < value < 1.0):
            raise ValueError(
                f"threshold of {spec.name} is a significance level in (0, 1), got {threshold!r}"
            )
    elif not (math.isfinite(value) and value >= 0.0):
        raise ValueError(
            f"threshold of {spec.name} must be a finite distance >= 0, got {threshold!r}"
        )
    return value


def _no_verdict() -> MethodResult:
    return MethodResult(score=0.0, p_value=None, drifted=False, enough_data=False)


def run_method(
    name: str,
    *,
    threshold: float | None = None,
    ref_counts: ArrayLike | None = None,
    cur_counts: ArrayLike | None = None,
    ref_values: ArrayLike | None = None,
    cur_values: ArrayLike | None = None,
    ref_weights: ArrayLike | None = None,
    cur_weights: ArrayLike | None = None,
    n_current: float | None = None,
    n_reference: float | None = None,
) -> MethodResult:
    """Run one drift method and apply its threshold (its default when None).

    Count methods read ``ref_counts``/``cur_counts`` (``n_current``: effective
    size of the current window, for chi-square). Sample methods read
    ``ref_values``/``cur_values`` and optional weights; ``n_reference`` is the
    number of reference rows that ``ref_values`` stands for when it is a
    quantile sample (see ``ks_2samp``), e.g. ``FeatureReference.n_valid``.
    The current sample's size always comes from its own weights (a window's
    reservoir is a random sample), never from ``n_current``. When either side
    has no usable data the result is the "no verdict" ``MethodResult(0.0,
    None, False, enough_data=False)``.
    """
    spec = resolve_method(name)
    level = _check_threshold(spec, spec.threshold if threshold is None else threshold)
    n_ref_sample = _optional_size(n_reference, "n_reference")
    n_cur_window = _optional_size(n_current, "n_current")
    if spec.input == "counts":
        if ref_counts is None or cur_counts is None:
            raise ValueError(f"method {spec.name} needs ref_counts and cur_counts")
        ref, cur = _counts_pair(ref_counts, cur_counts)
        if not (ref.any() and cur.any()) or n_cur_window == 0:
            return _no_verdict()
        if spec.name == "chi_square":
            statistic, p_value = chi_square(ref, cur, n_cur_window)
            return MethodResult(statistic, p_value, p_value < level)
        if spec.name == "psi":
            score = psi(ref, cur)
        elif spec.name == "jensen_shannon":
            score = jensen_shannon(ref, cur)
        else:
            score = hellinger(ref, cur)
        return MethodResult(score, None, score >= level)
    if ref_values is None or cur_values is None:
        raise ValueError(f"method {spec.name} needs ref_values and cur_values")
    ref_x, ref_w = _samples(ref_values, ref_weights, "ref")
    cur_x, cur_w = _samples(cur_values, cur_weights, "cur")
    if ref_x.size == 0 or cur_x.size == 0 or n_ref_sample == 0:
        return _no_verdict()
    # Both samples are sorted and clean: the CDF gaps serve KS and Wasserstein alike.
    points, gap = _cdf_gap(ref_x, ref_w, cur_x, cur_w)
    if spec.name == "ks":
        statistic, p_value = _ks_from_gap(gap, ref_w, cur_w, n_ref_sample)
        return MethodResult(statistic, p_value, p_value < level)
    score = _normalise_distance(_wasserstein_from_gap(points, gap), ref_x, ref_w)
    if spec.guard_level is None:
        return MethodResult(score, None, score >= level)
    _, guard_p = _ks_from_gap(gap, ref_w, cur_w, n_ref_sample)
    return MethodResult(score, guard_p, score >= level and guard_p < spec.guard_level)
