"""A Flask model server instrumented with ``modeltrace.integrations.flask``.

Run it (development server, or gunicorn with several workers)::

    export OTEL_SERVICE_NAME=churn-api
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
    export OTEL_PYTHON_FLASK_EXCLUDED_URLS=healthz
    python examples/flask_app.py 8000
    gunicorn -w 2 --chdir examples flask_app:app          # or with --preload

    curl -s -X POST localhost:8000/predict -H 'content-type: application/json' \
         -d '[{"tenure_months": 3, "monthly_charges": 99}]'

What to look for: a ``POST /predict`` server span carrying ``ml.model.name=churn``
and ``ml.model.version=3``, with a child ``predict churn`` span holding the
captured features and predictions; HTTP metrics from the contrib Flask
instrumentation next to ``ml.model.*`` metrics; nothing at all for
``/healthz`` (excluded). The response names the worker's pid, so under
gunicorn you can see both workers export. Everything is configured by the
``OTEL_*`` / ``MODELTRACE_*`` variables.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from flask import Flask, jsonify, request
from sklearn.linear_model import LogisticRegression

import modeltrace
from modeltrace.integrations.flask import instrument_app

FEATURES = ["tenure_months", "monthly_charges"]


def train() -> LogisticRegression:
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.uniform(0, 72, 500), rng.uniform(20, 120, 500)])
    y = (x[:, 1] / 120 - x[:, 0] / 72 + rng.normal(0, 0.2, 500) > 0).astype(int)
    return LogisticRegression().fit(x, y)


MODEL = train()
# Providers and exporters; under gunicorn --preload this runs in the master and
# the SDK restarts its export threads in every worker after the fork.
telemetry = modeltrace.configure()

app = Flask(__name__)


@modeltrace.monitor(model="churn", feature_names=FEATURES)
def predict(rows: np.ndarray) -> np.ndarray:
    return MODEL.predict(rows)


@app.post("/predict")
def predict_route():  # type: ignore[no-untyped-def]
    body = request.get_json(silent=True)
    if not isinstance(body, list) or not body:
        return jsonify(error="expected a non-empty JSON list of rows"), 400
    try:
        rows = np.array([[float(row[name]) for name in FEATURES] for row in body])
    except (KeyError, TypeError, ValueError):
        return jsonify(error=f"each row needs numeric {', '.join(FEATURES)}"), 400
    return jsonify(churn=predict(rows).tolist(), pid=os.getpid())


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify(status="ok", pid=os.getpid())


instrument_app(app, version="3")

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
