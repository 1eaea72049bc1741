"""The SDK's metric instruments: the five SPEC instruments and modeltrace's self-metrics."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

from modeltrace import semconv

# Latency buckets suited to models, 0.5 ms .. 30 s (the SDK's defaults are for HTTP ms).
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class PredictionTally:
    """Rows predicted per (model, version), read by an observable counter at collection time.

    Adding to a dict is far cheaper than a synchronous SDK counter on the hot path.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], int] = {}
        self._attributes: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, key: tuple[str, str], rows: int) -> None:
        with self._lock:
            total = self._totals.get(key)
            if total is None:
                self._attributes[key] = {semconv.MODEL_NAME: key[0], semconv.MODEL_VERSION: key[1]}
                total = 0
            self._totals[key] = total + rows

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._totals.items())
        return [Observation(total, self._attributes[key]) for key, total in items]


@dataclass(frozen=True)
class Instruments:
    """Instruments created on one meter; recreated when ``configure()`` changes the meter."""

    duration: Histogram
    errors: Counter
    predictions: PredictionTally
    batch_size: Histogram
    prediction_value: Histogram
    sdk_errors: Counter
    spans_dropped: Counter
    keep_alive: list[Any] = field(default_factory=list)


# One set of instruments per meter: creating them again on the same meter would get
# the already registered observable counter, whose callback reads the first tally.
_by_meter: weakref.WeakKeyDictionary[Meter, Instruments] = weakref.WeakKeyDictionary()
_by_meter_lock = threading.Lock()


def create_instruments(meter: Meter) -> Instruments:
    """The instruments of ``meter``, created on first use and then shared."""
    with _by_meter_lock:
        try:
            existing = _by_meter.get(meter)
        except TypeError:  # a meter that cannot be weakly referenced
            existing = None
        if existing is not None:
            return existing
        instruments = _create_instruments(meter)
        with contextlib.suppress(TypeError):  # not weakly referenceable: not shared
            _by_meter[meter] = instruments
        return instruments


def _create_instruments(meter: Meter) -> Instruments:
    tally = PredictionTally()
    observable = meter.create_observable_counter(
        semconv.METRIC_PREDICTIONS,
        callbacks=[tally.observe],
        unit="{prediction}",
        description="Rows predicted.",
    )
    return Instruments(
        duration=meter.create_histogram(
            semconv.METRIC_PREDICT_DURATION,
            unit="s",
            description="Duration of model prediction calls.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S),
        ),
        errors=meter.create_counter(
            semconv.METRIC_PREDICT_ERRORS,
            unit="{error}",
            description="Model prediction calls that raised.",
        ),
        predictions=tally,
        batch_size=meter.create_histogram(
            semconv.METRIC_BATCH_SIZE,
            unit="{row}",
            description="Rows per prediction call.",
            explicit_bucket_boundaries_advisory=list(BATCH_SIZE_BUCKETS),
        ),
        prediction_value=meter.create_histogram(
            semconv.METRIC_PREDICTION_VALUE,
            description="Numeric model outputs (a uniform sample of up to max_rows rows per call).",
        ),
        sdk_errors=meter.create_counter(
            semconv.METRIC_SDK_ERRORS,
            unit="{error}",
            description="Internal modeltrace failures (the host call went on unaffected).",
        ),
        spans_dropped=meter.create_counter(
            semconv.METRIC_SDK_SPANS_DROPPED,
            unit="{span}",
            description="Finished spans the span processor dropped (queue full or shut down).",
        ),
        keep_alive=[observable],
    )
