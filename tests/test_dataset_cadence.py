"""The aggregator's cadence for dataset-level drift entries (``dataset_cadence``),
and the whole-row reservoir's cheap paths (``RowReservoir.copy``/``update_lazy``)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from modeltrace import semconv
from modeltrace.drift.aggregator import DriftAggregator
from modeltrace.drift.dataset_cadence import DatasetCadence, validate_interval
from modeltrace.drift.joint import MultivariateSettings
from modeltrace.drift.reference import Reference
from modeltrace.drift.report import DriftReport
from modeltrace.drift.rows import RowReservoir
from modeltrace.drift.service.config import ConfigError, resolve

pytestmark = pytest.mark.xdist_group("multivariate")

SETTINGS = MultivariateSettings(methods=("domain_classifier", "mmd"), calibration_draws=20)
END_NS = 1_700_000_000_000_000_000


def otlp_request(rng: np.random.Generator, spans: int, rows: int, rho: float) -> bytes:
    """Prediction spans with ``rows`` rows each of two correlated normals."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for _ in range(spans):
        span = scope.spans.add()
        span.name = "predict m"
        span.trace_id = rng.bytes(16)
        span.span_id = rng.bytes(8)
        span.start_time_unix_nano = END_NS - 1_000_000
        span.end_time_unix_nano = END_NS
        attrs = span.attributes
        attrs.add(key=semconv.MODEL_NAME, value=AnyValue(string_value="m"))
        attrs.add(key=semconv.MODEL_VERSION, value=AnyValue(string_value="1"))
        attrs.add(key=semconv.SAMPLE_RATE, value=AnyValue(double_value=1.0))
        indices = attrs.add(key=semconv.SAMPLE_INDICES).value.array_value.values
        indices.extend([AnyValue(int_value=i) for i in range(rows)])
        x = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], rows)
        for j, name in enumerate(("a", "b")):
            kv = attrs.add(key=f"{semconv.FEATURE_PREFIX}{name}")
            kv.value.array_value.values.extend([AnyValue(double_value=v) for v in x[:, j]])
    return request.SerializeToString()


def aggregator(interval: float, seed: int) -> DriftAggregator:
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.7], [0.7, 1.0]], 2000)
    agg = DriftAggregator(":memory:", multivariate=SETTINGS, multivariate_interval_seconds=interval)
    agg.set_reference("m", "1", Reference.from_data({"a": x[:, 0], "b": x[:, 1]}))
    result = agg.ingest(otlp_request(rng, 100, 8, -0.7))
    assert result.rows == 800
    return agg


def dataset_entries(report: DriftReport) -> list:
    return [e for e in report.features if e.name == semconv.MULTIVARIATE_FEATURE]


def timed_evaluate(agg: DriftAggregator) -> tuple[DriftReport, float]:
    start = time.perf_counter()
    report = agg.evaluate("m", "1")
    return report, time.perf_counter() - start


def test_within_the_interval_dataset_entries_are_carried_over_not_recomputed() -> None:
    with aggregator(3600.0, seed=1) as agg:
        first, first_seconds = timed_evaluate(agg)
        fresh = dataset_entries(first)
        assert [e.method for e in fresh] == ["domain_classifier", "mmd"]
        assert all(e.enough_data and "carried over" not in e.detail for e in fresh)
        assert all(e.drifted for e in fresh)  # the correlation flipped
        agg.ingest(otlp_request(np.random.default_rng(2), 50, 8, -0.7))
        second, second_seconds = timed_evaluate(agg)
        carried = dataset_entries(second)
        assert [e.method for e in carried] == ["domain_classifier", "mmd"]
        for old, new in zip(fresh, carried, strict=True):
            assert "carried over from " in new.detail and new.detail.startswith(old.detail)
            assert (new.score, new.n_current, new.drifted) == (old.score, old.n_current, True)
        # per-feature drift is recomputed on the grown window
        assert first.feature("a").n_current == 800
        assert second.feature("a").n_current == 1200
        # the carried entries cost nothing next to a computation (calibration included)
        assert second_seconds < first_seconds / 2
        # the drift share still counts input features only
        assert second.n_evaluated == 2
        # the stored history has the carried entries too
        stored = agg.history("m", "1", limit=1)[0]
        assert [e.detail for e in dataset_entries(stored)] == [e.detail for e in carried]


def test_interval_zero_recomputes_every_time() -> None:
    with aggregator(0.0, seed=3) as agg:
        agg.evaluate("m", "1")
        agg.ingest(otlp_request(np.random.default_rng(4), 50, 8, -0.7))
        second = agg.evaluate("m", "1")
        entries = dataset_entries(second)
        assert len(entries) == 2
        assert all("carried over" not in e.detail for e in entries)
        assert all(e.n_current == 1200 for e in entries)


def test_latest_reports_carry_over_and_a_new_reference_recomputes() -> None:
    with aggregator(3600.0, seed=5) as agg:
        agg.latest_reports()
        agg.ingest(otlp_request(np.random.default_rng(6), 10, 8, -0.7))
        report = agg.latest_reports()[("m", "1")]
        assert all("carried over" in e.detail for e in dataset_entries(report))
        rng = np.random.default_rng(7)
        x = rng.normal(size=(2000, 2))
        agg.set_reference("m", "1", Reference.from_data({"a": x[:, 0], "b": x[:, 1]}))
        agg.ingest(otlp_request(rng, 100, 8, 0.0))
        report = agg.evaluate("m", "1")
        assert all("carried over" not in e.detail for e in dataset_entries(report))


def test_without_methods_there_are_no_dataset_entries() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2000, 2))
    off = MultivariateSettings(methods=())
    with DriftAggregator(":memory:", multivariate=off) as agg:
        agg.set_reference("m", "1", Reference.from_data({"a": x[:, 0], "b": x[:, 1]}))
        agg.ingest(otlp_request(rng, 50, 8, 0.0))
        report = agg.evaluate("m", "1")
        assert [e.name for e in report.features] == ["a", "b"]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "30", True])
def test_interval_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="multivariate_interval_seconds"):
        validate_interval(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multivariate_interval_seconds"):
        DatasetCadence(bad)  # type: ignore[arg-type]


def reservoir_state(reservoir: RowReservoir) -> tuple:
    state = reservoir.to_dict()
    return tuple(sorted((k, repr(v)) for k, v in state.items()))


def test_row_reservoir_copy_is_the_same_state_and_random_stream() -> None:
    rng = np.random.default_rng(9)
    reservoir = RowReservoir(3, size=50, seed=4)
    reservoir.update(rng.normal(size=(200, 3)), rng.uniform(0.5, 2.0, 200), list("x" * 200))
    clone = reservoir.copy()
    assert reservoir_state(clone) == reservoir_state(RowReservoir.from_dict(reservoir.to_dict()))
    rows, weights = rng.normal(size=(100, 3)), rng.uniform(0.5, 2.0, 100)
    clone.update(rows, weights)
    assert reservoir_state(clone) != reservoir_state(reservoir)  # independent
    reservoir.update(rows, weights)
    assert reservoir_state(clone) == reservoir_state(reservoir)


def test_update_lazy_builds_only_entering_rows_and_matches_update() -> None:
    rng = np.random.default_rng(10)
    eager, lazy = RowReservoir(2, size=30, seed=1), RowReservoir(2, size=30, seed=1)
    asked: list[int] = []
    for _ in range(20):
        rows, weights = rng.normal(size=(64, 2)), rng.uniform(0.5, 2.0, 64)
        ids = [f"t{i}" for i in range(64)]
        eager.update(rows, weights, ids)

        def rows_of(picked: np.ndarray | None, rows: np.ndarray = rows) -> np.ndarray:
            asked.append(rows.shape[0] if picked is None else picked.size)
            return rows if picked is None else rows[picked]

        lazy.update_lazy(rows_of, weights, ids)
        assert reservoir_state(lazy) == reservoir_state(eager)
    assert asked[0] == 64 and min(asked[1:]) < 64  # a full reservoir asks for fewer rows
    with pytest.raises(ValueError, match="weights must have shape"):
        eager.update(np.zeros((3, 2)), np.ones(2))


def test_serve_multivariate_interval_setting() -> None:
    assert resolve({}, environ={}).multivariate_interval == 30
    assert resolve({"multivariate_interval": "0"}, environ={}).multivariate_interval == 0
    env = {"MODELTRACE_SERVE_MULTIVARIATE_INTERVAL": "5m"}
    assert resolve({}, environ=env).multivariate_interval == 300
    with pytest.raises(ConfigError, match="multivariate"):
        resolve({"multivariate_interval": "-1s"}, environ={})
