"""Tests of modeltrace.drift.statistics against scipy, numpy and textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import euclidean, jensenshannon

from modeltrace.drift import statistics as S

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------


@st.composite
def count_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    k = draw(st.integers(min_value=1, max_value=12))
    counts = st.lists(
        st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=k, max_size=k
    )
    ref = np.array(draw(counts))
    cur = np.array(draw(counts))
    return ref, cur


finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite_floats, min_size=1, max_size=60).map(np.array)


@st.composite
def weighted_samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    values = draw(samples)
    weights = draw(
        st.lists(
            st.floats(min_value=0.01, max_value=100.0),
            min_size=values.size,
            max_size=values.size,
        )
    )
    return values, np.array(weights)


# ---------------------------------------------------------------------------
# chi-square survival function and Kolmogorov distribution
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("df", [0.5, 1, 2, 3, 5, 9, 20, 50, 100, 999, 10_000])
def test_chi2_sf_matches_scipy_over_a_grid(df: float) -> None:
    xs = np.concatenate(
        [np.linspace(1e-6, 3, 25), np.linspace(0.1 * df, 4 * df + 80, 200), [0.999 * df, df]]
    )
    for x in xs:
        expected = stats.chi2.sf(x, df)
        got = S.chi2_sf(float(x), df)
        if expected > 1e-300:
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-300), (x, df)
        else:
            assert got < 1e-290


def test_chi2_sf_limits_and_errors() -> None:
    assert S.chi2_sf(0.0, 3) == 1.0
    assert S.chi2_sf(-1.0, 3) == 1.0
    assert S.chi2_sf(math.inf, 3) == 0.0
    with pytest.raises(ValueError, match="df"):
        S.chi2_sf(1.0, 0)
    with pytest.raises(ValueError, match="NaN"):
        S.chi2_sf(math.nan, 2)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 21, 40, 77, 100])
def test_kolmogorov_sf_is_exact_for_small_n(n: int) -> None:
    for d in np.linspace(0.001, 0.999, 120):
        expected = stats.kstwo.sf(d, n)
        got = S.kolmogorov_sf(float(d), n)
        # Relative accuracy all the way into the far tail.
        assert got == pytest.approx(expected, rel=1e-8, abs=1e-250), (n, d)


@pytest.mark.parametrize("n", [101, 150, 400, 1000, 5000, 100_000])
def test_kolmogorov_sf_large_n_is_close_to_exact(n: int) -> None:
    for p in [0.9, 0.5, 0.2, 0.1, 0.05, 0.01, 1e-3, 1e-4, 1e-6]:
        d = stats.kstwo.isf(p, n)
        got = S.kolmogorov_sf(float(d), n)
        assert got == pytest.approx(p, rel=0.04), (n, p)
        if p == 0.05:
            assert got == pytest.approx(p, rel=0.005)


def test_kolmogorov_sf_limits() -> None:
    assert S.kolmogorov_sf(0.0, 10) == 1.0
    assert S.kolmogorov_sf(1.0, 10) == 0.0
    assert S.kolmogorov_sf(0.3, 0) == 1.0
    # n = 1: D >= 1/2 always, P(D > d) = 2 (1 - d) above.
    assert S.kolmogorov_sf(0.4, 1) == 1.0
    assert S.kolmogorov_sf(0.7, 1) == pytest.approx(0.6)


# ---------------------------------------------------------------------------
# Kolmogorov-Smirnov
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n1", "n2", "shift"),
    [
        (10, 15, 0.0),
        (30, 30, 0.8),
        (100, 80, 0.2),
        (1000, 700, 0.15),
        (5, 3000, 0.5),
        (2000, 2000, 0),
    ],
)
def test_ks_matches_scipy_asymptotic(n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(n1 * 7 + n2)
    x = rng.normal(size=n1)
    y = rng.normal(shift, size=n2)
    statistic, p_value = S.ks_2samp(x, y)
    expected = stats.ks_2samp(x, y, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=0.04, abs=1e-12)


def test_ks_with_ties_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, size=300).astype(float)
    y = rng.integers(0, 7, size=250).astype(float)
    statistic, p_value = S.ks_2samp(x, y)
    expected = stats.ks_2samp(x, y, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=0.04)


def test_ks_asymptotic_p_value_is_close_to_the_exact_one_for_small_samples() -> None:
    rng = np.random.default_rng(11)
    agree = 0
    cases = 300
    for _ in range(cases):
        n1, n2 = (int(v) for v in rng.integers(5, 50, size=2))
        x = rng.normal(size=n1)
        y = rng.normal(rng.uniform(0, 1.5), size=n2)
        _, p_value = S.ks_2samp(x, y)
        exact = stats.ks_2samp(x, y, method="exact").pvalue
        agree += (p_value < 0.05) == (exact < 0.05)
        # The asymptotic tail is within a factor of two of the exact one near
        # the usual significance levels (scipy's own "asymp" does the same).
        if 0.01 <= exact <= 0.2:
            assert exact / 2 <= p_value <= exact * 2, (n1, n2, p_value, exact)
    assert agree / cases >= 0.97


def test_weighted_ks_equals_repeated_samples_with_kish_sizes() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=40)
    y = rng.normal(0.5, size=30)
    wx = rng.integers(1, 4, size=40)
    wy = rng.integers(1, 4, size=30)
    statistic, p_value = S.ks_2samp(x, y, wx, wy)
    repeated = stats.ks_2samp(np.repeat(x, wx), np.repeat(y, wy), method="asymp")
    assert statistic == pytest.approx(repeated.statistic, abs=1e-12)
    n1 = wx.sum() ** 2 / (wx**2).sum()
    n2 = wy.sum() ** 2 / (wy**2).sum()
    assert p_value == pytest.approx(stats.kstwo.sf(statistic, round(n1 * n2 / (n1 + n2))), rel=1e-6)


def test_ks_n_reference_stands_for_the_rows_behind_a_quantile_sample() -> None:
    rng = np.random.default_rng(9)
    full_reference = rng.normal(size=20_000)
    quantiles = np.quantile(full_reference, (np.arange(1000) + 0.5) / 1000)
    cur = rng.normal(0.1, size=800)
    statistic, p_value = S.ks_2samp(quantiles, cur, n_reference=20_000)
    full = stats.ks_2samp(full_reference, cur, method="asymp")
    # The quantile sample's CDF is within 1/1000 of the full reference's.
    assert statistic == pytest.approx(full.statistic, abs=1e-3)
    en = 20_000 * 800 / 20_800
    assert p_value == pytest.approx(stats.kstwo.sf(statistic, round(en)), rel=0.04)
    assert S.ks_2samp(quantiles, cur, n_reference=0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="n_reference"):
        S.ks_2samp(quantiles, cur, n_reference=-5)
    result = S.run_method("ks", ref_values=quantiles, cur_values=cur, n_reference=20_000)
    assert (result.score, result.p_value) == (statistic, p_value)
    guarded = S.run_method(
        "wasserstein_normed", ref_values=quantiles, cur_values=cur, n_reference=20_000
    )
    assert guarded.p_value == p_value
    assert not S.run_method("ks", ref_values=quantiles, cur_values=cur, n_reference=0).enough_data


def test_effective_sample_size_is_kish() -> None:
    w = np.array([1.0, 2.0, 3.0, 0.0])
    assert S.effective_sample_size(w) == pytest.approx(36 / 14)
    assert S.effective_sample_size(np.full(7, 5e300)) == pytest.approx(7)
    assert S.effective_sample_size([]) == 0.0


# ---------------------------------------------------------------------------
# Wasserstein
# ---------------------------------------------------------------------------


def test_wasserstein_matches_scipy_weighted_and_unweighted() -> None:
    rng = np.random.default_rng(21)
    x = rng.normal(size=200)
    y = rng.gamma(2.0, size=150)
    wx = rng.uniform(0.1, 5, size=200)
    wy = rng.uniform(0.1, 5, size=150)
    assert S.wasserstein(x, y) == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-12)
    assert S.wasserstein(x, y, wx, wy) == pytest.approx(
        stats.wasserstein_distance(x, y, wx, wy), rel=1e-12
    )


def test_wasserstein_normed_divides_by_the_weighted_reference_std() -> None:
    rng = np.random.default_rng(22)
    x = rng.normal(3.0, 2.0, size=300)
    y = rng.normal(3.5, 2.0, size=200)
    wx = rng.uniform(0.5, 2, size=300)
    std = math.sqrt(np.cov(x, aweights=wx, ddof=0))
    expected = stats.wasserstein_distance(x, y, wx, None) / std
    assert S.wasserstein_normed(x, y, wx, None) == pytest.approx(expected, rel=1e-10)
    # Large offsets do not lose precision in the scale.
    assert S.wasserstein_normed(x + 1e9, y + 1e9, wx, None) == pytest.approx(expected, rel=1e-5)


def test_wasserstein_normed_constant_reference() -> None:
    ref = np.full(50, 4.0)
    assert S.wasserstein_normed(ref, np.full(10, 4.0)) == 0.0
    # Scale 1e-3 * max(|c|, 1) = 4e-3; half the mass moves by 1.
    cur = np.array([4.0, 5.0])
    assert S.wasserstein_normed(ref, cur) == pytest.approx(0.5 / 4e-3)
    assert S.wasserstein_normed(np.zeros(5), [0.0, 0.001]) == pytest.approx(0.5)


# ---------------------------------------------------------------------------
# binned statistics
# ---------------------------------------------------------------------------


def test_psi_hand_computed() -> None:
    # Textbook example: four bins, proportions 0.25 each vs 0.1/0.2/0.3/0.4.
    ref = np.array([25, 25, 25, 25])
    cur = np.array([10, 20, 30, 40])
    expected = (
        (0.10 - 0.25) * math.log(0.10 / 0.25)
        + (0.20 - 0.25) * math.log(0.20 / 0.25)
        + (0.30 - 0.25) * math.log(0.30 / 0.25)
        + (0.40 - 0.25) * math.log(0.40 / 0.25)
    )
    assert expected == pytest.approx(0.228, abs=5e-4)
    assert S.psi(ref, cur) == pytest.approx(expected, rel=1e-12)


def test_psi_smooths_empty_bins_with_eps() -> None:
    ref = np.array([50, 50, 0])
    cur = np.array([40, 40, 20])
    eps = 1e-4
    expected = 2 * (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.2 - eps) * math.log(0.2 / eps)
    assert S.psi(ref, cur) == pytest.approx(expected, rel=1e-12)
    assert S.psi(ref, cur, eps=1e-3) < expected
    # A bin empty on both sides contributes nothing.
    assert S.psi([1, 1, 0], [1, 1, 0]) == 0.0
    with pytest.raises(ValueError, match="eps"):
        S.psi(ref, cur, eps=0)


def test_jensen_shannon_matches_scipy() -> None:
    rng = np.random.default_rng(31)
    for _ in range(20):
        p = rng.integers(0, 30, size=9).astype(float)
        q = rng.integers(0, 30, size=9).astype(float)
        p[rng.integers(0, 9)] = 0  # zero-count bins need no smoothing
        p[0] += 1
        q[1] += 1
        assert S.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q), rel=1e-9, abs=1e-12)
    # Disjoint supports reach the maximum sqrt(ln 2).
    assert S.jensen_shannon([1, 0], [0, 3]) == pytest.approx(math.sqrt(math.log(2)))


def test_hellinger_matches_textbook_formula() -> None:
    rng = np.random.default_rng(32)
    for _ in range(20):
        p = rng.integers(0, 30, size=7).astype(float) + np.eye(7)[0]
        q = rng.integers(0, 30, size=7).astype(float) + np.eye(7)[1]
        pp, qq = p / p.sum(), q / q.sum()
        expected = euclidean(np.sqrt(pp), np.sqrt(qq)) / math.sqrt(2)
        assert S.hellinger(p, q) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert S.hellinger([1, 0], [0, 1]) == pytest.approx(1.0)


def test_chi_square_matches_scipy_contingency() -> None:
    rng = np.random.default_rng(41)
    for _ in range(20):
        ref = rng.integers(0, 200, size=8).astype(float)
        cur = rng.integers(0, 50, size=8).astype(float)
        ref[3] = cur[3] = 0.0  # an empty column is dropped from the table
        statistic, p_value = S.chi_square(ref, cur, min_expected=0)
        table = np.vstack([ref, cur])[:, (ref + cur) > 0]
        expected = stats.chi2_contingency(table, correction=False)
        assert statistic == pytest.approx(expected.statistic, rel=1e-10)
        assert p_value == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-300)


def test_chi_square_pools_sparse_bins_by_cochrans_rule() -> None:
    ref = np.array([5000.0, 3000.0, 1500.0, 300.0, 150.0, 50.0])
    cur = np.array([40.0, 35.0, 15.0, 6.0, 1.0, 3.0])
    # Smaller expected counts (current row, n = 100): 49.9, 30.0, 15.0, 3.0, 1.5, 0.5.
    # The last three are pooled: 5.05 >= 5, so nothing else joins them.
    statistic, p_value = S.chi_square(ref, cur)
    pooled = np.array([[5000, 3000, 1500, 500], [40, 35, 15, 10]])
    expected = stats.chi2_contingency(pooled, correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-8)
    # A pool still short of the minimum takes the next smallest bin.
    ref2 = np.array([5000.0, 3000.0, 300.0, 100.0])
    cur2 = np.array([50.0, 40.0, 5.0, 5.0])
    # Expected: 59.4, 35.8, 3.6, 1.2 -> pool of the last two is 4.8 < 5, add bin 1.
    statistic2, p_value2 = S.chi_square(ref2, cur2)
    expected2 = stats.chi2_contingency(np.array([[5000, 3400], [50, 50]]), correction=False)
    assert statistic2 == pytest.approx(expected2.statistic, rel=1e-10)
    assert p_value2 == pytest.approx(expected2.pvalue, rel=1e-8)
    with pytest.raises(ValueError, match="min_expected"):
        S.chi_square(ref, cur, min_expected=-1)


def test_chi_square_keeps_its_level_with_rare_categories() -> None:
    # A long tail of 21 categories, windows of 50 rows: without pooling the
    # test rejects about 7% of no-drift windows at level 5% (6.8% with this seed).
    rng = np.random.default_rng(71)
    probs = 1 / np.arange(1, 22) ** 1.2
    probs /= probs.sum()
    trials = 3000
    rejections = sum(
        S.chi_square(rng.multinomial(20_000, probs), rng.multinomial(50, probs))[1] < 0.05
        for _ in range(trials)
    )
    # Seeded (5.2% with this seed); Binomial(3000, 0.05) stays below 0.06 with
    # probability 0.99.
    assert rejections / trials < 0.06


def test_chi_square_scales_weighted_counts_to_the_effective_size() -> None:
    ref = np.array([300.0, 500.0, 200.0])
    weighted_cur = np.array([40.0, 40.0, 20.0]) * 12.5  # 100 rows sampled at rate 0.08
    statistic, p_value = S.chi_square(ref, weighted_cur, n_current=100)
    expected = stats.chi2_contingency(np.vstack([ref, [40, 40, 20]]), correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-8)


def test_chi_square_with_a_huge_reference_is_the_goodness_of_fit_test() -> None:
    probs = np.array([0.5, 0.3, 0.2])
    cur = np.array([40.0, 35.0, 25.0])
    statistic, p_value = S.chi_square(probs * 1e9, cur)
    expected = stats.chisquare(cur, probs * cur.sum())
    assert statistic == pytest.approx(expected.statistic, rel=1e-6)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-5)


def test_count_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="same bins"):
        S.psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        S.jensen_shannon([1, -2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        S.hellinger([1, np.nan], [1, 2])
    with pytest.raises(ValueError, match="1-dimensional"):
        S.chi_square([[1, 2]], [[1, 2]])
    with pytest.raises(ValueError, match="n_current"):
        S.chi_square([1, 2], [1, 2], n_current=-1)


def test_sample_weights_are_validated() -> None:
    with pytest.raises(ValueError, match="must match"):
        S.ks_2samp([1, 2, 3], [1, 2], ref_weights=[1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        S.wasserstein([1, 2], [1, 2], cur_weights=[1, -1])
    with pytest.raises(ValueError, match="finite"):
        S.wasserstein_normed([1, 2], [1, 2], ref_weights=[1, np.inf])


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(count_pairs())
def test_binned_distances_are_symmetric_and_non_negative(
    pair: tuple[np.ndarray, np.ndarray],
) -> None:
    ref, cur = pair
    for fn in (S.psi, S.jensen_shannon, S.hellinger):
        forward, backward = fn(ref, cur), fn(cur, ref)
        assert forward >= 0.0
        assert math.isfinite(forward)
        assert forward == pytest.approx(backward, rel=1e-9, abs=1e-12)
    statistic, p_value = S.chi_square(ref, cur)
    assert statistic >= 0.0
    assert 0.0 <= p_value <= 1.0
    assert statistic == pytest.approx(S.chi_square(cur, ref)[0], rel=1e-9, abs=1e-9)


@PROPERTY_SETTINGS
@given(count_pairs(), st.floats(min_value=1e-3, max_value=1e3))
def test_binned_distances_depend_only_on_proportions(
    pair: tuple[np.ndarray, np.ndarray], factor: float
) -> None:
    ref, cur = pair
    # abs 1e-6: both distances are square roots, which turn the 1e-16 rounding
    # of proportions that should be equal into about 1e-8.
    for fn in (S.psi, S.jensen_shannon, S.hellinger):
        assert fn(ref, cur * factor) == pytest.approx(fn(ref, cur), rel=1e-7, abs=1e-6)


@PROPERTY_SETTINGS
@given(count_pairs())
def test_binned_distances_are_zero_for_identical_inputs(
    pair: tuple[np.ndarray, np.ndarray],
) -> None:
    ref, _ = pair
    for fn in (S.psi, S.jensen_shannon, S.hellinger):
        assert fn(ref, ref) == pytest.approx(0.0, abs=1e-7)
    assert S.chi_square(ref, ref)[1] == pytest.approx(1.0, abs=1e-9)


@PROPERTY_SETTINGS
@given(weighted_samples(), weighted_samples())
def test_sample_statistics_properties(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> None:
    (x, wx), (y, wy) = a, b
    d_xy, p_xy = S.ks_2samp(x, y, wx, wy)
    d_yx, p_yx = S.ks_2samp(y, x, wy, wx)
    assert 0.0 <= d_xy <= 1.0
    assert 0.0 <= p_xy <= 1.0
    assert d_xy == pytest.approx(d_yx, abs=1e-12)
    assert p_xy == pytest.approx(p_yx, abs=1e-12)
    w_xy = S.wasserstein(x, y, wx, wy)
    assert w_xy >= 0.0
    assert w_xy == pytest.approx(S.wasserstein(y, x, wy, wx), rel=1e-9, abs=1e-9)
    assert S.ks_2samp(x, x, wx, wx)[0] == 0.0
    assert S.wasserstein(x, x, wx, wx) == 0.0
    assert S.wasserstein_normed(x, x, wx, wx) == 0.0
    normed = S.wasserstein_normed(x, y, wx, wy)
    assert normed >= 0.0
    assert math.isfinite(normed)


@PROPERTY_SETTINGS
@given(weighted_samples(), weighted_samples(), st.floats(min_value=1e-3, max_value=1e3))
def test_weighted_statistics_are_invariant_to_scaling_the_weights(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], factor: float
) -> None:
    (x, wx), (y, wy) = a, b
    d, p = S.ks_2samp(x, y, wx, wy)
    d2, p2 = S.ks_2samp(x, y, wx * factor, wy / factor)
    assert d2 == pytest.approx(d, abs=1e-9)
    assert p2 == pytest.approx(p, rel=1e-6, abs=1e-9)
    assert S.wasserstein(x, y, wx * factor, wy) == pytest.approx(
        S.wasserstein(x, y, wx, wy), rel=1e-7, abs=1e-7
    )
    assert S.wasserstein_normed(x, y, wx * factor, wy * factor) == pytest.approx(
        S.wasserstein_normed(x, y, wx, wy), rel=1e-6, abs=1e-9
    )


# ---------------------------------------------------------------------------
# edge cases: defined results, never exceptions or NaN
# ---------------------------------------------------------------------------

NO_VERDICT = S.MethodResult(score=0.0, p_value=None, drifted=False, enough_data=False)


@pytest.mark.parametrize("name", sorted(S.METHODS))
def test_empty_window_gives_no_verdict(name: str) -> None:
    result = S.run_method(
        name,
        ref_counts=[10, 20, 30],
        cur_counts=[0, 0, 0],
        ref_values=[1.0, 2.0, 3.0],
        cur_values=[],
    )
    assert result == NO_VERDICT


@pytest.mark.parametrize("name", sorted(S.METHODS))
def test_all_missing_gives_no_verdict(name: str) -> None:
    result = S.run_method(
        name,
        ref_counts=[10, 20, 30],
        cur_counts=[0, 0, 0],  # missing values are not counted in any bin
        ref_values=[1.0, 2.0, 3.0],
        cur_values=[np.nan, np.nan, np.inf, -np.inf],
    )
    assert result == NO_VERDICT
    # An empty reference is no verdict as well.
    assert S.run_method(name, ref_counts=[0, 0], cur_counts=[1, 1], ref_values=[], cur_values=[1])
    assert not S.run_method(
        name, ref_counts=[0, 0], cur_counts=[1, 1], ref_values=[], cur_values=[1]
    ).enough_data


def test_raw_functions_on_empty_inputs_return_no_evidence() -> None:
    assert S.psi([0, 0], [0, 0]) == 0.0
    assert S.jensen_shannon([1, 1], [0, 0]) == 0.0
    assert S.hellinger([], []) == 0.0
    assert S.chi_square([1, 2], [0, 0]) == (0.0, 1.0)
    assert S.ks_2samp([], [1.0]) == (0.0, 1.0)
    assert S.wasserstein([1.0], [np.nan]) == 0.0
    assert S.wasserstein_normed([], []) == 0.0


@pytest.mark.parametrize("name", sorted(S.METHODS))
def test_constant_column_in_both_is_not_drift(name: str) -> None:
    result = S.run_method(
        name,
        ref_counts=[0, 500, 0],
        cur_counts=[0, 80, 0],
        ref_values=np.full(500, 7.0),
        cur_values=np.full(80, 7.0),
    )
    assert result.enough_data
    assert not result.drifted
    assert result.score == 0.0


@pytest.mark.parametrize("name", ["ks", "wasserstein_normed"])
def test_constant_reference_against_moved_values_is_drift(name: str) -> None:
    result = S.run_method(name, ref_values=np.full(500, 7.0), cur_values=np.full(80, 8.0))
    assert result.drifted
    assert math.isfinite(result.score)


@pytest.mark.parametrize("name", ["chi_square", "jensen_shannon", "psi", "hellinger"])
def test_only_unseen_categories_is_drift(name: str) -> None:
    # Last bin is "other": never seen in the reference, all the current window.
    result = S.run_method(name, ref_counts=[600, 300, 100, 0], cur_counts=[0, 0, 0, 50])
    assert result.drifted
    assert math.isfinite(result.score)
    if result.p_value is not None:
        assert result.p_value < 1e-10


def test_extreme_magnitudes_stay_finite() -> None:
    huge = np.finfo(np.float64).max / 2
    assert S.wasserstein([-huge, huge], [-huge, huge]) == 0.0
    assert math.isfinite(S.wasserstein([-huge, huge], [huge, huge]))
    assert math.isfinite(S.wasserstein_normed([-huge, huge], [huge, huge]))
    big_counts = np.array([1e308, 1e308, 0.0])
    assert S.jensen_shannon(big_counts, [1.0, 1.0, 0.0]) == 0.0
    assert S.psi(big_counts, [1.0, 2.0, 1.0]) == pytest.approx(S.psi([1, 1, 0], [1, 2, 1]))
    assert S.kolmogorov_sf(0.01, math.inf) == 0.0


def test_nan_and_inf_samples_are_ignored() -> None:
    rng = np.random.default_rng(51)
    x = rng.normal(size=100)
    y = rng.normal(0.3, size=80)
    noisy_y = np.concatenate([y, [np.nan, np.inf, -np.inf]])
    noisy_w = np.concatenate([np.ones(80), [5.0, 5.0, 5.0]])
    assert S.ks_2samp(x, noisy_y, None, noisy_w) == S.ks_2samp(x, y)
    assert S.wasserstein(x, noisy_y) == pytest.approx(stats.wasserstein_distance(x, y))
    assert S.run_method("wasserstein_normed", ref_values=x, cur_values=noisy_y) == S.run_method(
        "wasserstein_normed", ref_values=x, cur_values=y
    )


@pytest.mark.parametrize("name", sorted(S.METHODS))
def test_a_single_sample_gives_a_finite_result(name: str) -> None:
    rng = np.random.default_rng(52)
    result = S.run_method(
        name,
        ref_counts=[100, 200, 300],
        cur_counts=[0, 1, 0],
        ref_values=rng.normal(size=200),
        cur_values=[0.1],
    )
    assert result.enough_data
    assert math.isfinite(result.score)
    if S.METHODS[name].kind == "pvalue":
        # One observation is no evidence against the reference.
        assert result.p_value is not None and result.p_value > 0.05
        assert not result.drifted


# ---------------------------------------------------------------------------
# method table, default policy, run_method
# ---------------------------------------------------------------------------


def test_methods_table() -> None:
    assert set(S.METHODS) == {
        "ks",
        "wasserstein_normed",
        "chi_square",
        "jensen_shannon",
        "psi",
        "hellinger",
    }
    for name, spec in S.METHODS.items():
        assert spec.name == name
        assert spec.input in ("counts", "samples")
        assert spec.kind in ("distance", "pvalue")
    assert S.METHODS["ks"].input == "samples"
    assert S.METHODS["chi_square"].kind == "pvalue"
    assert S.METHODS["wasserstein_normed"].guard_level == 0.05


def test_default_method_policy() -> None:
    assert S.default_method("numeric", 0) == ("ks", 0.05)
    assert S.default_method("numeric", 1000) == ("ks", 0.05)
    assert S.default_method("numeric", 1000.5) == ("wasserstein_normed", 0.1)
    assert S.default_method("categorical", 999) == ("chi_square", 0.05)
    assert S.default_method("categorical", 100_000) == ("jensen_shannon", 0.1)
    with pytest.raises(ValueError, match="kind"):
        S.default_method("text", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_current"):
        S.default_method("numeric", -1)
    with pytest.raises(ValueError, match="n_current"):
        S.default_method("numeric", math.nan)


def test_resolve_method_aliases_and_errors() -> None:
    assert S.resolve_method("KS").name == "ks"
    assert S.resolve_method("wasserstein").name == "wasserstein_normed"
    assert S.resolve_method("chisquare").name == "chi_square"
    assert S.resolve_method("jensenshannon").name == "jensen_shannon"
    with pytest.raises(ValueError, match="unknown drift method 'energy'"):
        S.resolve_method("energy")


def test_run_method_verdicts_follow_the_threshold_rules() -> None:
    rng = np.random.default_rng(61)
    ref = rng.normal(size=1000)
    cur = rng.normal(0.5, size=1000)
    ks = S.run_method("ks", ref_values=ref, cur_values=cur)
    assert (ks.score, ks.p_value) == S.ks_2samp(ref, cur)
    assert ks.drifted
    assert not S.run_method("ks", threshold=1e-300, ref_values=ref, cur_values=cur).drifted

    w = S.run_method("wasserstein_normed", ref_values=ref, cur_values=cur)
    assert w.score == pytest.approx(S.wasserstein_normed(ref, cur))
    assert w.p_value == S.ks_2samp(ref, cur)[1]
    assert w.drifted
    assert not S.run_method(
        "wasserstein_normed", threshold=w.score + 1e-9, ref_values=ref, cur_values=cur
    ).drifted

    psi = S.run_method("psi", ref_counts=[50, 50], cur_counts=[40, 60])
    assert psi.p_value is None
    assert psi.score == pytest.approx(S.psi([50, 50], [40, 60]))
    assert psi.drifted is (psi.score >= 0.1)
    assert S.run_method(
        "psi", threshold=psi.score, ref_counts=[50, 50], cur_counts=[40, 60]
    ).drifted

    chi = S.run_method("chi_square", ref_counts=[500, 500], cur_counts=[400, 600])
    assert (chi.score, chi.p_value) == S.chi_square([500, 500], [400, 600])
    assert chi.drifted


def test_wasserstein_guard_ignores_a_large_distance_without_evidence() -> None:
    # Two points each: W/std is large but KS cannot reject at 5%.
    result = S.run_method("wasserstein_normed", ref_values=[0.0, 1.0], cur_values=[0.5, 1.5])
    assert result.score >= 0.1
    assert result.p_value is not None and result.p_value >= 0.05
    assert not result.drifted


def test_run_method_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="significance level"):
        S.run_method("ks", threshold=1.5, ref_values=[1], cur_values=[1])
    with pytest.raises(ValueError, match="distance"):
        S.run_method("psi", threshold=-0.1, ref_counts=[1], cur_counts=[1])
    with pytest.raises(ValueError, match="needs ref_counts"):
        S.run_method("psi", ref_values=[1.0], cur_values=[1.0])
    with pytest.raises(ValueError, match="needs ref_values"):
        S.run_method("ks", ref_counts=[1], cur_counts=[1])
    with pytest.raises(ValueError, match="n_current"):
        S.run_method("chi_square", ref_counts=[1, 2], cur_counts=[1, 2], n_current=-3)
    with pytest.raises(ValueError, match="n_reference"):
        S.run_method("ks", ref_values=[1.0], cur_values=[1.0], n_reference=math.inf)


def test_chi_square_run_method_uses_the_effective_size() -> None:
    ref = np.array([500.0, 500.0])
    weighted = np.array([40.0, 60.0]) * 50.0
    with_n = S.run_method("chi_square", ref_counts=ref, cur_counts=weighted, n_current=100)
    without_n = S.run_method("chi_square", ref_counts=ref, cur_counts=weighted)
    assert with_n.p_value == pytest.approx(S.chi_square(ref, [40, 60])[1])
    assert not with_n.drifted
    assert without_n.drifted  # the weighted total would overstate the evidence
