"""A FastAPI model server instrumented with ``modeltrace.integrations.fastapi``.

Run it (one process, or several uvicorn workers)::

    export OTEL_SERVICE_NAME=churn-api
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
    export OTEL_PYTHON_FASTAPI_EXCLUDED_URLS=healthz
    python examples/fastapi_app.py 8000
    uvicorn --app-dir examples fastapi_app:app --workers 2 --port 8000

    curl -s -X POST localhost:8000/predict -H 'content-type: application/json' \
         -d '{"tenure_months": 3, "monthly_charges": 99, "plan": "pro"}'

What to look for: a ``POST /predict`` server span with ``ml.model.name=churn`` /
``ml.model.version=3`` and a child ``predict churn`` span whose features are the
fields of the pydantic body (``ml.feature.tenure_months``, ``ml.feature.plan``,
...). An invalid body still gets FastAPI's 422 (no model span: the endpoint never
ran); ``/predict/batch`` is an async endpoint using dependency injection;
``/healthz`` makes no telemetry. Configured by the ``OTEL_*`` / ``MODELTRACE_*``
variables only. uvicorn starts its workers as fresh processes, so each one
configures its own providers.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field
from sklearn.linear_model import LogisticRegression

import modeltrace
from modeltrace.integrations.fastapi import instrument_app

NUMERIC = ["tenure_months", "monthly_charges"]


class Customer(BaseModel):
    tenure_months: float = Field(ge=0)
    monthly_charges: float = Field(ge=0)
    plan: Literal["basic", "pro"] = "basic"


class Verdict(BaseModel):
    churn: int
    pid: int


def train() -> LogisticRegression:
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.uniform(0, 72, 500), rng.uniform(20, 120, 500)])
    y = (x[:, 1] / 120 - x[:, 0] / 72 + rng.normal(0, 0.2, 500) > 0).astype(int)
    return LogisticRegression().fit(x, y)


MODEL = train()
telemetry = modeltrace.configure()
app = FastAPI(title="churn-api")


def get_model() -> LogisticRegression:
    return MODEL


ModelDep = Annotated[LogisticRegression, Depends(get_model)]


@app.post("/predict")
@modeltrace.monitor(model="churn")
def predict(customer: Customer, model: ModelDep) -> Verdict:
    row = np.array([[customer.tenure_months, customer.monthly_charges]])
    return Verdict(churn=int(model.predict(row)[0]), pid=os.getpid())


@app.post("/predict/batch")
@modeltrace.monitor(model="churn", operation="predict_batch")
async def predict_batch(customers: list[Customer], model: ModelDep) -> list[int]:
    rows = np.array([[c.tenure_months, c.monthly_charges] for c in customers])
    return [int(v) for v in model.predict(rows)] if len(rows) else []


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


instrument_app(app, version="3")

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
