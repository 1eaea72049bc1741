"""Call sampling for feature capture: a per-model row budget, or a constant probability.

By default every call is captured until the model's budget of rows per second
is spent; then calls are captured with the probability that keeps the budget
(``budget / rows demanded``, estimated from the previous second and from the
current second once it overflows). The probability is decided from past calls
only, before looking at this call's data, so weighting captured rows by ``1/p``
(``ml.sample.rate``) gives unbiased totals downstream.
"""

from __future__ import annotations

import random
import threading
import time


class RowBudget:
    """Capture probability per call so that about ``rows_per_second`` rows are captured."""

    __slots__ = (
        "_budget",
        "_captured",
        "_clock",
        "_demand",
        "_lock",
        "_window_rate",
        "_window_start",
    )

    def __init__(self, rows_per_second: float, clock=time.monotonic) -> None:
        if not rows_per_second > 0:
            raise ValueError(f"rows_per_second must be > 0, got {rows_per_second!r}")
        self._budget = float(rows_per_second)
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = clock()
        self._demand = 0.0  # rows offered in the current 1 s window
        self._captured = 0.0  # rows captured in the current window
        self._window_rate = 1.0  # probability fixed for this window from the previous one

    def decide(self, rows: int) -> tuple[bool, float]:
        """(capture this call?, probability used) for a call offering ``rows`` rows."""
        now = self._clock()
        with self._lock:
            elapsed = now - self._window_start
            if elapsed >= 1.0:
                previous = self._demand if elapsed < 2.0 else 0.0
                self._window_rate = 1.0 if previous <= self._budget else self._budget / previous
                self._window_start = now
                self._demand = 0.0
                self._captured = 0.0
            rate = self._window_rate
            if self._captured >= self._budget and self._demand > 0:
                rate = min(rate, self._budget / self._demand)
            self._demand += rows
            captured = rate >= 1.0 or random.random() < rate
            if captured:
                self._captured += rows
        return captured, rate


class ConstantRate:
    """Capture each call with a fixed probability."""

    __slots__ = ("_rate",)

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], got {rate!r}")
        self._rate = rate

    def decide(self, rows: int) -> tuple[bool, float]:
        rate = self._rate
        return (rate >= 1.0 or random.random() < rate), rate
