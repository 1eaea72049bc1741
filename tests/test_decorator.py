"""monitor / wrap / current_prediction_id / record_label against the real in-memory SDK."""

from __future__ import annotations

import asyncio
import inspect
import logging
import pickle
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modeltrace
from modeltrace import semconv
from modeltrace.metrics import DURATION_BUCKETS_S
from sdk_harness import Telemetry


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    t = Telemetry(sample_rate=1.0)
    yield t
    t.close()


@modeltrace.monitor(model="pickled", version="1")
def module_level_predict(x: list[float]) -> float:
    """Sum of the inputs."""
    return float(sum(x))


def test_span_and_every_metric_by_value(tel: Telemetry) -> None:
    @modeltrace.monitor(model="churn", version="3", task="regression")
    def predict(x):
        return x.sum(axis=1)

    batches = [np.ones((2, 3)), np.full((5, 3), 2.0)]
    for b in batches:
        predict(b)
    spans = tel.spans()
    assert len(spans) == 2
    s = spans[1]
    assert s.name == "predict churn" and s.kind is SpanKind.INTERNAL
    a = s.attributes
    assert a[semconv.MODEL_NAME] == "churn" and a[semconv.MODEL_VERSION] == "3"
    assert a[semconv.MODEL_TASK] == "regression" and a[semconv.MODEL_FRAMEWORK] == "custom"
    assert a[semconv.MODEL_OPERATION] == "predict" and a[semconv.BATCH_SIZE] == 5
    assert len(a[semconv.PREDICTION_ID]) == 32
    assert a[semconv.PREDICTION_VALUE] == (6.0,) * 5
    m = tel.metrics()
    (duration,) = m[semconv.METRIC_PREDICT_DURATION]
    assert duration.count == 2 and tuple(duration.explicit_bounds) == DURATION_BUCKETS_S
    assert duration.attributes == {
        semconv.MODEL_NAME: "churn",
        semconv.MODEL_VERSION: "3",
        semconv.MODEL_OPERATION: "predict",
    }
    span_seconds = sum((sp.end_time - sp.start_time) / 1e9 for sp in spans)
    assert 0 < duration.sum <= span_seconds
    (predictions,) = m[semconv.METRIC_PREDICTIONS]
    assert predictions.value == 7
    (batch,) = m[semconv.METRIC_BATCH_SIZE]
    assert (batch.count, batch.sum, batch.min, batch.max) == (2, 7, 2, 5)
    (values,) = m[semconv.METRIC_PREDICTION_VALUE]
    expected = np.concatenate([b.sum(axis=1) for b in batches])
    assert values.count == expected.size and values.sum == pytest.approx(expected.sum())
    assert semconv.METRIC_PREDICT_ERRORS not in m


def test_negative_outputs_stay_on_the_span_not_in_the_value_histogram(
    tel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    @modeltrace.monitor(model="scores", version="1", max_rows=8)
    def decision_function(x: np.ndarray) -> np.ndarray:
        return x[:, 0]

    batch = np.array([[-2.5], [0.0], [1.5], [-0.25]])
    with caplog.at_level(logging.WARNING):
        assert decision_function(batch) is not None
    assert not [r for r in caplog.records if "non-negative" in r.getMessage()]
    assert sorted(tel.span().attributes[semconv.PREDICTION_VALUE]) == [-2.5, -0.25, 0.0, 1.5]
    (values,) = tel.metrics()[semconv.METRIC_PREDICTION_VALUE]
    assert (values.count, values.sum) == (2, 1.5)


def test_exception_is_unchanged_and_recorded(tel: Telemetry) -> None:
    boom = ValueError("bad input")

    @modeltrace.monitor(model="m", version="1")
    def predict(x):
        raise boom

    with pytest.raises(ValueError) as info:
        predict({"a": 1})
    assert info.value is boom
    assert any(f.name == "predict" for f in info.traceback)
    s = tel.span()
    assert s.status.status_code is StatusCode.ERROR
    assert s.attributes[semconv.ERROR_TYPE] == "ValueError"
    assert [e.name for e in s.events] == ["exception"]
    m = tel.metrics()
    (errors,) = m[semconv.METRIC_PREDICT_ERRORS]
    assert errors.value == 1 and errors.attributes[semconv.ERROR_TYPE] == "ValueError"


def test_parent_is_current_span(tel: Telemetry) -> None:
    tracer = tel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("http") as parent:
        module_level_predict([1.0])
    s = tel.span()
    assert s.parent is not None and s.parent.span_id == parent.get_span_context().span_id


def test_metadata_signature_pickle_and_kinds(tel: Telemetry) -> None:
    assert module_level_predict.__doc__ == "Sum of the inputs."
    assert str(inspect.signature(module_level_predict)) == "(x: 'list[float]') -> 'float'"
    assert module_level_predict.__wrapped__.__name__ == "module_level_predict"
    assert pickle.loads(pickle.dumps(module_level_predict)) is module_level_predict

    @modeltrace.monitor(model="a")
    async def apredict(x):
        await asyncio.sleep(0)
        return modeltrace.current_prediction_id()

    assert inspect.iscoroutinefunction(apredict)
    pid = asyncio.run(apredict([1]))
    assert tel.span().attributes[semconv.PREDICTION_ID] == pid


def test_methods(tel: Telemetry) -> None:
    class Model:
        scale = 2

        @modeltrace.monitor(model="meth")
        def predict(self, x):
            return x * self.scale

        @modeltrace.monitor(model="cls")
        @classmethod
        def predict_cls(cls, x):
            return x * cls.scale

        @modeltrace.monitor(model="static")
        @staticmethod
        def predict_static(x):
            return x + 1

    m = Model()
    assert (m.predict(3), Model.predict_cls(3), m.predict_static(3), Model.predict_static(4)) == (
        6,
        6,
        4,
        5,
    )
    names = [s.name for s in tel.spans()]
    assert names == ["predict meth", "predict cls", "predict static", "predict static"]
    assert tel.spans()[0].attributes[semconv.PREDICTION_VALUE] == 6


def test_generators_end_on_exhaustion_close_and_error(tel: Telemetry, caplog) -> None:
    @modeltrace.monitor(model="gen")
    def stream(n):
        for i in range(n):
            yield i, modeltrace.current_prediction_id()

    with caplog.at_level(logging.ERROR):
        items = list(stream(3))
        assert [i for i, _ in items] == [0, 1, 2]
        assert modeltrace.current_prediction_id() is None
        g = stream(10)
        next(g)
        g.close()
        assert len(tel.spans()) == 2
        assert tel.spans()[0].attributes[semconv.PREDICTION_ID] == items[0][1]

        @modeltrace.monitor(model="gen")
        def failing():
            yield 1
            raise KeyError("k")

        with pytest.raises(KeyError):
            list(failing())
    assert tel.spans()[2].status.status_code is StatusCode.ERROR
    assert "Failed to detach context" not in caplog.text


def test_async_generator_and_cancellation(tel: Telemetry, caplog) -> None:
    @modeltrace.monitor(model="agen")
    async def astream(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    @modeltrace.monitor(model="agen")
    async def forever():
        while True:
            await asyncio.sleep(0.01)
            yield 1

    async def main() -> list[int]:
        got = [i async for i in astream(3)]

        async def consume() -> None:
            async for _ in forever():
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(main()) == [0, 1, 2]
    spans = tel.spans()
    assert len(spans) == 2
    assert spans[1].status.status_code is StatusCode.ERROR
    assert spans[1].attributes[semconv.ERROR_TYPE] == "CancelledError"
    assert "Failed to detach context" not in caplog.text


def test_wrap_is_transparent_and_nested_gives_one_span(tel: Telemetry) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    model = modeltrace.wrap(pipe, model="churn", version="3")
    assert isinstance(model, type(pipe)) and model.steps is pipe.steps
    assert not hasattr(model, "no_such_thing")
    np.testing.assert_array_equal(model.predict(x[:4]), pipe.predict(x[:4]))
    # the pipeline's final estimator, monitored under the same model: still one span
    pipe.steps[-1] = ("clf", modeltrace.wrap(pipe.steps[-1][1], model="churn", version="3"))
    model.predict_proba(x[:2])
    spans = tel.spans()
    assert [s.attributes[semconv.MODEL_OPERATION] for s in spans] == ["predict", "predict_proba"]
    assert spans[0].attributes[semconv.MODEL_FRAMEWORK] == "sklearn"
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(x[:3]), pipe.predict(x[:3]))
    # clone.predict: one span (its inner estimator nests); pipe.predict: the inner one's span
    assert len(tel.spans()) == 4


def test_labels_join_predictions(tel: Telemetry) -> None:
    @modeltrace.monitor(model="churn", version="3")
    def predict(x):
        return [1, 0]

    seen: list[str | None] = []

    def run() -> None:
        predict([[1], [2]])

    wrapped_run = modeltrace.monitor(model="outer")(
        lambda: seen.append(modeltrace.current_prediction_id())
    )
    wrapped_run()
    run()
    pid = tel.spans()[-1].attributes[semconv.PREDICTION_ID]
    modeltrace.record_label(pid, [1, 1], model="churn", version="3")
    (label,) = tel.spans("label ")
    assert label.name == "label churn"
    assert dict(label.attributes) == {
        semconv.MODEL_NAME: "churn",
        semconv.MODEL_VERSION: "3",
        semconv.PREDICTION_ID: pid,
        semconv.LABEL_VALUE: (1, 1),
    }
    assert seen[0] == tel.spans()[0].attributes[semconv.PREDICTION_ID]
    with pytest.raises(TypeError, match="prediction_id"):
        modeltrace.record_label("", 1, model="churn")
    with pytest.raises(ValueError, match="None"):
        modeltrace.record_label(pid, None, model="churn")


def test_threads_and_tasks_no_cross_talk(tel: Telemetry) -> None:
    @modeltrace.monitor(model="t")
    def predict(x):
        return modeltrace.current_prediction_id()

    results: list[tuple[str, str]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            pid = predict({"a": 1})
            with lock:
                results.append(pid)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = tel.spans()
    assert len(spans) == 400
    assert sorted(results) == sorted(s.attributes[semconv.PREDICTION_ID] for s in spans)
    assert len(set(results)) == 400
    tel.exporter.clear()

    @modeltrace.monitor(model="t")
    async def apredict(i):
        before = modeltrace.current_prediction_id()
        await asyncio.sleep(0.001 * (i % 5))
        assert modeltrace.current_prediction_id() == before
        return before

    async def main() -> list[str]:
        return await asyncio.gather(*(apredict(i) for i in range(200)))

    pids = asyncio.run(main())
    spans = tel.spans()
    assert len(spans) == 200 and len(set(pids)) == 200
    by_id = {s.attributes[semconv.PREDICTION_ID]: s for s in spans}
    assert [by_id[p].attributes[semconv.FEATURE_PREFIX + "f0"] for p in pids] == list(range(200))


def test_disabled_is_a_pass_through() -> None:
    t = Telemetry(disabled=True)
    try:
        calls = []

        @modeltrace.monitor(model="off")
        def predict(x):
            calls.append(x)
            return x

        assert predict(5) == 5 and calls == [5]
        assert t.spans() == [] and modeltrace.current_prediction_id() is None
    finally:
        t.close()


def test_internal_failure_never_reaches_the_app(tel: Telemetry, caplog) -> None:
    class Hostile:
        def __len__(self) -> int:
            raise RuntimeError("len")

        def __iter__(self):
            raise RuntimeError("iter")

        def __repr__(self) -> str:
            raise RuntimeError("repr")

        __str__ = __repr__

    @modeltrace.monitor(model="h")
    def predict(x):
        return x

    h = Hostile()
    with caplog.at_level(logging.WARNING, logger="modeltrace"):
        assert predict([h, h]) == [h, h]
        assert predict({"a": h})["a"] is h
    assert len(tel.spans()) == 2
    assert trace.get_current_span() is trace.INVALID_SPAN
