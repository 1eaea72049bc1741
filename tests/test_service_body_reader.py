"""Size-limited body reading with streaming gzip: limits, bombs, corrupt and multi-member gzip."""

from __future__ import annotations

import asyncio
import gzip
import os
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterable

import pytest

from modeltrace.drift.service.body_reader import (
    BodyEncodingError,
    BodyTooLargeError,
    UnsupportedContentEncodingError,
    check_content_encoding,
    read_body,
)


async def _stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _read(chunks: Iterable[bytes], encoding: str, limit: int) -> bytes:
    return asyncio.run(read_body(_stream(chunks), encoding, limit))


def _split(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_identity_body_within_and_over_the_limit() -> None:
    data = os.urandom(10_000)
    assert _read(_split(data), "identity", 10_000) == data
    with pytest.raises(BodyTooLargeError, match="exceeds the limit of 9999 bytes"):
        _read(_split(data), "identity", 9_999)


def test_gzip_body_is_decompressed_across_chunk_boundaries() -> None:
    data = os.urandom(50_000) + b"a" * 50_000
    assert _read(_split(gzip.compress(data), 7), "gzip", 100_000) == data


def test_multi_member_gzip_is_concatenated() -> None:
    body = gzip.compress(b"first-") + gzip.compress(b"second")
    assert _read(_split(body, 5), "gzip", 1000) == b"first-second"


def test_gzip_bomb_is_stopped_while_decompressing_with_bounded_memory() -> None:
    # 256 MiB of zeros compress to about 250 KiB: far under the compressed limit.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(256)) + compressor.flush()
    assert len(bomb) < 1 << 20
    limit = 4 << 20
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLargeError, match="decompressed body exceeds the limit"):
            _read(_split(bomb, 65536), "gzip", limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The limit plus a chunk or two of working space, never the 256 MiB.
    assert peak < 3 * limit


def test_compressed_size_itself_is_limited() -> None:
    body = gzip.compress(os.urandom(5000))
    with pytest.raises(BodyTooLargeError, match="request body exceeds"):
        _read(_split(body, 1000), "gzip", 4000)


def test_corrupt_and_truncated_gzip() -> None:
    with pytest.raises(BodyEncodingError, match="corrupt gzip body"):
        _read([b"this is not gzip at all"], "gzip", 1000)
    body = gzip.compress(os.urandom(3000))
    with pytest.raises(BodyEncodingError, match="truncated gzip body"):
        _read([body[: len(body) // 2]], "gzip", 10_000)


def test_empty_gzip_body_is_empty() -> None:
    assert _read([], "gzip", 10) == b""


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, "identity"), ("", "identity"), ("GZIP", "gzip"), ("x-gzip", "gzip")],
)
def test_content_encodings(header: str | None, expected: str) -> None:
    assert check_content_encoding(header) == expected


@pytest.mark.parametrize("header", ["br", "deflate", "zstd", "gzip, br"])
def test_unsupported_content_encodings(header: str) -> None:
    with pytest.raises(UnsupportedContentEncodingError, match="use gzip or identity"):
        check_content_encoding(header)
