"""Request bodies: chunked framing, Content-Encoding (gzip/deflate/zstd/lz4 frames) and
ClickHouse's own block compression (``decompress=1``); a short or broken body is a BodyError."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from orchestration.warehouse.errors import ch_error


class BodyError(Exception):
    """The request body could not be read completely (truncated, bad encoding)."""


def content_length(headers: Any) -> int | None:
    """The request's Content-Length: None when absent; BodyError when it is not a plain byte count."""
    raw = headers.get("Content-Length")
    if raw is None:
        return None
    text = str(raw).strip()
    if not text.isdigit() or len(text) > 18:
        raise BodyError(f"Invalid Content-Length header: {text[:40]!r}")
    return int(text)


def raw_body(rfile: io.BufferedIOBase, headers: Any) -> Iterator[bytes]:
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        while True:
            line = rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise BodyError("Unexpected end of chunked request body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise BodyError("Malformed chunk header in request body") from exc
            if size == 0:
                while True:  # trailers
                    trailer = rfile.readline(65537)
                    if trailer in (b"\r\n", b"\n"):
                        return
                    if not trailer:
                        raise BodyError("Unexpected end of chunked request body")
            remaining = size
            while remaining:
                data = rfile.read(min(remaining, 1 << 20))
                if not data:
                    raise BodyError("Unexpected end of chunked request body")
                remaining -= len(data)
                yield data
            if rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BodyError("Malformed chunk terminator in request body")
    else:
        length = content_length(headers) or 0
        while length > 0:
            data = rfile.read(min(length, 1 << 20))
            if not data:
                raise BodyError(f"Request body truncated: {length} bytes missing")
            length -= len(data)
            yield data


class _Multi:
    """Decompress concatenated frames/members, and tell whether the last one was complete."""

    def __init__(self, factory: Callable[[], Any], name: str):
        self.factory = factory
        self.name = name
        self.obj: Any = None

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            if self.obj is None:
                self.obj = self.factory()
            out.append(self.obj.decompress(data))
            if self.obj.eof:
                data = self.obj.unused_data
                self.obj = None
            else:
                data = b""
        return b"".join(out)

    def finish(self) -> None:
        if self.obj is not None:
            raise BodyError(f"Truncated {self.name} request body: the last frame is incomplete")


def decompressor(encoding: str) -> _Multi | None:
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return _Multi(lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), "gzip")
    if enc == "deflate":
        return _Multi(lambda: zlib.decompressobj(zlib.MAX_WBITS), "deflate")
    if enc == "lz4":
        import lz4.frame

        return _Multi(lz4.frame.LZ4FrameDecompressor, "lz4")
    if enc == "zstd":
        import zstandard

        return _Multi(lambda: zstandard.ZstdDecompressor().decompressobj(), "zstd")
    if enc == "br":
        raise ch_error(48, "NOT_IMPLEMENTED", "Brotli request bodies are not supported by this server")
    raise ch_error(48, "NOT_IMPLEMENTED", f"Unknown Content-Encoding: {encoding}")


def decoded(raw: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    dec = decompressor(encoding)
    if dec is None:
        yield from raw
        return
    for chunk in raw:
        try:
            out = dec.feed(chunk)
        except BodyError:
            raise
        except Exception as exc:
            raise BodyError(f"Cannot decompress {dec.name} request body: {exc}") from exc
        if out:
            yield out
    dec.finish()


def native_decompressed(stream: Iterator[bytes]) -> Iterator[bytes]:
    """ClickHouse's own block compression (``decompress=1``): checksum, method, sizes, data."""
    import lz4.block
    import zstandard

    buf = bytearray()
    for chunk in stream:
        buf += chunk
        while len(buf) >= 25:
            method = buf[16]
            comp_size = int.from_bytes(buf[17:21], "little")
            raw_size = int.from_bytes(buf[21:25], "little")
            if len(buf) < 16 + comp_size:
                break
            payload = bytes(buf[25 : 16 + comp_size])
            del buf[: 16 + comp_size]
            if method == 0x82:
                yield lz4.block.decompress(payload, uncompressed_size=raw_size)
            elif method == 0x90:
                yield zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw_size)
            elif method == 0x02:
                yield payload
            else:
                raise BodyError(f"Unknown compression method 0x{method:02x} in compressed block")
    if buf:
        raise BodyError("Truncated compressed block in request body")
