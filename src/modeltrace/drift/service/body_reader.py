"""Reading HTTP request bodies with a hard size limit, decompressing gzip as it streams.

The limit applies to the compressed bytes received and to the decompressed
bytes produced; decompression is driven with ``max_length`` so a
decompression bomb is detected after producing at most ``limit + 1`` bytes,
never after inflating it into memory.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator


class BodyTooLargeError(ValueError):
    """The body (or its decompressed form) exceeds the limit."""


class BodyEncodingError(ValueError):
    """The body is not valid for its Content-Encoding (corrupt or truncated gzip)."""


class UnsupportedContentEncodingError(ValueError):
    """A Content-Encoding other than gzip or identity."""


SUPPORTED_CONTENT_ENCODINGS = ("gzip", "identity")


def check_content_encoding(header: str | None) -> str:
    """Normalise a Content-Encoding header to ``gzip`` or ``identity``."""
    value = (header or "identity").strip().lower() or "identity"
    if value == "x-gzip":
        value = "gzip"
    if value not in SUPPORTED_CONTENT_ENCODINGS:
        raise UnsupportedContentEncodingError(
            f"unsupported Content-Encoding {value!r}: use gzip or identity"
        )
    return value


class _GzipInflater:
    """Incremental gzip decompression (multi-member aware) with an output budget."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._produced = 0
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        while data:
            budget = self._limit - self._produced + 1
            try:
                out = self._inflater.decompress(data, budget)
            except zlib.error as exc:
                raise BodyEncodingError(f"corrupt gzip body: {exc}") from None
            self._produced += len(out)
            if self._produced > self._limit:
                raise BodyTooLargeError(
                    f"decompressed body exceeds the limit of {self._limit} bytes"
                )
            self._parts.append(out)
            if self._inflater.eof:
                # A following gzip member (RFC 1952 allows several) starts a new stream.
                data = self._inflater.unused_data
                if data:
                    self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            else:
                data = self._inflater.unconsumed_tail

    def finish(self) -> bytes:
        if not self._inflater.eof:
            raise BodyEncodingError("truncated gzip body")
        return b"".join(self._parts)


async def read_body(chunks: AsyncIterator[bytes], content_encoding: str, limit: int) -> bytes:
    """Collect a body from an ASGI stream, decompressing gzip, within ``limit`` bytes."""
    received = 0
    if content_encoding == "gzip":
        inflater = _GzipInflater(limit)
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise BodyTooLargeError(f"request body exceeds the limit of {limit} bytes")
            inflater.feed(chunk)
        if received == 0:
            return b""
        return inflater.finish()
    parts: list[bytes] = []
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise BodyTooLargeError(f"request body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
