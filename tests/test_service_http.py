"""The service over real HTTP and gRPC: bad input table, probes, auth, TLS, overload signals.

Each server is ``modeltrace serve`` as a subprocess on free 127.0.0.1 ports;
clients are httpx, grpcio and the OTLP exporters of opentelemetry-exporter-otlp.
"""

from __future__ import annotations

import gzip
import json
import os
import ssl
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from modeltrace import semconv
from service_harness import ServiceProcess

pytestmark = pytest.mark.e2e

CLIENT = str(Path(__file__).with_name("service_client.py"))
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def _request(model: str = "churn", version: str = "1", spans: int = 1) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        span = scope.spans.add(
            name=semconv.PREDICT_SPAN_PREFIX + model,
            trace_id=(i + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            start_time_unix_nano=1,
            end_time_unix_nano=2,
        )
        for key, value in ((semconv.MODEL_NAME, model), (semconv.MODEL_VERSION, version)):
            attribute = span.attributes.add(key=key)
            attribute.value.string_value = value
        feature = span.attributes.add(key=semconv.FEATURE_PREFIX + "x0")
        feature.value.double_value = 0.5
    return request


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    workdir = tmp_path_factory.mktemp("service_http")
    with ServiceProcess(workdir, "--max-body-size", "1MiB", "--queue-size", "8MiB") as proc:
        yield proc


def _status_message(response: httpx.Response) -> str:
    if response.headers["content-type"].startswith("application/x-protobuf"):
        return status_pb2.Status.FromString(response.content).message
    body = response.json()
    return str(body.get("message") or body.get("error"))


def _gzip_bomb(decompressed: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(decompressed >> 20)]
    return b"".join(parts) + compressor.flush()


BAD_INPUT = [
    # (id, method, path, headers, body, status, message fragment)
    (
        "malformed-protobuf",
        "POST",
        "/v1/traces",
        PROTOBUF,
        b"\x0a\xff\xff\xff\xff\x0f garbage",
        400,
        "malformed protobuf ExportTraceServiceRequest",
    ),
    ("malformed-json", "POST", "/v1/traces", JSON, b"{oops", 400, "malformed JSON at line 1"),
    (
        "json-bad-trace-id",
        "POST",
        "/v1/traces",
        JSON,
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}',
        400,
        "resourceSpans[0].scopeSpans[0].spans[0].traceId is not hex",
    ),
    (
        "unsupported-media-type",
        "POST",
        "/v1/traces",
        {"Content-Type": "text/plain"},
        b"hello",
        415,
        "unsupported Content-Type 'text/plain'",
    ),
    (
        "unsupported-content-encoding",
        "POST",
        "/v1/traces",
        {**PROTOBUF, "Content-Encoding": "br"},
        b"xx",
        415,
        "unsupported Content-Encoding 'br'",
    ),
    (
        "body-over-limit",
        "POST",
        "/v1/traces",
        PROTOBUF,
        b"\x00" * (2 << 20),
        413,
        "exceeds the limit",
    ),
    (
        "gzip-bomb",
        "POST",
        "/v1/traces",
        {**PROTOBUF, "Content-Encoding": "gzip"},
        _gzip_bomb(64 << 20),
        413,
        "decompressed body exceeds the limit of 1048576 bytes",
    ),
    (
        "corrupt-gzip",
        "POST",
        "/v1/traces",
        {**PROTOBUF, "Content-Encoding": "gzip"},
        b"\x1f\x8b\x08\x00garbage-garbage",
        400,
        "gzip body",
    ),
    (
        "unknown-model",
        "GET",
        "/api/v1/models/no-such-model/versions/1/drift",
        {},
        b"",
        404,
        "no-such-model",
    ),
    (
        "reference-not-json",
        "PUT",
        "/api/v1/models/churn/versions/1/reference",
        JSON,
        b"{not json",
        400,
        "reference is not valid JSON",
    ),
    (
        "reference-wrong-shape",
        "PUT",
        "/api/v1/models/churn/versions/1/reference",
        JSON,
        b'{"features": 42}',
        400,
        "invalid reference",
    ),
    ("unknown-route", "GET", "/v2/whatever", {}, b"", 404, "Not Found"),
    ("wrong-method", "GET", "/v1/traces", {}, b"", 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "fragment"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_answers_precisely_and_the_service_stays_up(
    service: ServiceProcess,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    fragment: str,
) -> None:
    with service.client() as client:
        response = client.request(method, path, headers=headers, content=body)
        assert response.status_code == status, response.text
        assert fragment in _status_message(response)
        assert client.get("/healthz").status_code == 200
        ok = client.post("/v1/traces", headers=PROTOBUF, content=_request().SerializeToString())
        assert ok.status_code == 200


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (tag and length are single-byte varints or not)."""
    from google.protobuf.internal.encoder import _VarintBytes

    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def _with_headers(model: str) -> ExportTraceServiceRequest:
    """``_request`` with the resource attributes and scope an OTel SDK sends."""
    request = _request(model=model, spans=4)
    resource_spans = request.resource_spans[0]
    for key, value in (("service.name", "scoring"), ("telemetry.sdk.language", "python")):
        resource_spans.resource.attributes.add(key=key).value.string_value = value
    resource_spans.schema_url = "https://opentelemetry.io/schemas/1.21.0"
    scope = resource_spans.scope_spans[0].scope
    scope.name, scope.version = "modeltrace", "1.0"
    scope.attributes.add(key="scope.kind").value.int_value = 7
    return request


def _spliced(request: ExportTraceServiceRequest, resource: bytes, scope: bytes) -> bytes:
    """The request's bytes with its (only) Resource and InstrumentationScope replaced by
    the given bytes, every enclosing length recomputed: the spans are the real ones."""
    resource_spans = request.resource_spans[0]
    scope_spans = resource_spans.scope_spans[0]
    spans = b"".join(_field(2, span.SerializeToString()) for span in scope_spans.spans)
    inner = _field(1, resource) + _field(2, _field(1, scope) + spans)
    inner += _field(3, resource_spans.schema_url.encode())
    return _field(1, inner)


def _header_corruptions() -> list[tuple[str, bytes, bytes, str]]:
    request = _with_headers("m")
    resource = request.resource_spans[0].resource.SerializeToString()
    scope = request.resource_spans[0].scope_spans[0].scope.SerializeToString()
    assert resource[0] == 0x0A and scope[0] == 0x0A and resource[1] < 0x80 and scope[1] < 0x80
    too_long = bytes([resource[0], 0x7F]) + resource[2:]
    name_too_long = bytes([scope[0], 0x7F]) + scope[2:]
    return [
        # (id, resource bytes, scope bytes, message fragment)
        (
            "resource-attribute-runs-past-resource",
            too_long,
            scope,
            "resource_spans[0].resource.attributes[0]: length 127 at byte",
        ),
        (
            "resource-truncated-varint",
            resource + b"\x10\x80",  # dropped_attributes_count, varint cut by the block end
            scope,
            "resource_spans[0].resource.dropped_attributes_count: truncated varint (value)",
        ),
        (
            "resource-attribute-truncated-length",
            resource + b"\x0a\xff",  # another attribute whose length is cut
            scope,
            "resource_spans[0].resource.attributes[2]: truncated varint (length)",
        ),
        (
            "scope-name-runs-past-scope",
            resource,
            name_too_long,
            "resource_spans[0].scope_spans[0].scope.name: length 127 at byte",
        ),
        (
            "scope-truncated-tag",
            resource,
            scope + b"\xa8",  # a field tag whose varint is cut by the block end
            "resource_spans[0].scope_spans[0].scope: truncated varint (field tag)",
        ),
        (
            "scope-name-not-utf8",
            resource,
            _field(1, b"model\xfftrace") + scope[2 + scope[1] :],
            "resource_spans[0].scope_spans[0].scope.name: string at byte",
        ),
    ]


def _spans_of(client: httpx.Client, model: str) -> int:
    models = client.get("/api/v1/models").json()
    return sum(v["spans"] for m in models if m["model"] == model for v in m["versions"])


@pytest.mark.parametrize(
    ("resource", "scope", "fragment"),
    [case[1:] for case in _header_corruptions()],
    ids=[case[0] for case in _header_corruptions()],
)
def test_malformed_resource_or_scope_is_rejected_whole_on_http_and_grpc(
    service: ServiceProcess, resource: bytes, scope: bytes, fragment: str, request: Any
) -> None:
    model = "hdr-" + request.node.callspec.id
    real = _with_headers(model)
    original = real.resource_spans[0]
    good = _spliced(
        real,
        original.resource.SerializeToString(),
        original.scope_spans[0].scope.SerializeToString(),
    )
    assert ExportTraceServiceRequest.FromString(good) == real  # the splicing is exact
    bad = _spliced(real, resource, scope)
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(bad)
    with service.client() as client:
        response = client.post("/v1/traces", headers=PROTOBUF, content=bad)
        assert response.status_code == 400, response.text
        message = _status_message(response)
        assert message.startswith("malformed protobuf ExportTraceServiceRequest: ")
        assert fragment in message
        assert client.get("/healthz").status_code == 200
        with grpc.insecure_channel(service.grpc_target) as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request_serializer=None,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
            with pytest.raises(grpc.RpcError) as info:
                export(bad, timeout=10)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in (info.value.details() or "")
            assert _spans_of(client, model) == 0  # nothing of the rejected bodies was applied
            assert client.post("/v1/traces", headers=PROTOBUF, content=good).status_code == 200
            export(good, timeout=10)
        assert _spans_of(client, model) == 8  # both acknowledged copies, nothing else


def test_valid_exports_in_every_encoding_are_acknowledged(service: ServiceProcess) -> None:
    request = _request(spans=3)
    as_json = json.dumps(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "0af7651916cd43dd8448eb211c80319c",
                                    "spanId": "b7ad6b7169203331",
                                    "name": "predict churn",
                                    "kind": 1,
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000000100000000",
                                    "attributes": [
                                        {"key": "ml.model.name", "value": {"stringValue": "churn"}},
                                        {"key": "ml.model.version", "value": {"stringValue": "1"}},
                                        {"key": "ml.feature.x0", "value": {"doubleValue": 1.5}},
                                    ],
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    ).encode()
    with service.client() as client:
        plain = client.post("/v1/traces", headers=PROTOBUF, content=request.SerializeToString())
        assert plain.status_code == 200
        assert plain.headers["content-type"].startswith("application/x-protobuf")
        assert not ExportTraceServiceResponse.FromString(plain.content).HasField("partial_success")
        zipped = client.post(
            "/v1/traces",
            headers={**PROTOBUF, "Content-Encoding": "gzip"},
            content=gzip.compress(request.SerializeToString()),
        )
        assert zipped.status_code == 200
        answer = client.post("/v1/traces", headers=JSON, content=as_json)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert "partialSuccess" not in answer.json()
        empty = client.post("/v1/traces", headers=JSON, content=b"{}")
        assert empty.status_code == 200 and empty.json() == {}


def test_partial_success_reports_rejected_spans_in_the_request_encoding(
    service: ServiceProcess,
) -> None:
    request = _request(spans=3)
    request.resource_spans[0].scope_spans[0].spans[1].end_time_unix_nano = 0
    with service.client() as client:
        response = client.post("/v1/traces", headers=PROTOBUF, content=request.SerializeToString())
        assert response.status_code == 200
        answer = ExportTraceServiceResponse.FromString(response.content)
        assert answer.partial_success.rejected_spans == 1
        assert "missing end time" in answer.partial_success.error_message
        with grpc.insecure_channel(service.grpc_target) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            answer = stub.Export(request, timeout=10)
        assert answer.partial_success.rejected_spans == 1
        metrics = client.get("/metrics").text
    rejected = [
        line
        for line in metrics.splitlines()
        if line.startswith("modeltrace_service_spans_rejected_total")
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in rejected) >= 2


def test_probes_and_metrics(service: ServiceProcess) -> None:
    with service.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "modeltrace_service_requests_total" in metrics.text
        assert "modeltrace_service_queue_depth" in metrics.text
        assert "modeltrace_service_commit_duration_seconds_bucket" in metrics.text


def test_structured_logs_and_no_feature_values(service: ServiceProcess) -> None:
    marker = 123456.789
    request = _request()
    request.resource_spans[0].scope_spans[0].spans[0].attributes[2].value.double_value = marker
    with service.client() as client:
        client.post("/v1/traces", headers=PROTOBUF, content=request.SerializeToString())
    records = service.log_records()
    assert any(r.get("message") == "modeltrace serve ready" for r in records)
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
    assert str(marker) not in service.log_text()


# -- auth --------------------------------------------------------------------


def test_bearer_token_on_http_and_grpc(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path, token="s3cret-token") as proc:
        body = _request().SerializeToString()
        open_probe = httpx.get(f"{proc.url}/healthz")
        assert open_probe.status_code == 200
        assert httpx.get(f"{proc.url}/readyz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            for method, path in (
                ("POST", "/v1/traces"),
                ("GET", "/api/v1/models"),
                ("GET", "/metrics"),
                ("PUT", "/api/v1/models/m/versions/1/reference"),
            ):
                response = httpx.request(
                    method, f"{proc.url}{path}", headers={**PROTOBUF, **headers}, content=body
                )
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"].startswith("Bearer")
        good = {"Authorization": "Bearer s3cret-token"}
        assert httpx.post(f"{proc.url}/v1/traces", headers={**PROTOBUF, **good}, content=body)
        assert httpx.get(f"{proc.url}/api/v1/models", headers=good).status_code == 200

        with grpc.insecure_channel(proc.grpc_target) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            for metadata in (None, [("authorization", "Bearer nope")]):
                with pytest.raises(grpc.RpcError) as info:
                    stub.Export(_request(), metadata=metadata, timeout=10)
                assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            stub.Export(_request(), metadata=[("authorization", "Bearer s3cret-token")], timeout=10)

        # The real gRPC exporter, with and without the token.
        out = tmp_path / "grpc.jsonl"
        for token, expected in ((None, "failed"), ("s3cret-token", "acked")):
            args = ["--token", token] if token else []
            subprocess.run(
                [
                    sys.executable,
                    CLIENT,
                    "--endpoint",
                    proc.grpc_target,
                    "--protocol",
                    "grpc",
                    "--spans",
                    "5",
                    "--batch",
                    "5",
                    "--timeout",
                    "3",
                    "--out",
                    str(out),
                    *args,
                ],
                check=True,
                timeout=60,
            )
            last = json.loads(out.read_text().splitlines()[-1])
            assert expected in last, last


# -- TLS ---------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def test_tls_on_http_and_grpc(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    proc = ServiceProcess(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), scheme="https")
    with proc:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
            response = client.post(
                f"{proc.url}/v1/traces", headers=PROTOBUF, content=_request().SerializeToString()
            )
            assert response.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{proc.http_port}/healthz", timeout=5)
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(proc.grpc_target, credentials) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            answer = stub.Export(_request(spans=2), timeout=10)
            assert not answer.HasField("partial_success")
        # The real OTLP exporters over TLS, trusting the service's certificate. requests
        # lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the exporter's own CA file.
        out = tmp_path / "tls.jsonl"
        env = {k: v for k, v in os.environ.items() if k not in _CA_BUNDLE_VARIABLES}
        for protocol, endpoint in (("http", f"{proc.url}/v1/traces"), ("grpc", proc.grpc_target)):
            subprocess.run(
                [
                    sys.executable,
                    CLIENT,
                    "--endpoint",
                    endpoint,
                    "--protocol",
                    protocol,
                    "--spans",
                    "4",
                    "--batch",
                    "4",
                    "--certificate",
                    str(cert),
                    "--out",
                    str(out),
                ],
                check=True,
                timeout=60,
                env=env,
            )
            assert json.loads(out.read_text().splitlines()[-1])["acked"] == 4


# -- graceful shutdown ---------------------------------------------------------


def test_sigterm_drains_and_exits_cleanly(tmp_path: Path) -> None:
    proc = ServiceProcess(tmp_path).start()
    try:
        rng = np.random.default_rng(0)
        with proc.client() as client:
            for _ in range(5):
                spans = int(rng.integers(1, 20))
                response = client.post(
                    "/v1/traces",
                    headers=PROTOBUF,
                    content=_request(spans=spans).SerializeToString(),
                )
                assert response.status_code == 200
        assert proc.terminate() == 0
        messages = [r["message"] for r in proc.log_records()]
        assert "shutting down: draining the ingestion queue" in messages
        assert messages.index("stopped") > messages.index(
            "shutting down: draining the ingestion queue"
        )
    finally:
        proc.stop()
