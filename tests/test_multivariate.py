"""Multivariate and embedding drift: the numpy tests against independent
computations, known-truth scenarios through the window and the report, the
whole-row reservoir, the reference's row samples and the SDK's embedding capture."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

import modeltrace
from modeltrace import semconv
from modeltrace.drift import multivariate as mv
from modeltrace.drift.aggregator import DriftAggregator
from modeltrace.drift.evaluate import evaluate_window
from modeltrace.drift.extract import extract_spans
from modeltrace.drift.joint import CalibrationCache, MultivariateSettings, evaluate_dataset
from modeltrace.drift.reference import Reference
from modeltrace.drift.report import DriftReport
from modeltrace.drift.rows import RowReservoir
from modeltrace.drift.windows import ModelWindow
from modeltrace.embedding import EmbeddingCapture, Projection
from sdk_harness import Telemetry

pytestmark = pytest.mark.xdist_group("multivariate")
# Fewer calibration draws than the default keep the tests fast on a busy host.
FAST = MultivariateSettings(calibration_draws=30)


def correlated(rng: np.random.Generator, n: int, rho: float) -> dict[str, np.ndarray]:
    """Two standard normals with correlation ``rho`` and a categorical column."""
    x = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], n)
    return {"a": x[:, 0], "b": x[:, 1], "plan": rng.choice(["basic", "pro", "team"], n)}


def clusters(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """Embeddings from two clusters; ``shift`` moves the second one."""
    centers = np.zeros((2, d))
    centers[0, 0], centers[1, 1] = 3.0, 3.0
    centers[1, 2] += shift
    labels = rng.integers(0, 2, n)
    return centers[labels] + rng.standard_normal((n, d))


def window_report(
    reference: Reference,
    columns: dict[str, np.ndarray],
    *,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
    settings: MultivariateSettings | None = None,
) -> DriftReport:
    n = len(next(iter(columns.values())))
    window = ModelWindow(reference, seed=seed)
    rows = None
    if embeddings is not None:
        assert reference.embedding is not None
        projection = Projection.parse(reference.embedding.projection)
        projected, norms = projection.project(embeddings)
        rows = np.hstack([projected, norms[:, None]])
    window.update(columns, np.ones(n), [f"trace-{i}" for i in range(n)], 1000.0, rows)
    return evaluate_window(
        reference,
        window.current(),
        model="m",
        version="1",
        joint=window.joint_rows(),
        embedded=window.embedding_rows(),
        multivariate=settings if settings is not None else FAST,
    )


# --- the numpy tests against independent computations ---------------------------


def test_classifier_auc_matches_sklearn_on_the_same_out_of_fold_scores() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.standard_normal((300, 3)), rng.standard_normal((200, 3))
    cur[:, 0] += 0.8
    weights = rng.choice([1.0, 4.0], 200)
    result = mv.domain_classifier(ref, cur, None, weights, folds=5, seed=1)
    assert result is not None and result.complete and result.folds == 5
    y = np.r_[np.zeros(300), np.ones(200)]
    scores = np.r_[result.reference_scores, result.current_scores]
    assert np.all(np.isfinite(scores))  # every row scored out of fold
    expected = roc_auc_score(y, scores, sample_weight=np.r_[np.ones(300), weights])
    assert result.auc == pytest.approx(expected, abs=1e-12)
    assert result.auc > 0.6


def test_weighted_auc_counts_ties_as_half() -> None:
    neg, pos = np.array([0.0, 1.0, 1.0, 2.0]), np.array([1.0, 1.0, 3.0])
    wn, wp = np.array([1.0, 2.0, 1.0, 3.0]), np.array([2.0, 1.0, 1.0])
    y = np.r_[np.zeros(4), np.ones(3)]
    expected = roc_auc_score(y, np.r_[neg, pos], sample_weight=np.r_[wn, wp])
    assert mv.weighted_auc(neg, pos, wn, wp) == pytest.approx(expected, abs=1e-12)


def test_mmd_matches_the_direct_quadratic_formula() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) * 1.5
    wx, wy = rng.uniform(0.5, 2.0, 40), rng.uniform(0.5, 2.0, 30)
    result = mv.mmd_test(x, y, wx, wy, permutations=0, max_rows=1000)
    pooled = np.vstack([x, y])
    distances = cdist(pooled, pooled, "sqeuclidean")
    sigma2 = np.median(distances[np.triu_indices(70, k=1)])  # median heuristic
    assert result.bandwidth == pytest.approx(2 * sigma2)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma2))

    px, py = wx / wx.sum(), wy / wy.sum()
    direct = 0.0
    for i in range(40):
        for j in range(40):
            direct += px[i] * px[j] * k(x[i], x[j])
    for i in range(30):
        for j in range(30):
            direct += py[i] * py[j] * k(y[i], y[j])
    for i in range(40):
        for j in range(30):
            direct -= 2 * px[i] * py[j] * k(x[i], y[j])
    assert result.mmd2 == pytest.approx(direct, rel=1e-9)
    assert result.p_value is None and result.permutations == 0


def test_mmd_permutation_p_value_against_a_plain_loop() -> None:
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((25, 2)), rng.standard_normal((20, 2)) + 0.4
    result = mv.mmd_test(x, y, permutations=300, seed=2)
    assert result.complete and result.permutations == 300
    # Independent: permute with numpy, recompute the statistic with no weights.
    pooled = np.vstack([x, y])
    kernel = np.exp(-cdist(pooled, pooled, "sqeuclidean") / result.bandwidth)

    def stat(idx_x: np.ndarray, idx_y: np.ndarray) -> float:
        return float(
            kernel[np.ix_(idx_x, idx_x)].mean()
            + kernel[np.ix_(idx_y, idx_y)].mean()
            - 2 * kernel[np.ix_(idx_x, idx_y)].mean()
        )

    observed = stat(np.arange(25), np.arange(25, 45))
    assert result.mmd2 == pytest.approx(observed, rel=1e-9)
    perm_rng = np.random.default_rng(99)
    null = [stat(p[:25], p[25:]) for p in (perm_rng.permutation(45) for _ in range(2000))]
    expected = (1 + sum(v >= observed for v in null)) / 2001
    assert result.p_value == pytest.approx(expected, abs=0.05)


def test_mmd_stops_at_the_deadline_and_says_so() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((100, 2)), rng.standard_normal((100, 2))
    result = mv.mmd_test(x, y, permutations=10_000, deadline=0.0)
    # One chunk of permutations always runs; then the deadline stops them.
    assert 0 < result.permutations < 10_000 and not result.complete
    assert result.p_value is not None and result.p_value >= 1 / (1 + result.permutations)


def test_pca_errors_match_sklearn_reconstruction() -> None:
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((500, 5)) @ rng.standard_normal((5, 5))
    cur = rng.standard_normal((50, 5))
    model = mv.PCAModel.fit(ref, variance=0.65)
    z_ref = (ref - ref.mean(axis=0)) / ref.std(axis=0)
    pca = PCA(n_components=0.65, svd_solver="full").fit(z_ref)
    assert model.n_components == pca.n_components_
    z_cur = (cur - ref.mean(axis=0)) / ref.std(axis=0)
    reconstructed = pca.inverse_transform(pca.transform(z_cur))
    expected = np.linalg.norm(z_cur - reconstructed, axis=1)
    np.testing.assert_allclose(model.errors(cur), expected, rtol=1e-8, atol=1e-10)


def test_encoder_imputes_reference_medians_and_one_hot_encodes() -> None:
    ref = np.array([[1.0, 0.0], [2.0, 1.0], [np.nan, 1.0], [10.0, np.nan]])
    encoder = mv.RowEncoder.fit(ref, [None, 3])
    out = encoder.transform(np.array([[np.nan, np.nan], [2.0, 2.0]]))
    filled = np.array([1.0, 2.0, 2.0, 10.0])  # NaN -> median of 1, 2, 10
    assert out.shape == (2, 4)
    assert out[0, 0] == pytest.approx((2.0 - filled.mean()) / filled.std())
    np.testing.assert_array_equal(out[0, 1:], [0.0, 1.0, 0.0])  # missing -> most frequent
    np.testing.assert_array_equal(out[1, 1:], [0.0, 0.0, 1.0])


# --- known truth ---------------------------------------------------------------------


def test_correlation_flip_fires_multivariate_while_univariate_stays_quiet() -> None:
    rng = np.random.default_rng(11)
    reference = Reference.from_data(correlated(rng, 5000, 0.8))
    settings = MultivariateSettings(time_budget=30.0, calibration_draws=30)  # busy hosts too
    report = window_report(reference, correlated(rng, 1500, -0.8), settings=settings)
    for name in ("a", "b", "plan"):
        assert not report.feature(name).drifted, report.feature(name)
    assert report.drift_share == 0.0 and report.drifted_features == []
    entries = {e.method: e for e in report.dataset_entries}
    assert set(entries) == set(mv.METHODS)
    for entry in entries.values():
        assert entry.name == semconv.MULTIVARIATE_FEATURE and entry.kind == "multivariate"
        assert entry.drifted, entry
        assert entry.exemplar_trace_ids and all(
            t.startswith("trace-") for t in entry.exemplar_trace_ids
        )
    assert entries["domain_classifier"].score > 0.8
    assert entries["mmd"].p_value is not None and entries["mmd"].p_value < 0.01


def test_classifier_exemplars_are_the_most_current_like_rows() -> None:
    rng = np.random.default_rng(4)
    reference = Reference.from_data(correlated(rng, 3000, 0.0))
    current = correlated(rng, 600, 0.0)
    current["a"][:60] = 6.0  # sixty rows far from anything in the reference
    report = window_report(reference, current)
    entry = report.feature(semconv.MULTIVARIATE_FEATURE, "domain_classifier")
    outliers = {f"trace-{i}" for i in range(60)}
    assert entry.exemplar_trace_ids and set(entry.exemplar_trace_ids) <= outliers


def test_resamples_of_the_reference_rarely_fire() -> None:
    rng = np.random.default_rng(21)
    reference = Reference.from_data(correlated(rng, 5000, 0.5))
    alarms = 0
    trials = 8
    for seed in range(trials):
        sample = correlated(np.random.default_rng(100 + seed), 800, 0.5)
        report = window_report(reference, sample, seed=seed)
        alarms += sum(e.drifted for e in report.dataset_entries)
        assert all(e.enough_data for e in report.dataset_entries)
    # 3 methods x 8 windows at the 99% calibrated band: one alarm is already unlucky.
    assert alarms <= 1


def test_embedding_cluster_shift_fires_and_resample_stays_quiet() -> None:
    rng = np.random.default_rng(6)
    d = 64
    base = {"x": rng.standard_normal(4000)}
    reference = Reference.from_data(base, embeddings=clusters(rng, 4000, d), embedding_seed=3)
    assert reference.embedding is not None and reference.rows is None  # one feature: no joint
    assert reference.embedding.projection == f"gaussian:seed=3:k=32:d={d}"
    x = {"x": rng.standard_normal(1000)}
    moved = window_report(reference, x, embeddings=clusters(rng, 1000, d, shift=2.0))
    quiet = window_report(reference, x, embeddings=clusters(rng, 1000, d))
    moved_entries = [e for e in moved.dataset_entries if e.name == semconv.EMBEDDING_FEATURE]
    quiet_entries = [e for e in quiet.dataset_entries if e.name == semconv.EMBEDDING_FEATURE]
    assert {e.method for e in moved_entries} == set(mv.METHODS)
    assert moved.feature(semconv.EMBEDDING_FEATURE, "domain_classifier").drifted
    assert moved.feature(semconv.EMBEDDING_FEATURE, "mmd").drifted
    assert not any(e.drifted for e in quiet_entries), quiet_entries
    assert not moved.feature("x").drifted and moved.drift_share == 0.0
    assert "mean norm ratio" in moved_entries[0].detail


def test_tiny_samples_give_no_verdict() -> None:
    rng = np.random.default_rng(0)
    reference = Reference.from_data(correlated(rng, 2000, 0.8))
    report = window_report(reference, correlated(rng, 12, -0.8))
    for entry in report.dataset_entries:
        assert not entry.enough_data and not entry.drifted
        assert "not enough data" in entry.detail


def test_fixed_thresholds_and_the_time_budget_are_reported() -> None:
    rng = np.random.default_rng(9)
    reference = Reference.from_data(correlated(rng, 3000, 0.8))
    settings = MultivariateSettings(thresholds="fixed", permutations=50)
    report = window_report(reference, correlated(rng, 500, -0.8), settings=settings)
    classifier = report.feature(semconv.MULTIVARIATE_FEATURE, "domain_classifier")
    assert classifier.threshold == 0.55 and classifier.drifted
    mmd = report.feature(semconv.MULTIVARIATE_FEATURE, "mmd")
    assert mmd.threshold == 0.05 and mmd.p_value is not None and mmd.p_value < 0.05
    assert "50/50 permutations" in mmd.detail
    hurried = MultivariateSettings(thresholds="fixed", permutations=10**6, time_budget=0.05)
    report = window_report(reference, correlated(rng, 500, -0.8), settings=hurried)
    assert "time budget ran out" in report.feature(semconv.MULTIVARIATE_FEATURE, "mmd").detail


def test_calibration_is_cached_per_reference_and_size_bucket() -> None:
    rng = np.random.default_rng(12)
    reference = Reference.from_data(correlated(rng, 2000, 0.3))
    cache = CalibrationCache()
    settings = MultivariateSettings(calibration_draws=12)
    window = ModelWindow(reference, seed=0)
    data = correlated(rng, 400, 0.3)
    window.update(data, np.ones(400), None, 1000.0)
    first = evaluate_dataset(reference, window.joint_rows(), None, settings, cache)
    assert cache.misses == 3  # one per method
    second = evaluate_dataset(reference, window.joint_rows(), None, settings, cache)
    assert cache.misses == 3
    assert [e.threshold for e in first] == [e.threshold for e in second]
    assert all("quantile of" in e.detail for e in first)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown multivariate methods"):
        MultivariateSettings(methods=("knn",))
    with pytest.raises(ValueError, match="thresholds"):
        MultivariateSettings(thresholds="adaptive")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time_budget"):
        MultivariateSettings(time_budget=0)


# --- the row reservoir ---------------------------------------------------------------


def test_row_reservoir_merge_equals_one_reservoir_fed_everything() -> None:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3000, 3))
    weights = rng.choice([1.0, 2.0, 5.0], 3000)
    ids = [f"t{i}" for i in range(3000)]
    single = RowReservoir(3, 200, seed=1)
    single.update(rows, weights, ids)
    # The same priorities: split the stream after drawing them with the same generator.
    left, right = RowReservoir(3, 200, seed=1), RowReservoir(3, 200, seed=1)
    left.update(rows[:1000], weights[:1000], ids[:1000])
    right._rng = left._rng  # continue the same random stream
    right.update(rows[1000:], weights[1000:], ids[1000:])
    merged = left.merge(right)
    np.testing.assert_array_equal(merged.rows(), single.rows())
    np.testing.assert_array_equal(merged.weights(), single.weights())
    assert merged.trace_ids() == single.trace_ids()
    assert len(merged) == 200 and merged.seen == 3000
    # Estimated weights are unbiased for the total weight.
    assert merged.weights().sum() == pytest.approx(weights.sum(), rel=0.15)
    restored = RowReservoir.from_dict(merged.to_dict())
    np.testing.assert_array_equal(restored.rows(), merged.rows())
    assert restored.trace_ids() == merged.trace_ids()


def test_row_reservoir_rejects_bad_input() -> None:
    reservoir = RowReservoir(2, 10)
    with pytest.raises(ValueError, match="shape"):
        reservoir.update(np.ones((3, 3)), np.ones(3))
    with pytest.raises(ValueError, match="weights"):
        reservoir.update(np.ones((3, 2)), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="width"):
        reservoir.merge(RowReservoir(3, 10))


def test_window_rows_survive_state_round_trip_and_merge() -> None:
    rng = np.random.default_rng(1)
    reference = Reference.from_data(correlated(rng, 1000, 0.5), embeddings=rng.random((1000, 8)))
    a, b = ModelWindow(reference, seed=1), ModelWindow(reference, seed=2)
    emb = np.hstack([rng.random((50, 32)), rng.random((50, 1))])
    emb[::2] = np.nan  # half the rows have no embedding
    a.update(correlated(rng, 50, 0.5), np.ones(50), None, 1000.0, emb)
    b.update(correlated(rng, 70, 0.5), np.full(70, 2.0), None, 1000.0)
    restored = ModelWindow.from_state(a.to_bytes(), reference)
    np.testing.assert_array_equal(restored.joint_rows().rows(), a.joint_rows().rows())
    assert len(restored.embedding_rows()) == 25
    restored.merge(b)
    assert len(restored.joint_rows()) == 120
    assert restored.joint_rows().weights().sum() == pytest.approx(50 + 140)


def test_reference_row_samples_round_trip_and_encode_categories() -> None:
    rng = np.random.default_rng(3)
    data = correlated(rng, 3000, 0.2)
    data["a"][:5] = np.nan
    reference = Reference.from_data(data, row_sample_size=500, embeddings=rng.random((3000, 4)))
    assert reference.rows is not None and reference.rows.rows.shape == (500, 3)
    codes = reference.rows.rows[:, 2]
    assert set(np.unique(codes)) <= {0.0, 1.0, 2.0}  # top categories of "plan"
    loaded = Reference.from_json(reference.to_json())
    assert loaded.rows is not None and loaded.embedding is not None
    np.testing.assert_array_equal(loaded.rows.rows, reference.rows.rows)
    np.testing.assert_array_equal(loaded.embedding.rows, reference.embedding.rows)
    assert loaded.embedding.projection == reference.embedding.projection
    assert Reference.from_data(data, row_sample_size=0).rows is None


# --- SDK capture -> extraction -> aggregator -------------------------------------------


def test_projection_is_seeded_and_keeps_distances_roughly() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 300))
    projection = Projection(seed=7, k=32, d=300)
    first, norms = projection.project(vectors)
    again, _ = Projection.parse(projection.spec).project(vectors)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(norms, np.linalg.norm(vectors, axis=1))
    ratio = np.linalg.norm(first, axis=1) / norms
    assert 0.6 < ratio.mean() < 1.4  # Johnson-Lindenstrauss: E|Rx|^2 = |x|^2
    with pytest.raises(ValueError, match="dimensions"):
        projection.project(rng.standard_normal((2, 10)))
    with pytest.raises(ValueError, match="spec"):
        Projection.parse("gaussian:k=3")


def test_monitor_records_projected_embeddings_that_reach_the_report() -> None:
    rng = np.random.default_rng(5)
    d = 12
    weights = np.random.default_rng(0).standard_normal((d, 24))

    def encoder(x: np.ndarray) -> np.ndarray:  # the model's "penultimate layer"
        return np.tanh(np.asarray(x) @ weights)

    reference_inputs = clusters(rng, 2000, d)
    reference = Reference.from_data(
        reference_inputs, embeddings=encoder(reference_inputs), embedding_dim=8, embedding_seed=4
    )
    agg = DriftAggregator(":memory:")
    agg.set_reference("enc", "1", reference)
    tel = Telemetry(sample_rate=1.0, max_rows=8)
    try:

        @modeltrace.monitor(
            model="enc", version="1", embedding=EmbeddingCapture(encoder, dim=8, seed=4)
        )
        def predict(x: np.ndarray) -> np.ndarray:
            return np.zeros(np.atleast_2d(x).shape[0])

        row = clusters(rng, 1, d, shift=3.0)[0]
        predict(row)  # one row: a 1-D input
        attributes = tel.span().attributes or {}
        spec = str(attributes[semconv.EMBEDDING_PROJECTION])
        assert spec == "gaussian:seed=4:k=8:d=24"
        expected, norm = Projection.parse(spec).project(encoder(row))
        np.testing.assert_allclose(attributes[semconv.EMBEDDING_VECTOR], expected.ravel())
        np.testing.assert_allclose(attributes[semconv.EMBEDDING_NORM], norm)
        for _ in range(60):
            predict(clusters(rng, 8, d, shift=3.0))
        spans = tel.spans()
        rows = extract_spans(spans).batches[("enc", "1")]
        assert rows.embeddings[spec].vectors.shape == (1 + 60 * 8, 8)
        agg.ingest(spans)
        report = agg.evaluate("enc", "1")
    finally:
        tel.close()
        agg.close()
    entry = report.feature(semconv.EMBEDDING_FEATURE, "domain_classifier")
    assert entry.n_current == 481 and entry.drifted
    assert set(entry.exemplar_trace_ids) <= {f"{s.context.trace_id:032x}" for s in spans}


def test_monitor_field_name_embedding_and_broken_sources_never_break_the_call() -> None:
    tel = Telemetry(sample_rate=1.0)
    try:

        @modeltrace.monitor(model="f", version="1", embedding="vec")
        def from_output(rows: list[dict[str, float]]) -> dict[str, Any]:
            return {"prediction": [1] * len(rows), "vec": np.ones((len(rows), 5))}

        @modeltrace.monitor(model="g", version="1", embedding=lambda x: 1 / 0)
        def broken(rows: list[dict[str, float]]) -> list[int]:
            return [2] * len(rows)

        assert from_output([{"a": 1.0}, {"a": 2.0}])["prediction"] == [1, 1]
        assert broken([{"a": 1.0}]) == [2]
        by_model = {s.attributes[semconv.MODEL_NAME]: s for s in tel.spans()}  # type: ignore[index]
        attrs = by_model["f"].attributes or {}
        assert attrs[semconv.EMBEDDING_PROJECTION] == "gaussian:seed=0:k=32:d=5"
        assert len(attrs[semconv.EMBEDDING_VECTOR]) == 2 * 32
        assert semconv.EMBEDDING_VECTOR not in (by_model["g"].attributes or {})
    finally:
        tel.close()
    with pytest.raises(TypeError, match="embedding"):
        modeltrace.monitor(model="h", embedding=42)  # type: ignore[arg-type]


class _Encoder:
    """A model whose embedding is its own hidden layer (module level, so it pickles)."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights

    def hidden(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(np.atleast_2d(x) @ self.weights)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.hidden(x).sum(axis=1)


def test_wrap_records_embeddings_like_monitor_and_pickles_with_a_field_name() -> None:
    import pickle

    rng = np.random.default_rng(8)
    model = _Encoder(np.random.default_rng(1).standard_normal((6, 10)))
    tel = Telemetry(sample_rate=1.0, max_rows=8)
    try:
        wrapped = modeltrace.wrap(
            model, model="enc", version="2", embedding=EmbeddingCapture(model.hidden, dim=4, seed=3)
        )
        batch = rng.standard_normal((5, 6))
        np.testing.assert_array_equal(wrapped.predict(batch), model.predict(batch))
        attributes = tel.span().attributes or {}
        spec = str(attributes[semconv.EMBEDDING_PROJECTION])
        assert spec == "gaussian:seed=3:k=4:d=10"
        rows = [int(i) for i in attributes[semconv.SAMPLE_INDICES]]  # type: ignore[union-attr]
        expected, norms = Projection.parse(spec).project(model.hidden(batch)[rows])
        np.testing.assert_allclose(attributes[semconv.EMBEDDING_VECTOR], expected.ravel())
        np.testing.assert_allclose(attributes[semconv.EMBEDDING_NORM], norms)

        by_name = modeltrace.wrap(model, model="enc", version="3", embedding="vec")
        clone = pickle.loads(pickle.dumps(by_name))
        assert clone._self_wrap_kwargs["embedding"] == "vec"
    finally:
        tel.close()
    with pytest.raises(TypeError, match="embedding"):
        modeltrace.wrap(model, embedding=42)  # type: ignore[arg-type]
