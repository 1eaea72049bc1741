"""The serving-request context that web integrations put around each request.

``modeltrace.integrations.flask`` / ``.fastapi`` enter a ``RequestScope`` for
every traced request; monitored calls made while it is current (``monitor``,
``wrap``, the scikit-learn instrumentor) then

- take the app's ``monitor_defaults`` for the options they did not set
  themselves (``ServingDefaults.apply``),
- tag the request's server span with ``ml.model.name`` / ``ml.model.version``
  of the first model called (``RequestScope.note_model``), so HTTP-level views
  can be cut by model.

Requests the framework instrumentation excludes (``OTEL_PYTHON_*_EXCLUDED_URLS``)
run with OpenTelemetry's suppress-instrumentation context instead, and
monitored calls inside them emit nothing, as contrib instrumentations do.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from modeltrace import semconv
from modeltrace.settings import Settings, merge

if TYPE_CHECKING:
    from modeltrace.decorator import ModelCallInstrumentation

# Options an app may give as defaults of the monitored calls it serves.
DEFAULT_OPTIONS: tuple[str, ...] = (
    "version",
    "task",
    "feature_names",
    "sample_rate",
    "max_rows",
    "capture_features",
    "capture_predictions",
    "redact",
    "hash",
)
# The options above that are capture settings (the rest are span metadata).
SETTING_OPTIONS = frozenset(
    {"sample_rate", "max_rows", "capture_features", "capture_predictions", "redact", "hash"}
)
_UNSET_VERSION = "unknown"


class ServingDefaults:
    """Validated ``monitor_defaults`` of one app and the derived instrumentations they give."""

    def __init__(self, **defaults: Any) -> None:
        unknown = sorted(set(defaults) - set(DEFAULT_OPTIONS))
        if unknown:
            raise TypeError(
                f"unknown monitor default(s): {', '.join(unknown)} "
                f"(allowed: {', '.join(DEFAULT_OPTIONS)})"
            )
        given = {k: v for k, v in defaults.items() if v is not None}
        for key in ("version", "task"):
            if key in given and (not isinstance(given[key], str) or not given[key].strip()):
                raise ValueError(f"{key} must be a non-empty string, got {given[key]!r}")
        if "feature_names" in given:
            names = given["feature_names"]
            if isinstance(names, str) or not isinstance(names, Sequence):
                raise TypeError("feature_names must be a sequence of strings")
            if not all(isinstance(name, str) for name in names):
                raise TypeError("feature_names entries must be strings")
            given["feature_names"] = tuple(names)
        settings = {k: v for k, v in given.items() if k in SETTING_OPTIONS}
        merge(Settings(), **settings)  # precise errors now, not at the first request
        self.values: Mapping[str, Any] = given
        self._derived: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.values)

    def apply(self, instrumentation: ModelCallInstrumentation) -> ModelCallInstrumentation:
        """``instrumentation`` with these defaults filling the options it left unset (cached)."""
        if not self.values:
            return instrumentation
        derived = self._derived.get(instrumentation)
        if derived is None:
            derived = self._derive(instrumentation)
            with self._lock:
                derived = self._derived.setdefault(instrumentation, derived)
        return derived  # type: ignore[no-any-return]

    def _derive(self, instrumentation: ModelCallInstrumentation) -> ModelCallInstrumentation:
        from modeltrace.decorator import ModelCallInstrumentation

        values = self.values
        version = instrumentation.version
        if version == _UNSET_VERSION and "version" in values:
            version = values["version"]
        options = {k: v for k, v in values.items() if k in SETTING_OPTIONS}
        options.update(instrumentation.options)
        derived = ModelCallInstrumentation(
            model=instrumentation.model,
            version=version,
            operation=instrumentation.operation,
            task=instrumentation.task or values.get("task"),
            framework=instrumentation.framework,
            feature_names=instrumentation.feature_names or values.get("feature_names"),
            model_obj=instrumentation.model_obj,
            **options,
        )
        derived.input_name = instrumentation.input_name
        return derived


@dataclass
class RequestScope:
    """One traced request: its server span and the app's defaults."""

    span: trace.Span
    defaults: ServingDefaults
    tagged: bool = field(default=False)

    def note_model(self, model: str, version: str) -> None:
        """Tag the server span with the first model this request called."""
        if self.tagged:
            return
        self.tagged = True
        if self.span.is_recording():
            self.span.set_attributes({semconv.MODEL_NAME: model, semconv.MODEL_VERSION: version})


_SCOPE: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "modeltrace_request_scope", default=None
)


def current_scope() -> RequestScope | None:
    """The request scope of this context, if a web integration entered one."""
    return _SCOPE.get()


def enter_request(defaults: ServingDefaults) -> contextvars.Token[RequestScope | None]:
    """Start the scope of a traced request whose server span is the current span."""
    return _SCOPE.set(RequestScope(trace.get_current_span(), defaults))


def leave_request(token: contextvars.Token[RequestScope | None]) -> None:
    _SCOPE.reset(token)


def suppress_request() -> object:
    """Enter the suppress-instrumentation context for an excluded request; returns a token."""
    return otel_context.attach(
        otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True)
    )


def unsuppress_request(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


def suppressed() -> bool:
    """True inside a request (or code) that OpenTelemetry instrumentation must not trace."""
    return bool(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
