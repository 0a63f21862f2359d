"""Output formats: which chDB chunks concatenate, re-framing the ones that do not (Arrow,
*WithNames headers, RowBinary headers) into one valid answer, and response compression."""

from __future__ import annotations

import io
import zlib
from typing import Any

# Formats whose chunks from chDB concatenate into one valid output.
CONCAT_FORMATS = frozenset(
    f.lower()
    for f in (
        "Native",
        "RowBinary",
        "TabSeparated",
        "TSV",
        "TabSeparatedRaw",
        "TSVRaw",
        "Raw",
        "CSV",
        "JSONEachRow",
        "JSONLines",
        "NDJSON",
        "JSONCompactEachRow",
        "JSONStringsEachRow",
        "JSONCompactStringsEachRow",
        "LineAsString",
        "RawBLOB",
        "CustomSeparated",
        "BSONEachRow",
        "MsgPack",
        "Null",
    )
)
# Text formats with header lines: how many lines to drop from the second chunk on.
HEADER_LINES = {
    f.lower(): n
    for f, n in (
        ("TabSeparatedWithNames", 1),
        ("TSVWithNames", 1),
        ("TabSeparatedWithNamesAndTypes", 2),
        ("TSVWithNamesAndTypes", 2),
        ("TabSeparatedRawWithNames", 1),
        ("TSVRawWithNames", 1),
        ("TabSeparatedRawWithNamesAndTypes", 2),
        ("TSVRawWithNamesAndTypes", 2),
        ("CSVWithNames", 1),
        ("CSVWithNamesAndTypes", 2),
        ("JSONCompactEachRowWithNames", 1),
        ("JSONCompactEachRowWithNamesAndTypes", 2),
        ("JSONCompactStringsEachRowWithNames", 1),
        ("JSONCompactStringsEachRowWithNamesAndTypes", 2),
        ("CustomSeparatedWithNames", 1),
        ("CustomSeparatedWithNamesAndTypes", 2),
    )
}
ROWBINARY_HEADERS = {"rowbinarywithnames": 1, "rowbinarywithnamesandtypes": 2}
ARROW_FORMATS = {"arrow": "file", "arrowstream": "stream"}
# chDB's Python layer turns these "formats" into pandas/pyarrow objects: not ClickHouse formats.
PYTHON_ONLY_FORMATS = frozenset({"dataframe", "datastore", "arrowtable"})
RESPONSE_ENCODINGS = ("lz4", "zstd", "gzip", "deflate")


class Compressor:
    def __init__(self, encoding: str):
        self.encoding = encoding
        if encoding == "lz4":
            import lz4.frame

            self._c: Any = lz4.frame.LZ4FrameCompressor()
            self._start: bytes | None = self._c.begin()
        elif encoding == "zstd":
            import zstandard

            self._c = zstandard.ZstdCompressor(level=1).compressobj()
            self._start = None
        else:
            self._c = zlib.compressobj(1, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
            self._start = None

    def compress(self, data: bytes) -> bytes:
        out = self._c.compress(data)
        if self._start is not None:
            out, self._start = self._start + out, None
        return out

    def flush(self) -> bytes:
        out = self._c.flush()
        if self._start is not None:
            out, self._start = self._start + out, None
        return out


def _skip_lines(data: bytes, n: int) -> bytes:
    pos = 0
    for _ in range(n):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return b""
        pos = nl + 1
    return data[pos:]


def _skip_rowbinary_header(data: bytes, groups: int) -> bytes:
    def varint(pos: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, pos
            shift += 7

    count, pos = varint(0)
    for _ in range(count * groups):
        ln, pos = varint(pos)
        pos += ln
    return data[pos:]


class _Collector(io.RawIOBase):
    """A write-only file object pyarrow writes into; the bytes are taken out after each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class _ArrowReframer:
    """chDB yields a complete Arrow file/stream per chunk; re-frame them as one."""

    def __init__(self, kind: str):
        import pyarrow as pa

        self.pa = pa
        self.kind = kind
        self.sink = _Collector()
        self.writer: Any = None

    def feed(self, chunk: bytes) -> bytes:
        pa = self.pa
        reader = pa.ipc.open_file(chunk) if self.kind == "file" else pa.ipc.open_stream(chunk)
        if self.writer is None:
            opener = pa.ipc.new_file if self.kind == "file" else pa.ipc.new_stream
            self.writer = opener(self.sink, reader.schema)
        if self.kind == "file":
            for i in range(reader.num_record_batches):
                self.writer.write_batch(reader.get_batch(i))
        else:
            for batch in reader:
                self.writer.write_batch(batch)
        return self.sink.take()

    def finish(self) -> bytes:
        if self.writer is None:
            return b""
        self.writer.close()
        return self.sink.take()


class Reframer:
    """Turns chDB's per-chunk complete outputs into one valid output stream."""

    def __init__(self, fmt: str):
        self.fmt = fmt.lower()
        self.first = True
        self.arrow = _ArrowReframer(ARROW_FORMATS[self.fmt]) if self.fmt in ARROW_FORMATS else None

    def feed(self, chunk: bytes) -> bytes:
        if self.arrow is not None:
            return self.arrow.feed(chunk)
        if self.first:
            self.first = False
            return chunk
        if self.fmt in HEADER_LINES:
            return _skip_lines(chunk, HEADER_LINES[self.fmt])
        if self.fmt in ROWBINARY_HEADERS:
            return _skip_rowbinary_header(chunk, ROWBINARY_HEADERS[self.fmt])
        return chunk

    def finish(self) -> bytes:
        return self.arrow.finish() if self.arrow is not None else b""


def streamable_format(fmt: str) -> bool:
    f = fmt.lower()
    return f in CONCAT_FORMATS or f in HEADER_LINES or f in ROWBINARY_HEADERS or f in ARROW_FORMATS
