"""The demo's model service: a FastAPI app scoring loan applications.

``/score`` takes one application as a pydantic body; the endpoint is monitored
with ``modeltrace.monitor``, so its fields become the captured features and its
answer (predicted class and probability) the captured prediction and score.
"""

from __future__ import annotations

from typing import Any

import fastapi
import pydantic

import modeltrace
from modeltrace.integrations.fastapi import instrument_app

MODEL_NAME = "credit-risk"
MODEL_VERSION = "1"


class Application(pydantic.BaseModel):
    """One loan application, as the model's clients send it."""

    age: float
    income: float = pydantic.Field(gt=0)
    debt_ratio: float
    credit_lines: float
    loan_amount: float
    employment: str
    region: str


def build_app(pipeline: Any) -> fastapi.FastAPI:
    """A FastAPI app serving ``pipeline`` (a fitted scikit-learn pipeline on dict rows)."""
    app = fastapi.FastAPI(title="modeltrace demo: credit risk")

    @app.post("/score")
    @modeltrace.monitor(model=MODEL_NAME, version=MODEL_VERSION, task="classification")
    def score(application: Application) -> dict[str, Any]:
        probability = float(pipeline.predict_proba([application.model_dump()])[0][1])
        return {
            "prediction": int(probability >= 0.5),
            "probability": round(max(probability, 1.0 - probability), 6),
            "prediction_id": modeltrace.current_prediction_id(),
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    instrument_app(app)
    return app
