"""FastAPI integration: ``instrument_app(app, **monitor_defaults)``.

The HTTP server span and HTTP metrics come from
``opentelemetry-instrumentation-fastapi`` (``FastAPIInstrumentor.instrument_app``),
skipped when the app is already instrumented (by hand or under
``opentelemetry-instrument``). modeltrace adds one pure ASGI middleware, which
the contrib middleware wraps, so it runs while the request span is current and
puts every request in a ``modeltrace.serving`` request scope: monitored calls
become children of the request span, tag it with ``ml.model.name`` /
``ml.model.version`` of the first model called, and take ``monitor_defaults``
for the options their decorator left unset. Sync endpoints run in Starlette's
thread pool with a copy of the context, so the scope reaches them too.

Decorated endpoints stay ordinary FastAPI endpoints: ``monitor`` keeps the
signature (FastAPI builds validation, 422 answers and dependency injection from
it) and ``inspect.iscoroutinefunction``. FastAPI passes parameters by keyword;
the first one (for example a pydantic body) is the model input whose fields
become the captured features.

Excluded URLs (``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` or ``excluded_urls=``):
excluded requests are not traced, and their monitored calls emit nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import fastapi
from opentelemetry.instrumentation.asgi import get_host_port_url_tuple
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.util.http import ExcludeList, parse_excluded_urls
from starlette.types import ASGIApp, Receive, Scope, Send

from modeltrace import runtime, serving
from modeltrace.integrations import excluded_urls_from_env

logger = logging.getLogger("modeltrace")

_MARK = "_modeltrace_instrumented"


class ModeltraceMiddleware:
    """Pure ASGI middleware: a request scope per traced request, suppression for excluded ones."""

    def __init__(
        self, app: ASGIApp, *, defaults: serving.ServingDefaults, excluded: ExcludeList | None
    ) -> None:
        self.app = app
        self.defaults = defaults
        self.excluded = excluded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope_token = suppress_token = None
        try:
            excluded = self.excluded
            if excluded is not None and excluded.url_disabled(get_host_port_url_tuple(scope)[2]):
                suppress_token = serving.suppress_request()
            else:
                scope_token = serving.enter_request(self.defaults)
        except Exception as exc:  # never hurt the host app
            runtime.report_internal_error("fastapi.middleware", exc)
        try:
            await self.app(scope, receive, send)
        finally:
            try:
                if scope_token is not None:
                    serving.leave_request(scope_token)
                if suppress_token is not None:
                    serving.unsuppress_request(suppress_token)
            except Exception as exc:  # never hurt the host app
                runtime.report_internal_error("fastapi.middleware", exc)


def instrument_app(
    app: fastapi.FastAPI,
    *,
    excluded_urls: str | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    **monitor_defaults: Any,
) -> fastapi.FastAPI:
    """Trace ``app``'s requests and the monitored model calls they make.

    Call it before the app serves its first request (Starlette refuses new
    middleware afterwards). ``monitor_defaults``: ``version``, ``task``,
    ``feature_names``, ``sample_rate``, ``max_rows``, ``capture_features``,
    ``capture_predictions``, ``redact``, ``hash``. ``excluded_urls``
    (comma-separated regexes), ``tracer_provider`` and ``meter_provider`` go to
    ``FastAPIInstrumentor.instrument_app`` when this call instruments the app.
    Calling it again on the same app does nothing. Returns ``app``.
    """
    if not isinstance(app, fastapi.FastAPI):
        raise TypeError(f"instrument_app expects a fastapi.FastAPI, got {type(app).__name__}")
    defaults = serving.ServingDefaults(**monitor_defaults)
    if getattr(app, _MARK, False):
        logger.warning("modeltrace: FastAPI app %r is already instrumented", app.title)
        return app
    raw_excluded = excluded_urls if excluded_urls is not None else excluded_urls_from_env("FASTAPI")
    excluded = parse_excluded_urls(raw_excluded) if raw_excluded else None
    app.add_middleware(ModeltraceMiddleware, defaults=defaults, excluded=excluded)
    if not getattr(app, "_is_instrumented_by_opentelemetry", False):
        FastAPIInstrumentor.instrument_app(
            app,
            excluded_urls=raw_excluded,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
    setattr(app, _MARK, True)
    return app
