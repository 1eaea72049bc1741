"""Zero-code monitoring of scikit-learn estimators: ``SklearnInstrumentor``.

``opentelemetry-instrument python app.py`` loads this OpenTelemetry
``BaseInstrumentor`` (entry point ``sklearn`` in the group
``opentelemetry_instrumentor``); from then on every call of a predict-family
method of a fitted estimator emits one ``predict {model}`` span and the SDK
metrics, exactly as ``modeltrace.wrap(estimator)`` would.

How the methods are patched, and why this way
---------------------------------------------
The patch is made once, at class level, on a bounded and known set of
classes: every class registered in scikit-learn's estimator registry
(``sklearn.utils.all_estimators()``) plus ``Pipeline``, and every class of
their MRO that *defines* one of the monitored methods (mixins such as
``LinearClassifierMixin`` define ``decision_function`` for many estimators).
Estimators built on the scikit-learn API by other libraries are covered by
patching the classes of their ``sklearn``-compatible modules
(``xgboost.sklearn``, ``lightgbm.sklearn`` when installed, or any module given
as ``instrument(extra_modules=[...])``) that subclass ``BaseEstimator``.

Patching the defining classes (not ``BaseEstimator.__getattribute__`` or
``__init_subclass__`` hooks) keeps the cost at one wrapper per method, keeps
unrelated attribute access untouched, works for instances created before
``instrument()`` ran, and lets ``uninstrument()`` put back the very objects that
were there (identity) from a finite record. User subclasses inherit the
patched methods. Descriptors such as scikit-learn's ``available_if`` stay
intact: the wrapper (``wrapt.FunctionWrapper``) binds through them, so
``hasattr(pipeline, "predict_proba")`` answers as before.

Monitored methods: ``predict``, ``predict_proba``, ``predict_log_proba``,
``decision_function``, ``score_samples``; ``transform`` only on ``Pipeline``
(a pipeline ending in a transformer is the served model, while a standalone
scaler's ``transform`` is preprocessing). ``instrument(operations=...)``
changes the list.

One call, one span: a monitored method called inside another monitored call
(``pipeline.predict`` -> final step ``predict``; a search CV's
``best_estimator_``) runs unmonitored, and so does anything called inside
``fit``, ``fit_transform``, ``fit_predict``, ``partial_fit`` or ``score``
(training and evaluation are not production predictions).

Naming: ``ml.model.name`` is the ``modeltrace_name`` attribute of the estimator
(a pipeline: of the pipeline, else of its final step), else
``MODELTRACE_SKLEARN_MODEL_NAME``, else the class name (a pipeline: the final
step's class). ``ml.model.version`` likewise from ``modeltrace_version`` or
``MODELTRACE_SKLEARN_MODEL_VERSION``. ``ml.model.framework`` is ``sklearn``
(``xgboost``/``lightgbm`` for their wrappers).
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import logging
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from modeltrace import runtime
from modeltrace.decorator import ModelCallInstrumentation, current_prediction_id

logger = logging.getLogger("modeltrace")

ENV_MODEL_NAME = "MODELTRACE_SKLEARN_MODEL_NAME"
ENV_MODEL_VERSION = "MODELTRACE_SKLEARN_MODEL_VERSION"
NAME_ATTRIBUTE = "modeltrace_name"
VERSION_ATTRIBUTE = "modeltrace_version"

PREDICT_OPERATIONS: tuple[str, ...] = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "score_samples",
)
# Monitored on Pipeline only: a pipeline ending in a transformer is the served model.
PIPELINE_EXTRA_OPERATIONS: tuple[str, ...] = ("transform",)
# Calls made inside these run unmonitored: training and evaluation.
QUIET_METHODS: tuple[str, ...] = ("fit", "fit_transform", "fit_predict", "partial_fit", "score")
# Modules of libraries that implement the scikit-learn estimator API.
THIRD_PARTY_MODULES: dict[str, str] = {"xgboost.sklearn": "xgboost", "lightgbm.sklearn": "lightgbm"}

_instruments = ("scikit-learn >= 1.0",)

# True while a monitored (or quiet) sklearn call runs: nested calls pass through.
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "modeltrace_sklearn_inside", default=False
)


def _final_step(estimator: Any) -> Any:
    """The estimator a pipeline ends with (itself for anything else or 'passthrough')."""
    final = estimator
    for _ in range(16):  # nested pipelines, bounded
        steps = getattr(final, "steps", None)
        if not isinstance(steps, list) or not steps:
            break
        last = steps[-1][1] if isinstance(steps[-1], tuple) and len(steps[-1]) == 2 else None
        if last is None or isinstance(last, str):
            break
        final = last
    return final


def _label(estimator: Any, attribute: str, env_var: str) -> str | None:
    own = getattr(estimator, attribute, None)
    if isinstance(own, str) and own:
        return own
    final = _final_step(estimator)
    if final is not estimator:
        inner = getattr(final, attribute, None)
        if isinstance(inner, str) and inner:
            return inner
    from_env = os.environ.get(env_var, "").strip()
    return from_env or None


def model_name(estimator: Any) -> str:
    """``ml.model.name`` for an estimator (see the module docstring)."""
    return (
        _label(estimator, NAME_ATTRIBUTE, ENV_MODEL_NAME) or type(_final_step(estimator)).__name__
    )


def model_version(estimator: Any) -> str | None:
    """``ml.model.version`` for an estimator, or None when nothing names one."""
    return _label(estimator, VERSION_ATTRIBUTE, ENV_MODEL_VERSION)


def _framework(estimator: Any) -> str:
    module = type(_final_step(estimator)).__module__
    for prefix, framework in THIRD_PARTY_MODULES.items():
        if module.startswith(prefix.split(".")[0] + "."):
            return framework
    return "sklearn"


# (model, version, operation, framework) -> its instrumentation; bounded.
_instrumentations: dict[tuple[str, str, str, str], ModelCallInstrumentation] = {}
_INSTRUMENTATIONS_LIMIT = 1024


def _instrumentation_for(instance: Any, operation: str) -> ModelCallInstrumentation:
    key = (
        model_name(instance),
        model_version(instance) or "unknown",
        operation,
        _framework(instance),
    )
    instrumentation = _instrumentations.get(key)
    if instrumentation is None:
        instrumentation = ModelCallInstrumentation(
            model=key[0], version=key[1], operation=key[2], framework=key[3]
        )
        if len(_instrumentations) < _INSTRUMENTATIONS_LIMIT:
            instrumentation = _instrumentations.setdefault(key, instrumentation)
    return instrumentation


def _monitoring_wrapper(operation: str) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # Unbound access, a call inside fit/score or inside another monitored call
        # (pipeline -> final step, a @monitor function calling the estimator): pass through.
        if instance is None or _inside.get() or current_prediction_id() is not None:
            return wrapped(*args, **kwargs)
        try:
            instrumentation = _instrumentation_for(instance, operation)
        except Exception as exc:  # never hurt the host app
            runtime.report_internal_error("sklearn.instrumentation", exc)
            return wrapped(*args, **kwargs)
        token = _inside.set(True)
        try:
            return instrumentation.call_sync(wrapped, instance, args, kwargs)
        finally:
            _inside.reset(token)

    return wrapper


def _quiet_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    token = _inside.set(True)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _inside.reset(token)


def _estimator_classes(extra_modules: Iterable[str]) -> Iterator[tuple[type, tuple[str, ...]]]:
    """(class, operations monitored on it besides the common ones) for every class to patch."""
    from sklearn.base import BaseEstimator
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    yield Pipeline, PIPELINE_EXTRA_OPERATIONS
    for _, cls in all_estimators():
        yield cls, ()
    modules = [m for m in THIRD_PARTY_MODULES if _importable(m)]
    modules.extend(extra_modules)
    for module_name in modules:
        module = importlib.import_module(module_name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseEstimator) and cls.__module__ == module.__name__:
                yield cls, ()


def _names(option: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{option} must be a sequence of names, got {value!r}")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"{option}: {name!r} is not a valid name")
    return names


def _importable(module_name: str) -> bool:
    try:
        importlib.import_module(module_name)
    except Exception:  # absent or broken: skipped
        return False
    return True


class SklearnInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Monitors predict-family methods of scikit-learn estimators and pipelines.

    ``instrument()`` options (all optional, also usable from code):

    - ``operations``: method names to monitor on estimators (default
      ``PREDICT_OPERATIONS``; ``Pipeline`` always adds ``transform``).
    - ``extra_modules``: names of modules whose ``BaseEstimator`` subclasses
      (estimators on the scikit-learn API) are patched too.
    """

    # (class, attribute name) -> the object that was in the class __dict__.
    _originals: dict[tuple[type, str], Any]

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        operations = _names("operations", kwargs.get("operations") or PREDICT_OPERATIONS)
        extra_modules = _names("extra_modules", kwargs.get("extra_modules") or ())
        # Enumerate (and import) everything first: a bad module name patches nothing.
        classes = list(_estimator_classes(extra_modules))
        self._originals = {}
        for cls, extra_operations in classes:
            wanted = tuple(dict.fromkeys((*operations, *extra_operations)))
            for klass in cls.__mro__:
                if klass is object:
                    continue
                for name in wanted:
                    self._patch(klass, name, _monitoring_wrapper(name))
                for name in QUIET_METHODS:
                    self._patch(klass, name, _quiet_wrapper)

    def _patch(self, klass: type, name: str, wrapper: Callable[..., Any]) -> None:
        key = (klass, name)
        if key in self._originals or name not in vars(klass):
            return
        original = vars(klass)[name]
        if isinstance(original, (staticmethod, classmethod, property)) or not (
            callable(original) or hasattr(original, "__get__")
        ):
            return
        self._originals[key] = original
        setattr(klass, name, wrapt.FunctionWrapper(original, wrapper))

    def _uninstrument(self, **kwargs: Any) -> None:
        for (klass, name), original in self._originals.items():
            setattr(klass, name, original)
        self._originals = {}

    def patched(self) -> dict[tuple[type, str], Any]:
        """A copy of the record of patched class attributes and their originals."""
        return dict(getattr(self, "_originals", {}))
