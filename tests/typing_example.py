"""A typed use of modeltrace checked by mypy in tests/test_typing.py (not a test module)."""

from __future__ import annotations

import modeltrace


@modeltrace.monitor(model="churn", version="3")
def predict(rows: list[dict[str, float]], threshold: float = 0.5) -> list[bool]:
    return [row["score"] > threshold for row in rows]


@modeltrace.monitor(model="churn", version="3")
async def predict_async(row: dict[str, float]) -> float:
    return row["score"]


flags: list[bool] = predict([{"score": 0.7}], threshold=0.2)
coroutine_result = predict_async({"score": 1.0})
pid: str | None = modeltrace.current_prediction_id()
