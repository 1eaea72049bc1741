"""SklearnInstrumentor: the contrib instrumentor contract, one span per call, naming, zero code."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import modeltrace
from integration_support import EXAMPLES, PYTHON, Telemetry, subprocess_env
from modeltrace import semconv
from modeltrace.integrations.sklearn import SklearnInstrumentor
from otlp_receiver import OtlpReceiver


class ThresholdModel(ClassifierMixin, BaseEstimator):
    """An estimator on the scikit-learn API from "another library" (this module)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> ThresholdModel:
        self.classes_ = np.unique(y)
        self.threshold_ = float(np.median(x[:, 0]))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x)[:, 0] > self.threshold_).astype(int)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    return x, (x[:, 0] + 0.1 * x[:, 1] > 0).astype(int)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    tel = Telemetry().install(sample_rate=1.0)
    try:
        yield tel
    finally:
        tel.close()


@pytest.fixture
def instrumented(telemetry: Telemetry) -> Iterator[SklearnInstrumentor]:
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(extra_modules=[__name__])
    try:
        yield instrumentor
    finally:
        instrumentor.uninstrument()


def _predict_spans(telemetry: Telemetry) -> list:
    return [s for s in telemetry.spans() if s.name.startswith(semconv.PREDICT_SPAN_PREFIX)]


def test_contrib_instrumentor_contract() -> None:
    instrumentor = SklearnInstrumentor()
    assert isinstance(instrumentor, BaseInstrumentor)
    assert SklearnInstrumentor() is instrumentor  # BaseInstrumentor singleton
    assert tuple(instrumentor.instrumentation_dependencies()) == ("scikit-learn >= 1.0",)
    assert instrumentor._check_dependency_conflicts() is None
    originals = {
        (LogisticRegression, "predict_proba"): LogisticRegression.__dict__["predict_proba"],
        (Pipeline, "predict"): Pipeline.__dict__["predict"],
        (IsolationForest, "score_samples"): IsolationForest.__dict__["score_samples"],
    }
    assert not instrumentor.is_instrumented_by_opentelemetry
    instrumentor.instrument()
    try:
        assert instrumentor.is_instrumented_by_opentelemetry
        patched = dict(instrumentor.patched())
        for (cls, name), original in originals.items():
            assert cls.__dict__[name] is not original
            assert patched[(cls, name)] is original
        instrumentor.instrument()  # second call: a no-op, nothing patched twice
        assert instrumentor.patched() == patched
        assert Pipeline.__dict__["predict"].__wrapped__ is originals[(Pipeline, "predict")]
    finally:
        instrumentor.uninstrument()
    assert not instrumentor.is_instrumented_by_opentelemetry
    for (cls, name), original in originals.items():
        assert cls.__dict__[name] is original  # identity restored
    for (cls, name), original in patched.items():
        assert cls.__dict__[name] is original
    instrumentor.uninstrument()  # second call: a no-op
    assert instrumentor.patched() == {}


def test_pipeline_predict_is_one_span_named_after_final_step(
    telemetry: Telemetry, instrumented: SklearnInstrumentor, data: tuple
) -> None:
    x, y = data
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    assert _predict_spans(telemetry) == []  # fit makes no prediction spans
    expected = LogisticRegression().fit(StandardScaler().fit_transform(x), y)
    expected_result = expected.predict(StandardScaler().fit(x).transform(x[:4]))
    telemetry.exporter.clear()
    result = pipeline.predict(x[:4])
    np.testing.assert_array_equal(result, expected_result)

    (span,) = _predict_spans(telemetry)
    attrs = span.attributes
    assert span.name == "predict LogisticRegression"
    assert attrs[semconv.MODEL_NAME] == "LogisticRegression"
    assert attrs[semconv.MODEL_VERSION] == "unknown"
    assert attrs[semconv.MODEL_FRAMEWORK] == "sklearn"
    assert attrs[semconv.MODEL_OPERATION] == "predict"
    assert attrs[semconv.BATCH_SIZE] == 4
    assert tuple(attrs[semconv.PREDICTION_VALUE]) == tuple(int(v) for v in result)
    np.testing.assert_allclose(attrs["ml.feature.f0"], x[:4, 0])

    proba = pipeline.predict_proba(x[:2])
    proba_span = _predict_spans(telemetry)[-1]
    assert proba_span.attributes[semconv.MODEL_OPERATION] == "predict_proba"
    np.testing.assert_allclose(proba_span.attributes[semconv.PREDICTION_SCORE], proba.max(axis=1))
    assert len(_predict_spans(telemetry)) == 2


def test_available_if_semantics_unchanged(instrumented: SklearnInstrumentor, data: tuple) -> None:
    x, y = data
    regression = make_pipeline(StandardScaler(), LinearRegression()).fit(x, y.astype(float))
    assert not hasattr(regression, "predict_proba")
    assert hasattr(make_pipeline(LogisticRegression()).fit(x, y), "predict_proba")


def test_score_and_nested_monitor_calls_make_no_extra_spans(
    telemetry: Telemetry, instrumented: SklearnInstrumentor, data: tuple
) -> None:
    x, y = data
    model = LogisticRegression().fit(x, y)
    model.score(x, y)  # evaluation calls predict internally: not a production prediction
    assert _predict_spans(telemetry) == []

    @modeltrace.monitor(model="churn", version="1")
    def predict(rows: np.ndarray) -> np.ndarray:
        return model.predict(rows)

    predict(x[:3])
    (span,) = _predict_spans(telemetry)
    assert span.attributes[semconv.MODEL_NAME] == "churn"


def test_names_and_versions_from_attributes_and_environment(
    telemetry: Telemetry,
    instrumented: SklearnInstrumentor,
    data: tuple,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y = data
    model = LogisticRegression().fit(x, y)
    monkeypatch.setenv("MODELTRACE_SKLEARN_MODEL_NAME", "from-env")
    monkeypatch.setenv("MODELTRACE_SKLEARN_MODEL_VERSION", "v-env")
    model.decision_function(x[:1])
    model.modeltrace_name = "churn"
    model.modeltrace_version = "42"
    model.predict_log_proba(x[:1])
    first, second = _predict_spans(telemetry)
    assert (first.attributes[semconv.MODEL_NAME], first.attributes[semconv.MODEL_VERSION]) == (
        "from-env",
        "v-env",
    )
    assert first.attributes[semconv.MODEL_OPERATION] == "decision_function"
    assert second.name == "predict churn"
    assert second.attributes[semconv.MODEL_VERSION] == "42"
    assert second.attributes[semconv.MODEL_OPERATION] == "predict_log_proba"


def test_estimator_on_sklearn_api_from_extra_module(
    telemetry: Telemetry, instrumented: SklearnInstrumentor, data: tuple
) -> None:
    x, y = data
    model = ThresholdModel().fit(x, y)
    assert model.predict(x[:5]).tolist() == (x[:5, 0] > np.median(x[:, 0])).astype(int).tolist()
    (span,) = _predict_spans(telemetry)
    assert span.name == "predict ThresholdModel"


def test_uninstrumented_estimators_emit_nothing(telemetry: Telemetry, data: tuple) -> None:
    x, y = data
    LogisticRegression().fit(x, y).predict(x[:2])
    assert _predict_spans(telemetry) == []


def test_invalid_options_patch_nothing() -> None:
    instrumentor = SklearnInstrumentor()
    original = Pipeline.__dict__["predict"]
    with pytest.raises(TypeError, match="operations"):
        instrumentor.instrument(operations="predict")
    with pytest.raises(ModuleNotFoundError):
        instrumentor.instrument(extra_modules=["no_such_module_for_modeltrace"])
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert Pipeline.__dict__["predict"] is original


@pytest.mark.e2e
def test_zero_code_opentelemetry_instrument_subprocess() -> None:
    with OtlpReceiver() as receiver:
        env = subprocess_env(
            receiver.endpoint,
            OTEL_SERVICE_NAME="churn-batch",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="none",
            MODELTRACE_SKLEARN_MODEL_VERSION="2024-06",
            MODELTRACE_SAMPLE_RATE="1",
        )
        done = subprocess.run(
            ["opentelemetry-instrument", PYTHON, str(EXAMPLES / "zero_code" / "app.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "churn" in done.stdout
        spans = receiver.wait_for_spans(lambda s: len(s) >= 4)
        metric_names = receiver.metric_names()
    predict_spans = [s for s in spans if s.name.startswith("predict ")]
    pipeline_spans = [s for s in predict_spans if s.name == "predict churn-pipeline"]
    assert len(pipeline_spans) == 3  # one per call, not one per step
    assert [s.attributes[semconv.MODEL_OPERATION] for s in pipeline_spans] == [
        "predict",
        "predict",
        "predict_proba",
    ]
    assert [s.attributes[semconv.BATCH_SIZE] for s in pipeline_spans] == [1, 5, 3]
    for span in predict_spans:
        assert span.kind == "INTERNAL"
        assert span.attributes[semconv.MODEL_FRAMEWORK] == "sklearn"
        assert span.attributes[semconv.MODEL_VERSION] == "2024-06"
        assert span.resource["service.name"] == "churn-batch"
    (outlier,) = [s for s in predict_spans if s.name == "predict IsolationForest"]
    assert outlier.attributes[semconv.MODEL_OPERATION] == "score_samples"
    assert len(predict_spans) == 4
    assert semconv.METRIC_PREDICTIONS in metric_names
