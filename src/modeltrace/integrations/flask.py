"""Flask integration: ``instrument_app(app, **monitor_defaults)``.

The HTTP server span and HTTP metrics come from
``opentelemetry-instrumentation-flask`` (``FlaskInstrumentor.instrument_app``);
an app it already instruments (by hand or under ``opentelemetry-instrument``)
is not instrumented twice. On top of it, every request runs in a
``modeltrace.serving`` request scope, so that monitored calls of the request

- are children of the request span (they start while it is current),
- tag it with ``ml.model.name`` / ``ml.model.version`` of the first model called,
- take ``monitor_defaults`` (``version``, ``sample_rate``, ...) for the options
  their decorator did not set.

Excluded URLs (``OTEL_PYTHON_FLASK_EXCLUDED_URLS``, or ``excluded_urls=``) follow
the contrib convention: an excluded request is not traced at all, so its
monitored calls emit no span and no metrics either (otherwise they would become
root spans of a request that is meant to be invisible, such as a health check).
"""

from __future__ import annotations

import logging
from typing import Any

import flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.util.http import ExcludeList, parse_excluded_urls

from modeltrace import runtime, serving
from modeltrace.integrations import excluded_urls_from_env

logger = logging.getLogger("modeltrace")

_MARK = "_modeltrace_instrumented"
_ENVIRON_SCOPE_TOKEN = "modeltrace.scope_token"
_ENVIRON_SUPPRESS_TOKEN = "modeltrace.suppress_token"


def instrument_app(
    app: flask.Flask,
    *,
    excluded_urls: str | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    **monitor_defaults: Any,
) -> flask.Flask:
    """Trace ``app``'s requests and the monitored model calls they make.

    ``monitor_defaults``: ``version``, ``task``, ``feature_names``,
    ``sample_rate``, ``max_rows``, ``capture_features``, ``capture_predictions``,
    ``redact``, ``hash``. ``excluded_urls`` (comma-separated regexes),
    ``tracer_provider`` and ``meter_provider`` are passed to
    ``FlaskInstrumentor.instrument_app`` when this call instruments the app.
    Calling it again on the same app does nothing. Returns ``app``.
    """
    if not isinstance(app, flask.Flask):
        raise TypeError(f"instrument_app expects a flask.Flask, got {type(app).__name__}")
    defaults = serving.ServingDefaults(**monitor_defaults)
    if getattr(app, _MARK, False):
        logger.warning("modeltrace: Flask app %r is already instrumented", app.name)
        return app
    raw_excluded = excluded_urls if excluded_urls is not None else excluded_urls_from_env("FLASK")
    excluded = parse_excluded_urls(raw_excluded) if raw_excluded else None
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        FlaskInstrumentor.instrument_app(
            app,
            excluded_urls=raw_excluded,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
    # Registered after the contrib hook, so the request span is current when it runs.
    app.before_request(_before_request(defaults, excluded))
    app.teardown_request(_teardown_request)
    setattr(app, _MARK, True)
    return app


def _before_request(defaults: serving.ServingDefaults, excluded: ExcludeList | None) -> Any:
    def modeltrace_before_request() -> None:
        try:
            environ = flask.request.environ
            if excluded is not None and excluded.url_disabled(flask.request.url):
                environ[_ENVIRON_SUPPRESS_TOKEN] = serving.suppress_request()
            else:
                environ[_ENVIRON_SCOPE_TOKEN] = serving.enter_request(defaults)
        except Exception as exc:  # never hurt the host app
            runtime.report_internal_error("flask.before_request", exc)

    return modeltrace_before_request


def _teardown_request(exc: BaseException | None) -> None:
    try:
        environ = flask.request.environ
        scope_token = environ.pop(_ENVIRON_SCOPE_TOKEN, None)
        if scope_token is not None:
            serving.leave_request(scope_token)
        suppress_token = environ.pop(_ENVIRON_SUPPRESS_TOKEN, None)
        if suppress_token is not None:
            serving.unsuppress_request(suppress_token)
    except Exception as error:  # never hurt the host app
        runtime.report_internal_error("flask.teardown_request", error)
