"""``monitor``, ``wrap`` and ``current_prediction_id``: one span and the SDK metrics per model call.

Built on wrapt so that decorated functions keep their signature, docstring,
``__wrapped__`` and ``inspect.iscoroutinefunction``, and work as instance,
class and static methods. Plain, async, generator and async-generator functions
each get their own wrapper; generators attach the span's context only around
each step, so suspending never leaves a context attached.

Instrumentation never changes what the call returns or raises and never raises
on its own: every internal failure is reported through
``runtime.report_internal_error`` and the call goes on.
"""

from __future__ import annotations

import contextvars
import inspect
import random
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from modeltrace import capture, runtime, semconv, serving
from modeltrace.embedding import EmbeddingCapture, as_capture
from modeltrace.privacy import PrivacyPolicy
from modeltrace.sampling import ConstantRate, RowBudget
from modeltrace.settings import Settings, merge

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

MONITORED_METHODS: tuple[str, ...] = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "score_samples",
    "transform",
)
_CLASSIFICATION_OPERATIONS = frozenset({"predict_proba", "predict_log_proba", "decision_function"})
_KNOWN_FRAMEWORKS = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
    "torch": "torch",
    "tensorflow": "tensorflow",
    "keras": "keras",
    "transformers": "transformers",
    "statsmodels": "statsmodels",
    "onnxruntime": "onnx",
}


# The monitored call running in this context: ((model, version), prediction id).
_ActiveCall = tuple[tuple[str, str], str]
_ACTIVE: contextvars.ContextVar[_ActiveCall | None] = contextvars.ContextVar(
    "modeltrace_active_call", default=None
)


def current_prediction_id() -> str | None:
    """The ``ml.prediction.id`` of the monitored call running in this context, else None."""
    active = _ACTIVE.get()
    return None if active is None else active[1]


_getrandbits = random.getrandbits
_SUPPRESS_KEY = otel_context._SUPPRESS_INSTRUMENTATION_KEY
_SCOPE = serving._SCOPE
_perf_counter = time.perf_counter
# Ints outside (-2**63, 2**63) are not attribute ints; capture.scalar_value turns them into floats.
_INT64_MIN = -(2**63)
_INT64_END = 2**63


def _framework_of(model_obj: Any) -> str:
    if model_obj is None:
        return "custom"
    top = type(model_obj).__module__.split(".", 1)[0]
    return _KNOWN_FRAMEWORKS.get(top, "custom")


# ------------------------------------------------------------- options ----


def _check_name(kind: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"{kind} must be a string, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise ValueError(f"{kind} must not be empty")
    return text


def _check_feature_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | tuple | list):
        if hasattr(value, "tolist"):
            value = value.tolist()
        else:
            raise TypeError("feature_names must be a sequence of strings")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"feature_names entries must be strings, got {name!r}")
    return names


@dataclass(frozen=True)
class _Config:
    """Everything a call needs, resolved once per runtime generation."""

    generation: int
    disabled: bool
    tracer: trace.Tracer
    instruments: Any
    span_name: str
    base_attributes: dict[str, Any]
    metric_attributes: dict[str, Any]
    volume_attributes: dict[str, Any]
    capture_features: bool
    capture_predictions: bool
    limits: capture.CaptureLimits
    max_rows: int
    feature_keys: capture.FeatureKeys
    sampler: Any


_budgets: dict[tuple[str, str, float], RowBudget] = {}
_BUDGETS_LIMIT = 4096


def _budget_for(model: str, version: str, rows_per_second: float) -> RowBudget:
    key = (model, version, rows_per_second)
    budget = _budgets.get(key)
    if budget is None:
        budget = RowBudget(rows_per_second)
        if len(_budgets) < _BUDGETS_LIMIT:
            budget = _budgets.setdefault(key, budget)
    return budget


class ModelCallInstrumentation:
    """The instrumentation of one model callable: options, cached config, per-call spans."""

    def __init__(
        self,
        *,
        model: str,
        version: str,
        operation: str,
        task: str | None = None,
        framework: str | None = None,
        feature_names: Sequence[str] | None = None,
        model_obj: Any = None,
        embedding: EmbeddingCapture | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - serving.SETTING_OPTIONS
        if unknown:
            raise TypeError(f"unknown monitor option(s): {', '.join(sorted(unknown))}")
        self.model = _check_name("model", model)
        self.version = _check_name("version", version)
        self.operation = _check_name("operation", operation)
        self.task = None if task is None else _check_name("task", task)
        self.framework = None if framework is None else _check_name("framework", framework)
        self.feature_names = _check_feature_names(feature_names)
        self.model_obj = model_obj
        self.embedding = embedding  # modeltrace.embedding: projected per captured row
        self.options = {k: v for k, v in options.items() if v is not None}
        merge(Settings(), **self.options)  # validates now: precise errors at decoration time
        self.key = (self.model, self.version)
        self._config: _Config | None = None
        # Name of the input parameter, for calls passing it by keyword (FastAPI does).
        self.input_name: str | None = None

    # -- configuration --------------------------------------------------
    def config(self) -> _Config:
        cfg = self._config
        # runtime._generation changes on every install/reset (read directly: hot path).
        if (
            cfg is not None
            and cfg.generation == runtime._generation
            and runtime._current is not None
        ):
            return cfg
        rt = runtime.current()
        if cfg is None or cfg.generation != rt.generation:
            cfg = self._build(rt)
            self._config = cfg
        return cfg

    def _build(self, rt: runtime.Runtime) -> _Config:
        options = dict(self.options)
        base = rt.settings
        # Per-call privacy lists add to the configured ones, never loosen them.
        if "redact" in options:
            options["redact"] = tuple(base.redact) + tuple(
                merge(Settings(), **{"redact": options["redact"]}).redact
            )
        if "hash" in options:
            options["hash"] = tuple(base.hash) + tuple(
                merge(Settings(), **{"hash": options["hash"]}).hash
            )
        settings = merge(base, **options)
        framework = self.framework or _framework_of(self.model_obj)
        task = self.task
        if task is None and (
            self.operation in _CLASSIFICATION_OPERATIONS
            or getattr(self.model_obj, "classes_", None) is not None
        ):
            task = "classification"
        base_attributes: dict[str, Any] = {
            semconv.MODEL_NAME: self.model,
            semconv.MODEL_VERSION: self.version,
            semconv.MODEL_FRAMEWORK: framework,
            semconv.MODEL_OPERATION: self.operation,
        }
        if task is not None:
            base_attributes[semconv.MODEL_TASK] = task
        sampler: Any
        if settings.sample_rate is not None:
            sampler = ConstantRate(settings.sample_rate)
        else:
            sampler = _budget_for(self.model, self.version, settings.rows_per_second)
        return _Config(
            generation=rt.generation,
            disabled=settings.disabled,
            tracer=rt.tracer,
            instruments=rt.instruments,
            span_name=semconv.PREDICT_SPAN_PREFIX + self.model,
            base_attributes=base_attributes,
            metric_attributes={
                semconv.MODEL_NAME: self.model,
                semconv.MODEL_VERSION: self.version,
                semconv.MODEL_OPERATION: self.operation,
            },
            volume_attributes={semconv.MODEL_NAME: self.model, semconv.MODEL_VERSION: self.version},
            capture_features=settings.capture_features,
            capture_predictions=settings.capture_predictions,
            limits=capture.CaptureLimits(
                max_rows=settings.max_rows,
                max_features=settings.effective_max_features(),
                max_string_length=settings.max_string_length,
            ),
            max_rows=settings.max_rows,
            feature_keys=capture.FeatureKeys(
                PrivacyPolicy(
                    settings.redact, settings.hash, settings.hash_salt, settings.redact_defaults
                )
            ),
            sampler=sampler,
        )

    # -- per call ---------------------------------------------------------
    def begin(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], attach: bool
    ) -> _Call | None:
        """Start a call's span; None means "pass through" (disabled, nested, internal failure)."""
        try:
            # Web integrations (modeltrace.serving): excluded requests are not
            # traced; traced ones supply app defaults and get their span tagged.
            # The current context is read once and passed on (start_span, records).
            parent = otel_context.get_current()
            if parent.get(_SUPPRESS_KEY):  # serving.suppressed(), on the context read here
                return None
            scope = _SCOPE.get()  # serving.current_scope()
            instr = self if scope is None else scope.defaults.apply(self)
            cfg = instr._config
            # config(), its cached case inlined (runtime._generation: see config()).
            if cfg is None or cfg.generation != runtime._generation or runtime._current is None:
                cfg = instr.config()
            if cfg.disabled:
                return None
            active = _ACTIVE.get()
            if active is not None and active[0] == instr.key:
                return None
            call = _Call(instr, cfg, instance, args, kwargs, attach, parent)
            if scope is not None:
                scope.note_model(instr.model, instr.version)
            return call
        except Exception as exc:
            runtime.report_internal_error("monitor.begin", exc)
            return None

    # -- wrappers (wrapt signature) ----------------------------------------
    def call_sync(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if runtime.disabled:
            return wrapped(*args, **kwargs)
        call = self.begin(instance, args, kwargs, attach=True)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.succeed(result)
        return result

    async def call_async(
        self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        call = self.begin(instance, args, kwargs, attach=True)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.succeed(result)
        return result

    def call_generator(
        self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        generator = wrapped(*args, **kwargs)
        call = self.begin(instance, args, kwargs, attach=False)
        if call is None:
            return generator
        return _traced_generator(generator, call)

    def call_async_generator(
        self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        generator = wrapped(*args, **kwargs)
        call = self.begin(instance, args, kwargs, attach=False)
        if call is None:
            return generator
        return _traced_async_generator(generator, call)

    def wrapper_for(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """The wrapt wrapper function suited to ``func``'s kind."""
        if self.input_name is None:
            self.input_name = _input_parameter(func)
        target = (
            inspect.unwrap(func)
            if not isinstance(func, (staticmethod, classmethod))
            else func.__func__
        )
        if inspect.isasyncgenfunction(target):
            return self.call_async_generator
        if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(func):
            return self.call_async
        if inspect.isgeneratorfunction(target):
            return self.call_generator
        return self.call_sync


def _input_parameter(func: Callable[..., Any]) -> str | None:
    """The first parameter of ``func`` other than a leading ``self``/``cls``, if any."""
    try:
        target = func.__func__ if isinstance(func, (staticmethod, classmethod)) else func
        names = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return None
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return names[0] if names else None


class _Call:
    """One monitored call: its span, attached context and captured rows."""

    __slots__ = (
        "captured",
        "cfg",
        "done",
        "instr",
        "model_input",
        "model_obj",
        "n_rows",
        "parent",
        "pending",
        "prediction_id",
        "rows",
        "span",
        "span_context",
        "start",
        "tokens",
    )

    def __init__(
        self,
        instr: ModelCallInstrumentation,
        cfg: _Config,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        attach: bool,
        parent: otel_context.Context,
    ) -> None:
        self.cfg = cfg
        self.instr = instr
        self.done = False
        self.tokens: tuple[Any, Any] | None = None
        model_obj = instr.model_obj if instr.model_obj is not None else instance
        self.model_obj = model_obj
        # 32 hex digits, as f"{bits:032x}" (big-endian bytes keep the leading zeros), cheaper.
        prediction_id = _getrandbits(128).to_bytes(16, "big").hex()
        self.prediction_id = prediction_id
        attributes = cfg.base_attributes.copy()
        attributes[semconv.PREDICTION_ID] = prediction_id
        self.n_rows: int | None = None
        self.rows: list[int] | None = None
        self.captured = False
        # Attributes known at start (captured features included) go to start_span;
        # outputs known at the end are set then, in one call (same attribute order).
        pending: dict[str, Any] = {}
        self.pending = pending
        self.model_input: Any = None
        try:
            x = args[0] if args else None
            if not args and kwargs:
                name = instr.input_name
                x = kwargs[name] if name in kwargs else next(iter(kwargs.values()))
            if instr.embedding is not None:
                self.model_input = x
            view = capture.adapt_input(x, instr.feature_names, model_obj)
            if view is not None:
                n_rows = view.n_rows
                self.n_rows = n_rows
                attributes[semconv.BATCH_SIZE] = n_rows
                self._sample(n_rows, attributes)
                if self.captured and cfg.capture_features and self.rows:
                    view.add_features(self.rows, cfg.limits, cfg.feature_keys, attributes)
        except Exception as exc:
            runtime.report_internal_error("capture.features", exc)
        span = cfg.tracer.start_span(
            cfg.span_name, parent, kind=SpanKind.INTERNAL, attributes=attributes
        )
        self.span = span
        # The span in the caller's context: attached around a plain/async call and the
        # duration exemplar's context. Generators attach per step (enter()) instead, and
        # their metrics read the context current when they end (parent None).
        span_context = trace.set_span_in_context(span, parent)
        self.span_context = span_context
        self.parent = parent if attach else None
        self.start = _perf_counter()
        if attach:
            self.tokens = (
                otel_context.attach(span_context),
                _ACTIVE.set((instr.key, prediction_id)),
            )

    def _sample(self, n_rows: int, attributes: dict[str, Any]) -> None:
        """Decide capture for a call of ``n_rows`` rows; choose rows only if something uses them."""
        cfg = self.cfg
        max_rows = cfg.max_rows
        offered = n_rows if n_rows < max_rows else max_rows
        captured, rate = cfg.sampler.decide(offered)
        # With capture off nothing is captured: no ml.sample.indices, no end-of-span attributes.
        self.captured = (
            captured and offered > 0 and (cfg.capture_features or cfg.capture_predictions)
        )
        # Probability that each row of this call was captured: call sampling x row subsampling.
        attributes[semconv.SAMPLE_RATE] = (
            rate if offered == n_rows else rate * offered / n_rows if n_rows else rate
        )
        # Rows feed captured features/outputs and the prediction-value histogram.
        if self.captured or cfg.capture_predictions:
            rows = [0] if n_rows == 1 else capture.choose_rows(n_rows, max_rows)
            self.rows = rows
            if self.captured:
                attributes[semconv.SAMPLE_INDICES] = rows

    def enter(self) -> tuple[Any, Any]:
        ctx_token = otel_context.attach(trace.set_span_in_context(self.span))
        var_token = _ACTIVE.set((self.instr.key, self.prediction_id))
        return ctx_token, var_token

    def leave(self, tokens: tuple[Any, Any]) -> None:
        try:
            _ACTIVE.reset(tokens[1])
            otel_context.detach(tokens[0])
        except Exception as exc:
            runtime.report_internal_error("monitor.detach", exc)

    def _leave_attached(self) -> None:
        tokens = self.tokens
        if tokens is not None:
            self.tokens = None
            self.leave(tokens)

    def succeed(self, result: Any, outputs: bool = True) -> None:
        tokens = self.tokens
        if tokens is not None:  # _leave_attached(), inlined
            self.tokens = None
            self.leave(tokens)
        if self.done:
            return
        self.done = True
        try:
            cfg = self.cfg
            duration = _perf_counter() - self.start
            instruments = cfg.instruments
            attributes = self.pending
            values: list[Any] = []
            if outputs and (cfg.capture_predictions or self.n_rows is None):
                kind = type(result)
                # Fast path, same outcome as _outputs(): one row, a plain number.
                if self.n_rows == 1 and (
                    kind is float
                    or kind is bool
                    or (kind is int and _INT64_MIN < result < _INT64_END)
                ):
                    if self.captured and cfg.capture_predictions:
                        attributes[semconv.PREDICTION_VALUE] = result
                    values = [result]
                else:
                    values = self._outputs(result, attributes)
            if self.instr.embedding is not None and self.captured and cfg.capture_features:
                self._embedding(result, attributes)
            n_rows = self.n_rows if self.n_rows is not None else 1
            if semconv.BATCH_SIZE not in attributes and self.n_rows is None:
                attributes[semconv.BATCH_SIZE] = n_rows
            if len(attributes) == 1:  # typically ml.prediction.value of one row
                for key, value in attributes.items():
                    self.span.set_attribute(key, value)
            elif attributes:
                self.span.set_attributes(attributes)
            self.span.end()
            # The span's context makes the SDK's exemplar filter (trace_based by default)
            # attach this call's trace id to the histogram bucket as an exemplar.
            instruments.duration.record(duration, cfg.metric_attributes, self.span_context)
            instruments.predictions.add(self.instr.key, n_rows)
            # After the detach above, self.parent is the current context (None: read it).
            parent = self.parent
            instruments.batch_size.record(n_rows, cfg.volume_attributes, parent)
            histogram = instruments.prediction_value
            for value in values:
                # The OTel SDK refuses negative histogram values (with a warning per
                # call): negative outputs (decision_function, score_samples, some
                # regressions) stay on the span only.
                if (type(value) is float or type(value) is int) and value >= 0:
                    histogram.record(value, cfg.volume_attributes, parent)
        except Exception as exc:
            runtime.report_internal_error("monitor.end", exc)
            self._end_quietly()

    def _outputs(self, result: Any, attributes: dict[str, Any]) -> list[Any]:
        """Captured output attributes and histogram values (succeed() handles one plain number)."""
        cfg = self.cfg
        try:
            view = capture.adapt_output(result)
            if view is None:
                return []
            if self.n_rows is None:
                self.n_rows = view.n_rows
                attributes[semconv.BATCH_SIZE] = view.n_rows
                self._sample(view.n_rows, attributes)
            rows = self.rows or []
            if view.single:
                rows = [0] if self.n_rows == 1 or view.n_rows == 1 else []
                if self.n_rows != 1:
                    return []
            elif view.n_rows != self.n_rows:
                return []
            values, scores = capture.prediction_columns(
                view, rows, self.instr.operation, self.model_obj, cfg.limits.max_string_length
            )
            if self.captured and cfg.capture_predictions:
                capture.prediction_attributes(values, scores, self.n_rows == 1, attributes)
            return values
        except Exception as exc:
            runtime.report_internal_error("capture.predictions", exc)
            return []

    def _embedding(self, result: Any, attributes: dict[str, Any]) -> None:
        """``ml.embedding.*`` of the captured rows (modeltrace.embedding)."""
        embedding = self.instr.embedding
        try:
            if embedding is not None and self.rows and self.n_rows:
                attributes.update(
                    embedding.attributes(self.model_input, result, self.rows, self.n_rows)
                )
        except Exception as exc:
            runtime.report_internal_error("capture.embedding", exc)
        finally:
            self.model_input = None

    def fail(self, exc: BaseException) -> None:
        self._leave_attached()
        if self.done:
            return
        self.done = True
        try:
            cfg = self.cfg
            duration = time.perf_counter() - self.start
            error_type = type(exc).__qualname__
            span = self.span
            attributes = self.pending
            attributes[semconv.ERROR_TYPE] = error_type
            span.set_attributes(attributes)
            try:
                description = f"{error_type}: {exc}"
            except Exception:  # a broken __str__ must not break us
                description = error_type
            span.set_status(Status(StatusCode.ERROR, description[:1024]))
            try:
                span.record_exception(exc, escaped=True)
            except Exception as inner:
                runtime.report_internal_error("monitor.record_exception", inner)
            span.end()
            error_attributes = dict(cfg.metric_attributes)
            error_attributes[semconv.ERROR_TYPE] = error_type
            # With the span's context both carry this trace id as an exemplar.
            exemplar_context = self.span_context
            cfg.instruments.duration.record(duration, error_attributes, exemplar_context)
            cfg.instruments.errors.add(1, error_attributes, exemplar_context)
        except Exception as inner:
            runtime.report_internal_error("monitor.fail", inner)
            self._end_quietly()

    def _end_quietly(self) -> None:
        try:
            if self.span.is_recording():
                self.span.end()
        except Exception:
            pass


# ------------------------------------------------------------ generators ----


def _traced_generator(generator: Generator[Any, Any, Any], call: _Call) -> Generator[Any, Any, Any]:
    """Delegate to ``generator`` step by step, with the span's context attached only per step."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        tokens = call.enter()
        try:
            if to_throw is not None:
                pending, to_throw = to_throw, None
                item = generator.throw(pending)
            else:
                item = generator.send(to_send)
        except StopIteration as stop:
            call.leave(tokens)
            call.succeed(None, outputs=False)
            return stop.value
        except BaseException as exc:
            call.leave(tokens)
            call.fail(exc)
            raise
        call.leave(tokens)
        try:
            to_send = yield item
        except GeneratorExit:
            tokens = call.enter()
            try:
                generator.close()
            finally:
                call.leave(tokens)
                call.succeed(None, outputs=False)
            raise
        except BaseException as exc:
            to_throw = exc
            to_send = None


async def _traced_async_generator(
    generator: AsyncGenerator[Any, Any], call: _Call
) -> AsyncGenerator[Any, Any]:
    """Async twin of ``_traced_generator``; cancellation ends the span as an error."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        tokens = call.enter()
        try:
            if to_throw is not None:
                pending, to_throw = to_throw, None
                item = await generator.athrow(pending)
            else:
                item = await generator.asend(to_send)
        except StopAsyncIteration:
            call.leave(tokens)
            call.succeed(None, outputs=False)
            return
        except BaseException as exc:
            call.leave(tokens)
            call.fail(exc)
            raise
        call.leave(tokens)
        try:
            to_send = yield item
        except GeneratorExit:
            tokens = call.enter()
            try:
                await generator.aclose()
            finally:
                call.leave(tokens)
                call.succeed(None, outputs=False)
            raise
        except BaseException as exc:
            to_throw = exc
            to_send = None


# ------------------------------------------------------------ public API ----


class _PicklableFunctionWrapper(wrapt.FunctionWrapper):
    """A FunctionWrapper that pickles by reference, like the module-level function it replaces."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__wrapped__.__qualname__

    def __reduce__(self) -> Any:
        return self.__wrapped__.__qualname__


def instrument_callable(
    func: Callable[P, R],
    *,
    model: str,
    version: str,
    operation: str,
    framework: str | None = None,
    model_obj: Any = None,
    **options: Any,
) -> Callable[P, R]:
    """Wrap one callable (a function or a bound method) so each call is a monitored prediction.

    This is the machinery behind ``monitor`` and ``wrap``, for integrations: the
    scikit-learn instrumentor calls it on bound estimator methods, e.g.
    ``instrument_callable(est.predict, model="churn", version="3",
    operation="predict", framework="sklearn", model_obj=est)``. ``model_obj``
    provides ``feature_names_in_`` and ``classes_``. ``options`` are those of
    ``monitor`` (task, feature_names, sample_rate, max_rows, capture_features,
    capture_predictions, redact, hash). A call nested in a monitored call of the
    same (model, version) is not instrumented again: one span per prediction.
    """
    instrumentation = ModelCallInstrumentation(
        model=model,
        version=version,
        operation=operation,
        framework=framework,
        model_obj=model_obj,
        **options,
    )
    wrapper = instrumentation.wrapper_for(func)
    wrapped: Any = _PicklableFunctionWrapper(func, wrapper)
    return wrapped  # type: ignore[no-any-return]


def monitor(
    model: str | None = None,
    version: str = "unknown",
    task: str | None = None,
    feature_names: Sequence[str] | None = None,
    sample_rate: float | None = None,
    max_rows: int | None = None,
    capture_features: bool | None = None,
    capture_predictions: bool | None = None,
    redact: Sequence[str] = (),
    hash: Sequence[str] = (),
    *,
    framework: str | None = None,
    operation: str | None = None,
    embedding: EmbeddingCapture | Callable[[Any], Any] | str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a predict function so each call emits a span and the SDK metrics.

    ``model`` defaults to the function's name; ``operation`` to ``predict``
    (or the function's name when it is one of the estimator method names).
    Capture options left as None follow ``configure()`` / ``MODELTRACE_*``;
    ``redact`` and ``hash`` add to the configured lists. ``embedding``: a
    callable ``input -> (n, d) array`` or the name of an input/output field
    (or a ``modeltrace.embedding.EmbeddingCapture`` for another ``dim``/``seed``):
    each captured row's embedding is recorded as a seeded random projection to
    32 dimensions plus its norm (``ml.embedding.*``).
    """
    embedding_capture = as_capture(embedding)
    options: dict[str, Any] = {
        "sample_rate": sample_rate,
        "max_rows": max_rows,
        "capture_features": capture_features,
        "capture_predictions": capture_predictions,
        "redact": tuple(redact) if redact else None,
        "hash": tuple(hash) if hash else None,
    }
    if model is not None:
        _check_name("model", model)
    _check_name("version", version)
    merge(Settings(), **{k: v for k, v in options.items() if v is not None})
    checked_names = _check_feature_names(feature_names)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if runtime.disabled_now():
            return func
        target = func.__func__ if isinstance(func, (staticmethod, classmethod)) else func
        name = getattr(target, "__name__", "predict")
        op = operation or (name if name in MONITORED_METHODS else "predict")
        instrumentation = ModelCallInstrumentation(
            model=model if model is not None else name,
            version=version,
            operation=op,
            task=task,
            framework=framework,
            feature_names=checked_names,
            embedding=embedding_capture,
            **options,
        )
        wrapper = instrumentation.wrapper_for(func)
        wrapped: Any = _PicklableFunctionWrapper(func, wrapper)
        return wrapped  # type: ignore[no-any-return]

    return decorate


class _ModelProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """A transparent proxy of a model whose prediction methods (and ``__call__``) are monitored."""

    def __init__(
        self,
        wrapped: Any,
        instrumentations: dict[str, ModelCallInstrumentation],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__(wrapped)
        self._self_instrumentations = instrumentations
        self._self_wrap_kwargs = kwargs

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.__wrapped__, name)
        instrumentations = object.__getattribute__(self, "_self_instrumentations")
        instrumentation = instrumentations.get(name)
        if instrumentation is None or not callable(attribute):
            return attribute
        return wrapt.FunctionWrapper(attribute, instrumentation.wrapper_for(attribute))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        wrapped = self.__wrapped__
        instrumentation = self._self_instrumentations["__call__"]
        return instrumentation.wrapper_for(wrapped.__call__)(wrapped.__call__, None, args, kwargs)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_rewrap, (self.__wrapped__, self._self_wrap_kwargs))

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Any:
        return _rewrap(self.__wrapped__, self._self_wrap_kwargs)

    def __deepcopy__(self, memo: Any) -> Any:
        import copy

        return _rewrap(copy.deepcopy(self.__wrapped__, memo), self._self_wrap_kwargs)


def _rewrap(model_obj: Any, kwargs: dict[str, Any]) -> Any:
    return wrap(model_obj, **kwargs)


def wrap(
    model_obj: T,
    model: str | None = None,
    version: str = "unknown",
    task: str | None = None,
    feature_names: Sequence[str] | None = None,
    sample_rate: float | None = None,
    max_rows: int | None = None,
    capture_features: bool | None = None,
    capture_predictions: bool | None = None,
    redact: Sequence[str] = (),
    hash: Sequence[str] = (),
    *,
    framework: str | None = None,
    embedding: EmbeddingCapture | Callable[[Any], Any] | str | None = None,
) -> T:
    """A transparent proxy of ``model_obj`` whose predict methods and ``__call__`` are monitored.

    ``model`` defaults to the class name. Everything else (attributes,
    ``isinstance``, ``fit``) passes through to the model. ``embedding`` as in
    ``monitor``: a callable ``input -> (n, d) array`` (for example the model's
    own ``transform``), the name of an input/output field, or an
    ``EmbeddingCapture``.
    """
    embedding_capture = as_capture(embedding)
    kwargs: dict[str, Any] = {
        "model": model,
        "version": version,
        "task": task,
        "feature_names": feature_names,
        "sample_rate": sample_rate,
        "max_rows": max_rows,
        "capture_features": capture_features,
        "capture_predictions": capture_predictions,
        "redact": tuple(redact),
        "hash": tuple(hash),
        "framework": framework,
        "embedding": embedding,
    }
    if runtime.disabled_now():
        return model_obj
    name = model if model is not None else type(model_obj).__name__
    options: dict[str, Any] = {
        "sample_rate": sample_rate,
        "max_rows": max_rows,
        "capture_features": capture_features,
        "capture_predictions": capture_predictions,
        "redact": tuple(redact) if redact else None,
        "hash": tuple(hash) if hash else None,
    }
    instrumentations = {
        operation: ModelCallInstrumentation(
            model=name,
            version=version,
            operation="predict" if operation == "__call__" else operation,
            task=task,
            framework=framework,
            feature_names=feature_names,
            model_obj=model_obj,
            embedding=embedding_capture,
            **options,
        )
        for operation in (*MONITORED_METHODS, "__call__")
    }
    proxy: Any = _ModelProxy(model_obj, instrumentations, kwargs)
    return proxy  # type: ignore[no-any-return]
