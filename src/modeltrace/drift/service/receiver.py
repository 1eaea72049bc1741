"""What OTLP/HTTP and OTLP/gRPC exports share: enqueue, wait for the commit, count.

A :class:`TraceReceiver` turns a decoded export request into a queued payload
and turns the aggregator's per-request result into the OTLP answer (rejected
span count and message for partial success), recording self-metrics.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from modeltrace.drift.service.ingest_queue import IngestQueue
from modeltrace.drift.service.telemetry import ServiceMetrics


class IngestResultLike(Protocol):
    """The fields of the aggregator's ``IngestResult`` the service uses."""

    @property
    def accepted(self) -> int: ...

    @property
    def rejected(self) -> int: ...

    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True)
class ExportOutcome:
    """The answer to one acknowledged export."""

    accepted_spans: int
    rejected_spans: int
    error_message: str


class TraceReceiver:
    """Submits serialized ExportTraceServiceRequests and interprets the commit results."""

    def __init__(self, queue: IngestQueue[IngestResultLike], metrics: ServiceMetrics) -> None:
        self.queue = queue
        self.metrics = metrics

    def submit(self, payload: bytes, extraction: object | None = None) -> Future[IngestResultLike]:
        """Enqueue (with the payload's extraction when the receiver made one, so the
        writer does not extract again); raises QueueFullError / QueueClosedError
        without blocking."""
        return self.queue.submit(payload, extraction)

    def outcome(self, result: IngestResultLike, transport: str) -> ExportOutcome:
        rejected = int(result.rejected)
        accepted = int(result.accepted)
        # Spans that are neither predictions nor labels are acknowledged and ignored.
        ignored = int(getattr(result, "ignored", 0))
        self.metrics.spans_received.add(accepted + rejected + ignored, {"transport": transport})
        if rejected:
            self.metrics.spans_rejected.add(rejected, {"transport": transport})
        self.metrics.record_request(transport, "partial" if rejected else "ok")
        message = (result.reason or "") if rejected else ""
        return ExportOutcome(accepted, rejected, message)
