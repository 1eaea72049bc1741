"""Integrations of modeltrace with serving frameworks and model libraries.

- ``modeltrace.integrations.flask.instrument_app(app, **monitor_defaults)``
- ``modeltrace.integrations.fastapi.instrument_app(app, **monitor_defaults)``
- ``modeltrace.integrations.sklearn.SklearnInstrumentor`` (zero code, entry
  point ``sklearn`` of ``opentelemetry_instrumentor``)

Each submodule imports its framework; this package imports none of them.
Pre-fork servers (gunicorn, ``--preload`` or not) need no hook: see README
"Integrations".
"""

from __future__ import annotations

import os


def excluded_urls_from_env(framework: str) -> str | None:
    """The raw excluded-URL list for ``framework`` as the contrib instrumentations read it.

    ``OTEL_PYTHON_{FRAMEWORK}_EXCLUDED_URLS``, else ``OTEL_PYTHON_EXCLUDED_URLS``;
    read at call time (the contrib modules read it once, at import).
    """
    specific = os.environ.get(f"OTEL_PYTHON_{framework.upper()}_EXCLUDED_URLS", "").strip()
    return specific or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS", "").strip() or None
