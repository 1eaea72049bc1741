"""OTLP trace requests and responses in their two encodings: binary protobuf and OTLP/JSON.

OTLP/JSON differs from the canonical protobuf JSON mapping in one way that
matters here: trace and span ids are hex strings, not base64 (OTLP spec,
"JSON Protobuf Encoding"). Field names are lowerCamelCase, enums integers,
64-bit integers numbers or decimal strings; unknown fields are ignored. All
problems raise :class:`OtlpDecodeError` with a message naming the problem.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from modeltrace.drift.extract import Extraction
from modeltrace.drift.otlp_fast import extract_request


class Encoding(enum.Enum):
    """The two OTLP/HTTP encodings, by their content type."""

    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


class OtlpDecodeError(ValueError):
    """A request body is not a valid OTLP trace export request."""


class UnsupportedMediaTypeError(ValueError):
    """The Content-Type (or Content-Encoding) is not one the service understands."""


_PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
_JSON_TYPES = frozenset({"application/json"})


def negotiate_encoding(content_type: str | None) -> Encoding:
    """Map a Content-Type header to an encoding (parameters such as charset are ignored)."""
    if not content_type:
        raise UnsupportedMediaTypeError(
            "missing Content-Type: use application/x-protobuf or application/json"
        )
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _PROTOBUF_TYPES:
        return Encoding.PROTOBUF
    if media in _JSON_TYPES:
        return Encoding.JSON
    raise UnsupportedMediaTypeError(
        f"unsupported Content-Type {media!r}: use application/x-protobuf or application/json"
    )


def decode_request(body: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """Parse an export request body; raises :class:`OtlpDecodeError` naming the problem."""
    if encoding is Encoding.PROTOBUF:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            detail = describe_malformed(body) or str(exc)
            raise OtlpDecodeError(
                f"malformed protobuf ExportTraceServiceRequest: {detail}"
            ) from None
        return request
    return decode_json_request(body)


def decode_json_request(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON export request (hex ids) into the protobuf message."""
    try:
        document = json.loads(body)
    except UnicodeDecodeError as exc:
        raise OtlpDecodeError(f"malformed JSON: body is not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise OtlpDecodeError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(document, dict):
        raise OtlpDecodeError("malformed OTLP/JSON: the body must be a JSON object")
    _hex_ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpDecodeError(f"malformed OTLP/JSON: {exc}") from None
    return request


_ID_LENGTHS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}
_ID_ALIASES = {"trace_id": "traceId", "span_id": "spanId", "parent_span_id": "parentSpanId"}


def _list_at(parent: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = parent.get(camel, parent.get(snake, []))
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpDecodeError(f"malformed OTLP/JSON: {where}.{camel} must be an array")
    return value


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """Rewrite hex trace/span ids in place into the base64 that json_format expects."""
    for r, resource_spans in enumerate(
        _list_at(document, "resourceSpans", "resource_spans", "request")
    ):
        where_r = f"resourceSpans[{r}]"
        if not isinstance(resource_spans, dict):
            raise OtlpDecodeError(f"malformed OTLP/JSON: {where_r} must be an object")
        for s, scope_spans in enumerate(
            _list_at(resource_spans, "scopeSpans", "scope_spans", where_r)
        ):
            where_s = f"{where_r}.scopeSpans[{s}]"
            if not isinstance(scope_spans, dict):
                raise OtlpDecodeError(f"malformed OTLP/JSON: {where_s} must be an object")
            for i, span in enumerate(_list_at(scope_spans, "spans", "spans", where_s)):
                where = f"{where_s}.spans[{i}]"
                if not isinstance(span, dict):
                    raise OtlpDecodeError(f"malformed OTLP/JSON: {where} must be an object")
                _convert_ids(span, where)
                for k, link in enumerate(_list_at(span, "links", "links", where)):
                    if not isinstance(link, dict):
                        raise OtlpDecodeError(
                            f"malformed OTLP/JSON: {where}.links[{k}] must be an object"
                        )
                    _convert_ids(link, f"{where}.links[{k}]")


def _convert_ids(obj: dict[str, Any], where: str) -> None:
    for snake, camel in _ID_ALIASES.items():
        if snake in obj and camel not in obj:
            obj[camel] = obj.pop(snake)
    for key, size in _ID_LENGTHS.items():
        value = obj.get(key)
        if value is None or value == "":
            obj.pop(key, None)
            continue
        if not isinstance(value, str):
            raise OtlpDecodeError(f"malformed OTLP/JSON: {where}.{key} must be a hex string")
        try:
            raw = binascii.unhexlify(value)
        except (binascii.Error, ValueError):
            raise OtlpDecodeError(
                f"malformed OTLP/JSON: {where}.{key} is not hex: {value[:40]!r}"
            ) from None
        if len(raw) != size:
            raise OtlpDecodeError(
                f"malformed OTLP/JSON: {where}.{key} must be {2 * size} hex digits, "
                f"got {len(value)}"
            )
        obj[key] = base64.b64encode(raw).decode("ascii")


# --- naming the problem in a malformed protobuf body ---------------------------------


class _Malformed(Exception):
    """Internal: the first problem found, as the message to answer with."""


def _wire_varint(data: bytes, pos: int, end: int, what: str, path: str) -> tuple[int, int]:
    start, result, shift = pos, 0, 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    problem = "overlong" if shift >= 70 else "truncated"
    raise _Malformed(f"{path}: {problem} varint ({what}) at byte {start}")


_WIRE_TYPES = {
    FieldDescriptor.TYPE_DOUBLE: 1,
    FieldDescriptor.TYPE_FIXED64: 1,
    FieldDescriptor.TYPE_SFIXED64: 1,
    FieldDescriptor.TYPE_FLOAT: 5,
    FieldDescriptor.TYPE_FIXED32: 5,
    FieldDescriptor.TYPE_SFIXED32: 5,
    FieldDescriptor.TYPE_STRING: 2,
    FieldDescriptor.TYPE_BYTES: 2,
    FieldDescriptor.TYPE_MESSAGE: 2,
}


def _walk(
    data: bytes, start: int, end: int, descriptor: Descriptor | None, path: str, group: int = 0
) -> int:
    """Check the wire format of one message (``descriptor`` None: the unknown group of
    field ``group``, structure only); returns where it ends or raises ``_Malformed``."""
    counts: dict[int, int] = {}
    pos = start
    while pos < end:
        at = pos
        tag, pos = _wire_varint(data, pos, end, "field tag", path or "request")
        number, wire_type = tag >> 3, tag & 7
        field = descriptor.fields_by_number.get(number) if descriptor is not None else None
        name = field.name if field is not None else f"<unknown field {number}>"
        if field is not None and field.is_repeated:
            name = f"{name}[{counts.get(number, 0)}]"
            counts[number] = counts.get(number, 0) + 1
        where = f"{path}.{name}" if path else name
        if number == 0:
            raise _Malformed(f"{path or 'request'}: field number 0 at byte {at}")
        if wire_type == 0:
            pos = _wire_varint(data, pos, end, "value", where)[1]
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            if pos + size > end:
                raise _Malformed(
                    f"{where}: {size}-byte value at byte {pos} runs past the end of "
                    f"{path or 'the request'} (byte {end})"
                )
            pos += size
        elif wire_type == 2:
            length, pos = _wire_varint(data, pos, end, "length", where)
            stop = pos + length
            if stop > end:
                raise _Malformed(
                    f"{where}: length {length} at byte {pos} runs past the end of "
                    f"{path or 'the request'} (byte {end})"
                )
            expected = None if field is None else _WIRE_TYPES.get(field.type, 0)
            if field is not None and expected == 2:
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    _walk(data, pos, stop, field.message_type, where)
                elif field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        data[pos:stop].decode("utf-8")
                    except UnicodeDecodeError:
                        raise _Malformed(
                            f"{where}: string at byte {pos} is not valid UTF-8"
                        ) from None
            pos = stop
        elif wire_type == 3:
            pos = _walk(data, pos, end, None, where, number)
        elif wire_type == 4:
            if descriptor is None and number == group:
                return pos
            raise _Malformed(f"{where}: unexpected end-group tag at byte {at}")
        else:
            raise _Malformed(f"{where}: invalid wire type {wire_type} at byte {at}")
    if descriptor is None and path:
        raise _Malformed(f"{path}: group not closed before byte {end}")
    return pos


def describe_malformed(body: bytes) -> str | None:
    """Where and what the first wire-format problem of a protobuf export request is
    (e.g. ``resource_spans[0].resource.attributes[1]: length 300 at byte 42 runs past
    the end of resource_spans[0].resource (byte 80)``); ``None`` if none is found."""
    try:
        _walk(body, 0, len(body), ExportTraceServiceRequest.DESCRIPTOR, "")
    except _Malformed as exc:
        return str(exc)
    except RecursionError:
        return "nesting too deep"
    return None


@dataclass(frozen=True, slots=True)
class ParsedExport:
    """A validated export request: its span count and, when the fast columnar
    extractor took it, its ``Extraction`` (handed to the writer so it need not
    extract again)."""

    spans: int
    extraction: Extraction | None


def parse_protobuf_export(body: bytes) -> ParsedExport:
    """Validate and count a protobuf export request with one pass of the fast
    extractor; when it declines, a full protobuf parse validates the body instead
    (raising :class:`OtlpDecodeError` naming the problem)."""
    extraction = extract_request(body)
    if extraction is not None:
        return ParsedExport(
            extraction.accepted + extraction.rejected + extraction.ignored, extraction
        )
    return ParsedExport(count_spans(decode_request(body, Encoding.PROTOBUF)), None)


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(
        len(scope_spans.spans)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
    )


def encode_response(encoding: Encoding, rejected_spans: int = 0, error_message: str = "") -> bytes:
    """An ExportTraceServiceResponse; partial_success is set only when something was rejected."""
    response = ExportTraceServiceResponse()
    if rejected_spans or error_message:
        response.partial_success.rejected_spans = rejected_spans
        response.partial_success.error_message = error_message
    if encoding is Encoding.PROTOBUF:
        return response.SerializeToString()
    return json.dumps(
        json_format.MessageToDict(response, preserving_proto_field_name=False)
    ).encode()


def encode_status(encoding: Encoding, grpc_code: int, message: str) -> bytes:
    """A google.rpc.Status body, the OTLP/HTTP error response, in the request's encoding."""
    if encoding is Encoding.PROTOBUF:
        return status_pb2.Status(code=grpc_code, message=message).SerializeToString()
    return json.dumps({"code": grpc_code, "message": message}).encode()
