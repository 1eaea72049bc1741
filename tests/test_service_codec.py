"""OTLP encodings of the service: OTLP/JSON (hex ids, enums as integers) and protobuf, responses.

Requests are built from real SDK spans with the OTLP exporter's own encoder
(``encode_spans``); the JSON form is produced independently in the test by the
rules of the OTLP spec (lowerCamelCase, hex ids) and must decode back to the
very same protobuf message.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind

from drift_spans import otlp_request
from modeltrace import semconv
from modeltrace.drift.service.otlp_codec import (
    Encoding,
    OtlpDecodeError,
    UnsupportedMediaTypeError,
    count_spans,
    decode_request,
    encode_response,
    encode_status,
    negotiate_encoding,
    parse_protobuf_export,
)


def _sdk_request() -> ExportTraceServiceRequest:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("http") as parent:
        link = Link(parent.get_span_context(), {"why": "batch"})
        with tracer.start_as_current_span(
            "predict churn",
            kind=SpanKind.INTERNAL,
            links=[link],
            attributes={
                semconv.MODEL_NAME: "churn",
                semconv.MODEL_VERSION: "3",
                semconv.SAMPLE_RATE: 0.5,
                semconv.SAMPLE_INDICES: [0, 2],
                semconv.FEATURE_PREFIX + "age": [31.5, 47.0],
                semconv.FEATURE_PREFIX + "plan": ["basic", "pro"],
                semconv.BATCH_SIZE: 3,
            },
        ) as span:
            span.add_event("note", {"k": True})
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def _to_otlp_json(message: ExportTraceServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON form per the spec, built independently of the code under test."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hexify(value)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(document)
    return document


def test_json_request_decodes_to_the_same_protobuf_as_the_sdk_encoder() -> None:
    expected = _sdk_request()
    document = _to_otlp_json(expected)
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert isinstance(span["kind"], int)
    decoded = decode_request(json.dumps(document).encode(), Encoding.JSON)
    assert decoded == expected
    assert count_spans(decoded) == 2


def test_protobuf_request_round_trips() -> None:
    expected = _sdk_request()
    decoded = decode_request(expected.SerializeToString(), Encoding.PROTOBUF)
    assert decoded == expected


def test_handwritten_otlp_json_with_string_int64_and_unknown_fields() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "modeltrace"},
                        "futureField": {"ignored": True},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "",
                                "name": "predict churn",
                                "kind": 1,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "attributes": [
                                    {"key": "ml.batch.size", "value": {"intValue": "8"}},
                                    {
                                        "key": "ml.feature.age",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"doubleValue": 1.5}, {"intValue": 2}]
                                            }
                                        },
                                    },
                                ],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    request = decode_request(json.dumps(body).encode(), Encoding.JSON)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert span.span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert span.parent_span_id == b""
    assert span.kind == 1 and span.status.code == 2
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.end_time_unix_nano == 1544712661000000000
    assert span.attributes[0].value.int_value == 8
    values = span.attributes[1].value.array_value.values
    assert values[0].double_value == 1.5 and values[1].int_value == 2


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed JSON at line 1 column 2"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'{"resourceSpans": {"a": 1}}', "resourceSpans must be an array"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "resourceSpans[0].scopeSpans[0].spans[0].traceId is not hex",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abcd"}]}]}]}',
            "spanId must be 16 hex digits, got 4",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}',
            "malformed OTLP/JSON",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": [1]}]}]}]}',
            "malformed OTLP/JSON",
        ),
    ],
)
def test_bad_json_names_the_problem(body: bytes, fragment: str) -> None:
    with pytest.raises(OtlpDecodeError) as info:
        decode_request(body, Encoding.JSON)
    assert fragment in str(info.value)


def test_bad_protobuf_names_the_problem() -> None:
    with pytest.raises(OtlpDecodeError, match="malformed protobuf ExportTraceServiceRequest"):
        decode_request(b"\x0a\xff\xff\xff\xff\x0f garbage", Encoding.PROTOBUF)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/x-protobuf", Encoding.PROTOBUF),
        ("application/protobuf", Encoding.PROTOBUF),
        ("Application/JSON; charset=utf-8", Encoding.JSON),
    ],
)
def test_content_types(header: str, expected: Encoding) -> None:
    assert negotiate_encoding(header) is expected


@pytest.mark.parametrize("header", [None, "", "text/plain", "application/xml"])
def test_unsupported_content_types(header: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="application/x-protobuf"):
        negotiate_encoding(header)


def test_responses_in_both_encodings() -> None:
    ok = ExportTraceServiceResponse.FromString(encode_response(Encoding.PROTOBUF))
    assert not ok.HasField("partial_success")
    partial = ExportTraceServiceResponse.FromString(
        encode_response(Encoding.PROTOBUF, 3, "3 spans without ml.model.name")
    )
    assert partial.partial_success.rejected_spans == 3
    assert partial.partial_success.error_message == "3 spans without ml.model.name"
    as_json = json.loads(encode_response(Encoding.JSON, 2, "bad"))
    assert as_json == {"partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad"}}
    assert json.loads(encode_response(Encoding.JSON)) == {}
    status = status_pb2.Status.FromString(encode_status(Encoding.PROTOBUF, 3, "nope"))
    assert (status.code, status.message) == (3, "nope")
    assert json.loads(encode_status(Encoding.JSON, 8, "full")) == {"code": 8, "message": "full"}


def _mixed_request() -> ExportTraceServiceRequest:
    """Prediction spans of one layout (the fast extractor's case), a span without
    ML attributes and a prediction span of an unusual layout (an int feature)."""
    spans: list[tuple[str, dict[str, Any]]] = [
        (
            "predict churn",
            {
                semconv.MODEL_NAME: "churn",
                semconv.MODEL_VERSION: "3",
                semconv.FEATURE_PREFIX + "age": [float(i), float(i) + 0.5],
                semconv.FEATURE_PREFIX + "plan": ["basic", "pro"],
            },
        )
        for i in range(40)
    ]
    spans.append(("GET /", {"http.method": "GET"}))
    spans.append(("predict churn", {semconv.MODEL_NAME: "other", semconv.FEATURE_PREFIX + "n": 3}))
    return otlp_request(spans)


def test_parse_once_counts_like_a_full_parse_and_keeps_the_extraction() -> None:
    for request in (_mixed_request(), _sdk_request()):
        body = request.SerializeToString()
        parsed = parse_protobuf_export(body)
        assert parsed.spans == count_spans(request)
    fast = parse_protobuf_export(_mixed_request().SerializeToString())
    assert fast.extraction is not None
    assert fast.extraction.accepted == 41 and fast.extraction.ignored == 1
    assert fast.extraction.batches[("churn", "3")].rows == 80
    assert parse_protobuf_export(b"").spans == 0


def test_parse_once_falls_back_to_the_full_parse_for_malformed_bodies() -> None:
    with pytest.raises(OtlpDecodeError, match="malformed protobuf ExportTraceServiceRequest"):
        parse_protobuf_export(b"\x0a\xff\xff\xff\xff\x0f garbage")
    truncated = _mixed_request().SerializeToString()[:-7]
    with pytest.raises(OtlpDecodeError, match="malformed protobuf"):
        parse_protobuf_export(truncated)
