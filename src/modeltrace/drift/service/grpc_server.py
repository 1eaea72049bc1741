"""OTLP/gRPC ``TraceService/Export`` receiver (grpcio with the opentelemetry-proto stubs).

Each export arrives as its bytes, is validated and extracted once (a malformed
body gets INVALID_ARGUMENT naming the problem), queued and answered after its
group commit. Overload maps to RESOURCE_EXHAUSTED (queue full) and UNAVAILABLE
(store busy, shutting down), both with a ``RetryInfo`` so OTLP exporters and
Collectors back off and retry. With a token, calls without the right
``authorization`` metadata get UNAUTHENTICATED. Message size is bounded by
``max_receive_message_length`` (grpc applies it after decompression).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    DESCRIPTOR as _TRACE_SERVICE_FILE,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from modeltrace.drift.service.auth import BearerAuth
from modeltrace.drift.service.ingest_queue import (
    QueueClosedError,
    QueueFullError,
    StoreBusyError,
)
from modeltrace.drift.service.otlp_codec import OtlpDecodeError, parse_protobuf_export
from modeltrace.drift.service.receiver import TraceReceiver

logger = logging.getLogger("modeltrace.service.grpc")

TRANSPORT = "grpc"
_SERVICE_NAME = _TRACE_SERVICE_FILE.services_by_name["TraceService"].full_name
RETRY_DELAY_SECONDS = 1
# Longest wait for a group commit before answering DEADLINE_EXCEEDED-like UNAVAILABLE.
COMMIT_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class _RpcStatus(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def _retryable_abort(
    context: grpc.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    """Abort with a google.rpc.RetryInfo in the status details (and the Python exporter's key)."""
    retry_info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=RETRY_DELAY_SECONDS))
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(retry_info)
    context.abort_with_status(
        _RpcStatus(
            code=code,
            details=message,
            trailing_metadata=(
                ("grpc-status-details-bin", status.SerializeToString()),
                ("google.rpc.retryinfo-bin", retry_info.SerializeToString()),
            ),
        )
    )
    raise AssertionError("unreachable: abort_with_status raises")


class TraceServiceServicer:
    """Answers each Export after its spans are committed to the store.

    The request arrives as its serialized bytes (no gRPC deserializer): it is
    validated, counted and extracted in one pass, as on OTLP/HTTP, and a
    malformed body gets INVALID_ARGUMENT with the same message as HTTP's 400."""

    def __init__(self, receiver: TraceReceiver) -> None:
        self._receiver = receiver

    def Export(self, body: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        metrics = self._receiver.metrics
        try:
            parsed = parse_protobuf_export(body)
        except OtlpDecodeError as exc:
            metrics.record_request(TRANSPORT, "bad_request")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if parsed.spans == 0:
            metrics.record_request(TRANSPORT, "empty")
            return ExportTraceServiceResponse()
        try:
            future = self._receiver.submit(body, parsed.extraction)
        except QueueFullError as exc:
            metrics.record_request(TRANSPORT, "queue_full")
            _retryable_abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except QueueClosedError as exc:
            metrics.record_request(TRANSPORT, "unavailable")
            _retryable_abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        try:
            result = future.result(timeout=COMMIT_WAIT_SECONDS)
        except StoreBusyError as exc:
            metrics.record_request(TRANSPORT, "store_busy")
            _retryable_abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        except TimeoutError:
            metrics.record_request(TRANSPORT, "unavailable")
            _retryable_abort(context, grpc.StatusCode.UNAVAILABLE, "commit did not finish in time")
        except Exception as exc:
            metrics.record_request(TRANSPORT, "error")
            logger.error("export failed: %s", type(exc).__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"ingestion failed: {type(exc).__name__}")
        outcome = self._receiver.outcome(result, TRANSPORT)
        response = ExportTraceServiceResponse()
        if outcome.rejected_spans:
            response.partial_success.rejected_spans = outcome.rejected_spans
            response.partial_success.error_message = outcome.error_message
        return response


def _trace_service_handler(servicer: TraceServiceServicer) -> grpc.GenericRpcHandler:
    """``TraceService/Export`` with the request left as bytes (no deserializer)."""
    return grpc.method_handlers_generic_handler(
        _SERVICE_NAME,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                servicer.Export,
                request_deserializer=None,
                response_serializer=ExportTraceServiceResponse.SerializeToString,
            )
        },
    )


class _AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Rejects calls whose ``authorization`` metadata is not the bearer token."""

    def __init__(self, auth: BearerAuth) -> None:
        self._auth = auth

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        header = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                header = value
                break
        if self._auth.check(header):
            return continuation(handler_call_details)
        message = "missing bearer token" if header is None else "invalid bearer token"

        def deny(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return grpc.unary_unary_rpc_method_handler(deny)


def start_grpc_server(
    receiver: TraceReceiver,
    address: str,
    *,
    max_message_size: int,
    workers: int,
    auth: BearerAuth | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> tuple[grpc.Server, int]:
    """Start the server; returns it and the bound port (useful with port 0)."""
    interceptors = [_AuthInterceptor(auth)] if auth is not None else []
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modeltrace-grpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=workers * 4,
    )
    server.add_generic_rpc_handlers((_trace_service_handler(TraceServiceServicer(receiver)),))
    try:
        if tls_cert is not None and tls_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(tls_key.read_bytes(), tls_cert.read_bytes())]
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises instead of returning 0 on bind failures
        port = 0
    if port == 0:
        raise OSError(
            f"cannot bind the gRPC port {address} (address already in use or not available)"
        )
    server.start()
    return server, port
