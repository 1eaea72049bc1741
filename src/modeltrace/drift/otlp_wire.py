"""Fast decoding of OTLP trace requests for drift extraction.

Parsing an ``ExportTraceServiceRequest`` with the generated classes creates one
Python-visible message per attribute value (an ``AnyValue`` per array element),
which dominates ingestion cost. This module parses the same bytes with a
*wire-compatible* reduced schema: only the span fields drift needs (trace id,
name, start and end time, status code, attributes) are declared, and each
attribute value is kept as its raw ``AnyValue`` bytes. The helpers below decode
those bytes: scalars by hand, arrays of doubles and of small integers by strided
byte checks (exact, see ``double_array_count``), anything else through the real
``AnyValue`` and ``ArrayValue`` classes.

Undeclared fields are skipped by protobuf as unknown fields, so any valid OTLP
request parses. Values that are not scalars or arrays of scalars (key-value
lists, bytes, nested arrays) raise ``UnsupportedValueError``.
"""

from __future__ import annotations

import struct
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue

__all__ = [
    "DecodeError",
    "UnsupportedValueError",
    "array_bytes",
    "decode_array_slow",
    "decode_scalar",
    "double_array_count",
    "lite_request_class",
    "small_int_array_count",
]

_PACKAGE = "modeltrace.otlp_lite"

# Raw AnyValue tags (field number << 3 | wire type).
TAG_STRING = 0x0A  # string_value = 1, LEN
TAG_BOOL = 0x10  # bool_value = 2, VARINT
TAG_INT = 0x18  # int_value = 3, VARINT
TAG_DOUBLE = 0x21  # double_value = 4, I64
TAG_ARRAY = 0x2A  # array_value = 5, LEN

# One ArrayValue element holding a double: values(1, LEN) len 9, double tag, 8 bytes.
_DOUBLE_ELEMENT = 11
# One ArrayValue element holding an int < 128: values(1, LEN) len 2, int tag, 1 byte.
_SMALL_INT_ELEMENT = 4

_DOUBLE = struct.Struct("<d")


class UnsupportedValueError(ValueError):
    """An attribute value that is not a scalar or an array of scalars."""


def _build_lite_request_class() -> type[Message]:
    field = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    proto = descriptor_pb2.FileDescriptorProto(
        name="modeltrace_otlp_lite.proto", package=_PACKAGE, syntax="proto3"
    )

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]]) -> None:
        msg = proto.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name is not None:
                f.type_name = f".{_PACKAGE}.{type_name}"

    message(
        "KeyValue",
        [
            ("key", 1, field.TYPE_STRING, optional, None),
            ("value", 2, field.TYPE_BYTES, optional, None),
        ],
    )
    # Status.code is an enum on the wire (a varint): int32 reads it the same way.
    message("Status", [("code", 3, field.TYPE_INT32, optional, None)])
    message(
        "Span",
        [
            ("trace_id", 1, field.TYPE_BYTES, optional, None),
            ("name", 5, field.TYPE_STRING, optional, None),
            ("start_time_unix_nano", 7, field.TYPE_FIXED64, optional, None),
            ("end_time_unix_nano", 8, field.TYPE_FIXED64, optional, None),
            ("attributes", 9, field.TYPE_MESSAGE, repeated, "KeyValue"),
            ("status", 15, field.TYPE_MESSAGE, optional, "Status"),
        ],
    )
    message("ScopeSpans", [("spans", 2, field.TYPE_MESSAGE, repeated, "Span")])
    message("ResourceSpans", [("scope_spans", 2, field.TYPE_MESSAGE, repeated, "ScopeSpans")])
    message("Request", [("resource_spans", 1, field.TYPE_MESSAGE, repeated, "ResourceSpans")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Request"))


_LITE_REQUEST: type[Message] | None = None


def lite_request_class() -> type[Message]:
    """The reduced ``ExportTraceServiceRequest`` class (built once, lazily)."""
    global _LITE_REQUEST
    if _LITE_REQUEST is None:
        _LITE_REQUEST = _build_lite_request_class()
    return _LITE_REQUEST


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _signed64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _from_any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "double_value":
        return value.double_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "string_value":
        return value.string_value
    raise UnsupportedValueError(f"unsupported value type {kind}")


def decode_scalar(raw: bytes) -> Any:
    """Decode raw ``AnyValue`` bytes holding a scalar (or nothing: ``None``).

    Callers recognise arrays with ``array_bytes`` first; an array (or any other
    non-scalar) here raises ``UnsupportedValueError``.
    """
    if not raw:
        return None
    tag = raw[0]
    try:
        if tag == TAG_DOUBLE and len(raw) == 9:
            return _DOUBLE.unpack_from(raw, 1)[0]
        if tag == TAG_STRING:
            length, pos = _varint(raw, 1)
            if pos + length == len(raw):
                return raw[pos:].decode("utf-8")
        elif tag == TAG_INT:
            value, pos = _varint(raw, 1)
            if pos == len(raw):
                return _signed64(value)
        elif tag == TAG_BOOL:
            value, pos = _varint(raw, 1)
            if pos == len(raw):
                return value != 0
    except UnicodeDecodeError as exc:
        raise DecodeError("string value is not UTF-8") from exc
    # Unusual encodings (repeated fields, other types): the real class decides.
    value = AnyValue.FromString(raw)
    if value.WhichOneof("value") == "array_value":
        raise UnsupportedValueError("array where a scalar was expected")
    return _from_any_value(value)


def array_bytes(raw: bytes) -> bytes | None:
    """The ``ArrayValue`` bytes inside raw ``AnyValue`` bytes, or ``None`` if not an array."""
    if not raw or raw[0] != TAG_ARRAY:
        return None
    length, pos = _varint(raw, 1)
    if pos + length == len(raw):
        return raw[pos:]
    value = AnyValue.FromString(raw)
    if value.WhichOneof("value") != "array_value":
        return None
    return value.array_value.SerializeToString()


def double_array_count(arr: bytes) -> int:
    """Number of elements if ``arr`` is an ``ArrayValue`` of doubles only, else -1.

    Exact: every element must be encoded as field 1, length 9, then the double
    tag and 8 payload bytes, which is the only encoding of an ``AnyValue``
    holding just a double. Zero-length arrays return 0.
    """
    count, rest = divmod(len(arr), _DOUBLE_ELEMENT)
    if rest:
        return -1
    if (
        arr[0::_DOUBLE_ELEMENT] == b"\x0a" * count
        and arr[1::_DOUBLE_ELEMENT] == b"\x09" * count
        and arr[2::_DOUBLE_ELEMENT] == b"\x21" * count
    ):
        return count
    return -1


def small_int_array_count(arr: bytes) -> int:
    """Number of elements if ``arr`` is an ``ArrayValue`` of integers 0..127 only, else -1."""
    count, rest = divmod(len(arr), _SMALL_INT_ELEMENT)
    if rest or not count:
        return -1
    if (
        arr[0::_SMALL_INT_ELEMENT] == b"\x0a" * count
        and arr[1::_SMALL_INT_ELEMENT] == b"\x02" * count
        and arr[2::_SMALL_INT_ELEMENT] == b"\x18" * count
        and max(arr[3::_SMALL_INT_ELEMENT]) < 0x80
    ):
        return count
    return -1


def decode_array_slow(arr: bytes) -> list[Any]:
    """Decode any ``ArrayValue`` of scalars into Python values (``None`` for empty elements)."""
    return [_from_any_value(v) for v in ArrayValue.FromString(arr).values]
