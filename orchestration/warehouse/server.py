"""The embedded warehouse: a ClickHouse HTTP protocol server over chDB.

One process owns the data folder (chDB allows one engine per process); clickhouse-connect,
dbt-clickhouse and any ClickHouse HTTP client talk to it as to a real ClickHouse.

    python -m orchestration.warehouse.server --host 127.0.0.1 --port 8123 --data-dir PATH

Design: a threaded stdlib HTTP/1.1 server (chDB releases the GIL while it works, so threads
run queries in parallel), one chDB connection per ``session_id`` and a pool of connections for
sessionless requests. See README.md in this folder for what is supported and measured.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import secrets
import select
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb

from orchestration.warehouse import guard, sql
from orchestration.warehouse.auth import PlatformUser, authenticate, browser_refused
from orchestration.warehouse.credentials import (
    data_root,
    ensure_platform_password,
    is_loopback_host,
    password_file,
    platform_user,
)
from orchestration.warehouse.errors import STATUS_BY_NAME, ClickHouseError, ch_error, internal_error
from orchestration.warehouse.errors import parse_chdb_error as _parse_chdb_error

log = logging.getLogger("aetl.warehouse")

# URL parameters that steer the HTTP layer instead of being ClickHouse settings (or that chDB
# has no use for); everything else not prefixed param_ is a setting applied with SET.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "user",
        "password",
        "quota_key",
        "role",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "client_protocol_version",
        "http_response_buffer_size",
        "http_wait_end_of_query",
        "add_http_cors_header",
        "http_native_compression_disable_checksumming_on_decompress",
        # enforced by the server: SET readonly on a connection could never be undone
        "readonly",
        "output_format_parallel_formatting",
    }
)
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
SPOOL_MEMORY = 64 * 1024 * 1024
MAX_QUERY_BYTES = 256 * 1024 * 1024
INSERT_APPEND_CHUNK = 4 * 1024 * 1024


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Conn:
    """One chDB connection = one ClickHouse session, with what we changed on it tracked."""

    def __init__(self, path: str):
        self.chdb = chdb.connect(path)
        self.db = "default"  # current database on the connection
        self.base_db = "default"  # the session's own database (USE), restored after a request's `database`
        self.applied: dict[str, str] = {}  # settings set on behalf of URL parameters
        self.priors: dict[str, str | None] = {}  # value to restore (None: DEFAULT)
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.timeout = 60.0
        self.dirty = False  # state changed by the client (SET/USE/temp table): don't reuse as a pool conn

    def run(self, query: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None) -> Any:
        try:
            return self.chdb._conn.query(query, fmt, params=params or {})
        except RuntimeError as exc:
            self.flush()
            raise _parse_chdb_error(exc) from None

    def flush(self) -> None:
        """chDB 4.4 prepends a failed query's partial output to the next answer: swallow it."""
        with contextlib.suppress(Exception):
            self.chdb._conn.query("SELECT 1", "TabSeparated")

    def use_database(self, db: str) -> None:
        if db != self.db:
            self.run(f"USE {_ident(db)}")
            self.db = db

    def apply_settings(self, wanted: dict[str, str]) -> None:
        """SET the request's settings, restore the ones the previous request set (lazily)."""
        for name in [n for n in self.applied if n not in wanted]:
            prior = self.priors.get(name)
            self.run(f"SET {_ident(name)} = {'DEFAULT' if prior is None else _quote(prior)}")
            del self.applied[name]
        new = [n for n in wanted if n not in self.priors]
        if new:
            names = ", ".join(_quote(n) for n in new)
            res = self.run(
                f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})", "JSONCompact"
            )
            for name, value, changed in json.loads(res.bytes())["data"]:
                self.priors[name] = value if int(changed) else None
        for name, value in wanted.items():
            if self.applied.get(name) == value:
                continue
            if name not in self.priors:
                raise ch_error(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
            self.run(f"SET {_ident(name)} = {_quote(value)}")
            self.applied[name] = value

    def reset_tracking(self) -> None:
        """Before a client's own SET: put URL overrides back, forget cached priors."""
        self.apply_settings({})
        self.priors.clear()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.chdb.close()


class Warehouse:
    """Owns the data folder: an anchor connection, the pool, the sessions."""

    def __init__(self, data_dir: str, max_pool: int = 64, max_sessions: int = 256):
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.abspath(data_dir)
        self.anchor = Conn(self.path)  # keeps the engine up while sessions come and go
        self.tmp_dir = os.path.join(
            self.path, "tmp"
        )  # the engine's temp folder: big insert bodies spill here
        os.makedirs(self.tmp_dir, exist_ok=True)
        self._lock = threading.Lock()
        self._idle: list[Conn] = []
        self._slots = threading.BoundedSemaphore(max_pool)
        self.sessions: dict[str, Conn] = {}
        self.max_sessions = max_sessions  # each session holds a chDB connection: bound them
        self._closed = threading.Event()
        self._active = 0
        self._killer: Conn | None = None
        self._killer_lock = threading.Lock()
        info = self.anchor.run("SELECT version(), timezone(), hostName()", "JSONCompact")
        self.version, self.timezone, self.hostname = json.loads(info.bytes())["data"][0]
        self._reaper = threading.Thread(target=self._reap, name="session-reaper", daemon=True)
        self._reaper.start()

    def names(self, query: str) -> frozenset[str]:
        """One column of the engine's own catalogue (table functions, engines) as a set."""
        return frozenset(self.anchor.run(query, "TabSeparatedRaw").bytes().decode().split())

    def kill(self, tag: str) -> None:
        """KILL the query whose text carries ``aetl-cancel:<tag>`` (chDB lists them in system.processes)."""
        with self._killer_lock:
            if self._killer is None:
                self._killer = Conn(self.path)
            # concat() so this KILL's own text does not match the pattern
            with contextlib.suppress(ClickHouseError):
                self._killer.run(
                    f"KILL QUERY WHERE position(query, concat('aetl-cancel:', {_quote(tag)})) > 0 ASYNC"
                )

    # -- in-flight requests (shutdown waits for them before closing connections) ---------------
    def begin(self) -> None:
        with self._lock:
            if self._closed.is_set():
                raise ch_error(236, "ABORTED", "Server is shutting down")
            self._active += 1

    def end(self) -> None:
        with self._lock:
            self._active -= 1

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0:
                    return True
            time.sleep(0.05)
        return False

    # -- pool --------------------------------------------------------------------------------
    def acquire(self) -> Conn:
        if not self._slots.acquire(timeout=300):
            raise ch_error(202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Too many simultaneous queries")
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return Conn(self.path)
        except Exception:
            self._slots.release()
            raise

    def release(self, conn: Conn) -> None:
        if conn.dirty or self._closed.is_set():
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        self._slots.release()

    # -- sessions ----------------------------------------------------------------------------
    def session(self, session_id: str, timeout: float, check: bool) -> Conn:
        """The session's connection, locked for this request (SESSION_IS_LOCKED if busy)."""
        with self._lock:
            conn = self.sessions.get(session_id)
            if conn is None:
                if check:
                    raise ch_error(372, "SESSION_NOT_FOUND", f"Session {session_id} not found")
                if len(self.sessions) >= self.max_sessions:
                    raise ch_error(
                        700,
                        "USER_SESSION_LIMIT_EXCEEDED",
                        f"Too many open sessions ({self.max_sessions}, AETL_WAREHOUSE_MAX_SESSIONS); "
                        "close idle ones or wait for their session_timeout",
                    )
                conn = Conn(self.path)
                self.sessions[session_id] = conn
            if not conn.lock.acquire(blocking=False):
                raise ch_error(
                    373, "SESSION_IS_LOCKED", f"Session {session_id} is locked by a concurrent client"
                )
            conn.timeout = timeout
            return conn

    def release_session(self, conn: Conn) -> None:
        conn.last_used = time.monotonic()
        conn.lock.release()

    def _reap(self) -> None:
        while not self._closed.wait(1.0):
            now = time.monotonic()
            expired: list[Conn] = []
            with self._lock:
                for sid, conn in list(self.sessions.items()):
                    if now - conn.last_used > conn.timeout and conn.lock.acquire(blocking=False):
                        del self.sessions[sid]
                        expired.append(conn)
            for conn in expired:
                conn.close()

    def close(self, grace: float = 30.0) -> None:
        with self._lock:
            self._closed.set()
        if not self.wait_idle(grace):
            log.warning("closing with requests still running after %.0fs", grace)
        with self._lock:
            conns = self._idle + list(self.sessions.values())
            self._idle = []
            self.sessions = {}
        for conn in conns:
            conn.close()
        with self._killer_lock:
            if self._killer is not None:
                self._killer.close()
        self.anchor.close()


# -- request bodies --------------------------------------------------------------------------
class BodyError(Exception):
    """The request body could not be read completely (truncated, bad encoding)."""


def _raw_body(rfile: io.BufferedIOBase, headers: Any) -> Iterator[bytes]:
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
        length = int(headers.get("Content-Length") or 0)
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


def _decompressor(encoding: str) -> _Multi | None:
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


def _decoded(raw: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    dec = _decompressor(encoding)
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


def _native_decompressed(stream: Iterator[bytes]) -> Iterator[bytes]:
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


# -- responses -------------------------------------------------------------------------------
class _Compressor:
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


# -- the HTTP handler ------------------------------------------------------------------------
class _Keepalive:
    """ClickHouse's ``send_progress_in_http_headers``: while a statement runs, send the status line
    and then an ``X-ClickHouse-Progress`` header every interval, so clients with a read timeout
    keep waiting for long statements. The server's ticker thread calls tick()."""

    def __init__(self, handler: BaseHTTPRequestHandler, interval: float):
        self.handler = handler
        self.interval = interval
        self.lock = threading.Lock()
        self.started = False
        self.done = False
        self.begun = time.monotonic()
        self.next_at = self.begun + interval

    def tick(self, now: float) -> None:
        with self.lock:
            if self.done or now < self.next_at:
                return
            self.next_at = now + self.interval
            elapsed = str(int((now - self.begun) * 1e9))
            progress = (
                '{"read_rows":"0","read_bytes":"0","written_rows":"0","written_bytes":"0",'
                f'"total_rows_to_read":"0","result_rows":"0","result_bytes":"0","elapsed_ns":"{elapsed}"}}'
            )
            out = b""
            if not self.started:
                h = self.handler
                out = (
                    f"{h.protocol_version} 200 OK\r\nServer: {h.version_string()}\r\n"
                    f"Date: {h.date_time_string()}\r\n"
                ).encode()
            out += f"X-ClickHouse-Progress: {progress}\r\n".encode()
            try:
                self.handler.wfile.write(out)
                self.handler.wfile.flush()
                self.started = True
            except OSError:
                self.done = True

    def stop(self) -> bool:
        """No more progress headers; True if the status line is already out."""
        with self.lock:
            self.done = True
            return self.started


class Request:
    """Everything known about one query request."""

    def __init__(self, params: dict[str, str], query_id: str):
        self.params = params
        self.query_id = query_id
        self.settings = {
            k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")
        }
        self.bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        self.summary = {
            "read_rows": 0,
            "read_bytes": 0,
            "written_rows": 0,
            "written_bytes": 0,
            "result_rows": 0,
            "result_bytes": 0,
        }
        self.log_query = ""
        self.status = "ok"
        self.external: list[tuple[str, bytes, str, str]] = []  # name, data, structure, format


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ClickHouse"
    sys_version = ""
    server: WarehouseHTTPServer
    timeout = 300  # idle keep-alive connections and stalled uploads end after this many seconds
    headers_sent = False
    body_done = False
    _keeper: _Keepalive | None = None
    _lease: tuple[Conn, Request, str] | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # the request line without its query string: URL parameters may carry a password
        log.debug("%s %s", self.address_string(), (format % args).split("?", 1)[0])

    # HTTP verbs ------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        if not self._refuse_browser():
            self._simple(200, b"")

    def do_OPTIONS(self) -> None:  # noqa: N802
        if not self._refuse_browser():
            self._simple(204, b"")

    def _refuse_browser(self) -> bool:
        """No browser may talk to the warehouse: a cross-site POST could otherwise run SQL."""
        if self.headers.get("Origin") is None:
            return False
        self.close_connection = True
        self._error(browser_refused(), status=403)
        return True

    def _simple(self, status: int, body: bytes, content_type: str = "text/plain; charset=UTF-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        if self._refuse_browser():
            return
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        if path in ("/ping", "/replicas_status"):
            self._simple(200, b"Ok.\n")
            return
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        has_body = self.command == "POST" and (
            int(self.headers.get("Content-Length") or 0) > 0
            or "chunked" in (self.headers.get("Transfer-Encoding") or "")
        )
        if path == "/" and "query" not in params and not has_body:
            self._simple(200, b"Ok.\n")
            return
        if path not in ("/", "/query"):
            self._drain_quietly()
            self._error(ch_error(1001, "STD_EXCEPTION", f"There is no handle {path}"), status=404)
            return
        try:
            authenticate(self.server.platform_user, self.headers, params)
        except ClickHouseError as err:
            log.warning("authentication failed from %s", self.address_string())
            self.close_connection = True  # the body stays unread
            self._error(err, query_id=params.get("query_id"))
            return
        self._query(params)

    def _raw_body(self) -> Iterator[bytes]:
        yield from _raw_body(self.rfile, self.headers)
        self.body_done = True

    def _drain_quietly(self) -> None:
        with contextlib.suppress(Exception):
            for _ in _raw_body(self.rfile, self.headers):
                pass

    # errors ----------------------------------------------------------------------------------
    def _error(self, err: ClickHouseError, status: int | None = None, query_id: str | None = None) -> None:
        self._done_with_conn()
        wh = self.server.warehouse
        name = err.name or "UNKNOWN"
        body = f"{err.message} (version {wh.version})\n".encode()
        self._begin_response(status or STATUS_BY_NAME.get(name, 500))
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("X-ClickHouse-Exception-Code", str(err.code))
        if query_id:
            self.send_header("X-ClickHouse-Query-Id", query_id)
        self.send_header("X-ClickHouse-Server-Display-Name", wh.hostname)
        self.send_header("X-ClickHouse-Timezone", wh.timezone)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    # the query path --------------------------------------------------------------------------
    def _query(self, params: dict[str, str]) -> None:
        started = time.monotonic()
        self.headers_sent = False
        self._lease = None
        wh = self.server.warehouse
        ctype = self.headers.get("Content-Type") or ""
        self.body_done = False
        body = _decoded(self._raw_body(), self.headers.get("Content-Encoding") or "")
        if params.get("decompress") in ("1", "true"):
            body = _native_decompressed(body)
        req = Request(params, params.get("query_id") or str(uuid.uuid4()))
        session_id = params.get("session_id") or ""
        conn: Conn | None = None
        try:
            wh.begin()
        except ClickHouseError as err:
            self.close_connection = True
            self._error(err, status=503, query_id=req.query_id)
            return
        self._keeper = None
        if params.get("send_progress_in_http_headers", "0").lower() in ("1", "true"):
            try:
                interval = max(0.1, int(params.get("http_headers_progress_interval_ms") or 100) / 1000)
            except ValueError:
                interval = 0.1
            self._keeper = _Keepalive(self, interval)
            self.server.keepalives.add(self._keeper)
        try:
            if ctype.lower().startswith("multipart/form-data"):
                body = self._multipart(req, ctype, body)
            req.settings = {
                k: v
                for k, v in req.params.items()
                if k not in TRANSPORT_PARAMS and not k.startswith("param_")
            }  # form fields may carry settings and parameters too
            req.bind = {k[6:]: v for k, v in req.params.items() if k.startswith("param_")}
            if session_id:
                try:
                    timeout = float(req.params.get("session_timeout") or 60)
                except ValueError:
                    raise ch_error(374, "INVALID_SESSION_TIMEOUT", "Invalid session timeout") from None
                conn = wh.session(session_id, timeout, req.params.get("session_check") in ("1", "true"))
            else:
                conn = wh.acquire()
            self._lease = (conn, req, session_id)
            self._execute(conn, req, body, bool(session_id))
        except BodyError as exc:
            req.status = "error 33"
            self.close_connection = True
            if not self.headers_sent:
                with contextlib.suppress(OSError):
                    self._error(ch_error(33, "CANNOT_READ_ALL_DATA", str(exc)), query_id=req.query_id)
        except ClickHouseError as err:
            req.status = f"error {err.code}"
            self._drain_after_error()
            if not self.headers_sent:
                with contextlib.suppress(OSError):  # the client may be gone (cancelled query)
                    self._error(err, query_id=req.query_id)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            req.status = "client gone"
            self.close_connection = True
        except Exception:  # a bug here must not kill the server: answer like ClickHouse would
            req.status = "internal error"
            log.exception("internal error in query id=%s", req.query_id)
            self._drain_after_error()
            if self.headers_sent:
                return
            with contextlib.suppress(Exception):
                self._error(internal_error(req.query_id), query_id=req.query_id)
        finally:
            self.server.watched.pop(self, None)
            if self._keeper is not None:
                self.server.keepalives.discard(self._keeper)
                self._keeper.stop()
                self._keeper = None
            self._done_with_conn()
            wh.end()
            log.info(
                "query id=%s session=%s %s rows=%s written=%s %.1fms: %s",
                req.query_id,
                session_id[:12] or "-",
                req.status,
                req.summary["result_rows"],
                req.summary["written_rows"],
                (time.monotonic() - started) * 1000,
                sql.for_log(req.log_query),
            )

    def _client_closed(self) -> bool:
        """True if the client hung up (EOF waiting on the socket) while we are still computing."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _begin_response(self, status: int) -> None:
        """The status line, unless progress headers already sent one (then the status stays 200)."""
        self.server.watched.pop(self, None)
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            self.server.keepalives.discard(keeper)
            if keeper.stop():
                return
        self.send_response(status)

    def _done_with_conn(self) -> None:
        """Give the connection back as soon as chDB is done, before the last bytes go out: a
        client that sends its next query on the session right after reading the answer must
        not find the session still locked."""
        if self._lease is None:
            return
        conn, req, session_id = self._lease
        self._lease = None
        wh = self.server.warehouse
        if req.external and session_id:
            for name, *_ in req.external:
                with contextlib.suppress(ClickHouseError):
                    conn.run(f"DROP TEMPORARY TABLE IF EXISTS {_ident(name)}")
        if session_id:
            wh.release_session(conn)
        else:
            wh.release(conn)

    def _drain_after_error(self) -> None:
        # An early error may leave body bytes unread: close rather than read a big upload to the end.
        if not self.body_done:
            self.close_connection = True

    def _multipart(self, req: Request, ctype: str, body: Iterator[bytes]) -> Iterator[bytes]:
        limit = self.server.max_multipart_bytes
        parts: list[bytes] = []
        size = 0
        for chunk in body:  # parsed in memory: refuse a body beyond the limit before holding it all
            size += len(chunk)
            if size > limit:
                raise ch_error(
                    229,
                    "QUERY_IS_TOO_LARGE",
                    f"multipart/form-data body is larger than {limit} bytes "
                    "(AETL_WAREHOUSE_MAX_MULTIPART_BYTES)",
                )
            parts.append(chunk)
        raw = b"".join(parts)
        msg = BytesParser(policy=HTTP_POLICY).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + raw
        )
        query_parts: list[bytes] = []
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            decoded = part.get_payload(decode=True)
            # bytes for a plain part; a nested multipart is no external table
            payload = decoded if isinstance(decoded, bytes) else b""
            if part.get_filename() is None and (
                name == "query" or name.startswith("param_") or name in TRANSPORT_PARAMS
            ):
                if name == "query":
                    query_parts.append(payload)
                else:
                    req.params[name] = payload.decode("utf-8", errors="replace")
            else:
                structure = req.params.get(f"{name}_structure")
                if structure is None and f"{name}_types" in req.params:
                    types = req.params[f"{name}_types"].split(",")
                    structure = ", ".join(f"_{i + 1} {t}" for i, t in enumerate(types))
                if structure is None:
                    raise ch_error(
                        36,
                        "BAD_ARGUMENTS",
                        f"Neither structure nor types have not been provided for external table {name}. "
                        f"Use fields {name}_structure or {name}_types to do so.",
                    )
                fmt = req.params.get(f"{name}_format", "TabSeparated")
                req.external.append((name, payload, structure, fmt))
        for name in list(req.params):
            if name.endswith(("_structure", "_types", "_format")) and any(
                name.startswith(ext[0] + "_") for ext in req.external
            ):
                req.params.pop(name)
                req.settings.pop(name, None)
        if query_parts:
            existing = req.params.get("query")
            req.params["query"] = ((existing + "\n") if existing else "") + b"".join(query_parts).decode(
                "utf-8", errors="surrogateescape"
            )
        return iter(())

    def _execute(self, conn: Conn, req: Request, body: Iterator[bytes], in_session: bool) -> None:
        qparam = req.params.get("query", "")
        head = bytearray(qparam.encode("utf-8", errors="surrogateescape"))
        body_started = False
        split: sql.InsertSplit | None | bool = None
        kind = ""
        insert_at = 0
        # Read just enough of the body to know the statement, and for INSERT ... FORMAT where data starts.
        for chunk in body:
            if not body_started and head:
                head += b"\n"
            body_started = True
            head += chunk
            text = head.decode("latin-1")
            kind, insert_at = _statement_kind(text)
            if not kind and not text.strip():
                continue
            if kind != "INSERT":
                break
            split = sql.split_insert_format(text, insert_at)
            if split is not False:
                break
            if len(head) > MAX_QUERY_BYTES:
                raise ch_error(202, "QUERY_IS_TOO_LARGE", "The INSERT statement is too large")
        else:
            text = head.decode("latin-1")
            kind, insert_at = _statement_kind(text)
            if kind == "INSERT":
                split = sql.split_insert_format(text, insert_at)
        if kind == "INSERT" and isinstance(split, sql.InsertSplit):
            if req.bind:  # chDB's streaming insert takes no parameters: inline the (text) data
                for chunk in body:
                    head += chunk
                self._inline_insert(conn, req, bytes(head), in_session)
            else:
                self._insert(conn, req, bytes(head), split, body, in_session)
            return
        for chunk in body:
            head += chunk
            if len(head) > MAX_QUERY_BYTES:
                raise ch_error(202, "QUERY_IS_TOO_LARGE", "Query is too large")
        self._run_query(conn, req, sql.to_str(bytes(head)), in_session)

    def _prepare(self, conn: Conn, req: Request, in_session: bool, kind: str) -> None:
        db = req.params.get("database") or (conn.base_db if in_session else "default")
        conn.use_database(db)
        if kind == "SET":
            conn.reset_tracking()
        guard.check_settings(req.settings.items())
        conn.apply_settings(req.settings)
        for name, data, structure, fmt in req.external:
            conn.dirty = True
            # the structure comes from the client: it must not smuggle in an engine that reaches out
            create = self._inspect(conn, req, f"CREATE TEMPORARY TABLE {_ident(name)} ({structure})").text
            conn.run(create)
            try:
                ins = conn.chdb.send_insert(f"INSERT INTO {_ident(name)}", fmt)
                ins.append(data)
                ins.finish()
            except RuntimeError as exc:
                raise _parse_chdb_error(exc) from None

    def _insert(
        self,
        conn: Conn,
        req: Request,
        head: bytes,
        split: sql.InsertSplit,
        body: Iterator[bytes],
        in_session: bool,
    ) -> None:
        statement = sql.to_str(head[: len(split.statement.encode("latin-1"))])
        req.log_query = f"{statement} FORMAT {split.fmt}"
        if self.command == "GET" or req.params.get("readonly", "0") not in ("0", ""):
            raise ch_error(164, "READONLY", "Cannot execute query in readonly mode")
        _, second = sql.check_single_statement(statement)
        if second is not None:
            raise _multi_statement_error(statement, second)
        self._inspect(conn, req, f"{statement} FORMAT {split.fmt}")
        # Spool the whole body first: a truncated or aborted upload must not half-apply.
        t_read = time.monotonic()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, dir=self.server.warehouse.tmp_dir) as spool:
            spool.write(head[split.data_start :])
            for chunk in body:
                spool.write(chunk)
            size = spool.tell()
            spool.seek(0)
            log.debug("insert body %d bytes read in %.1fms", size, (time.monotonic() - t_read) * 1000)
            self._prepare(conn, req, in_session, "INSERT")
            try:
                ins = conn.chdb.send_insert(statement, split.fmt)
            except RuntimeError as exc:
                raise _parse_chdb_error(exc) from None
            try:
                while data := spool.read(INSERT_APPEND_CHUNK):
                    ins.append(data)
                result = ins.finish()
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    ins.cancel()
                conn.flush()
                if isinstance(exc, RuntimeError):
                    raise _parse_chdb_error(exc) from None
                raise
        req.summary["written_rows"] = result.rows_written
        req.summary["written_bytes"] = result.bytes_written or size
        self._send_buffered(req, b"", None, result.elapsed)

    def _inline_insert(self, conn: Conn, req: Request, raw: bytes, in_session: bool) -> None:
        """INSERT … FORMAT X with query parameters: one plain query with the data inline."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ch_error(
                48, "NOT_IMPLEMENTED", "Binary insert data together with query parameters is not supported"
            ) from None
        req.log_query = text
        if self.command == "GET" or req.params.get("readonly", "0") not in ("0", ""):
            raise ch_error(164, "READONLY", "Cannot execute query in readonly mode")
        split = sql.split_insert_format(text, _statement_kind(text)[1])
        if not isinstance(split, sql.InsertSplit):
            raise ch_error(62, "SYNTAX_ERROR", "Cannot find the FORMAT clause of the INSERT")
        _, second = sql.check_single_statement(split.statement)
        if second is not None:
            raise _multi_statement_error(split.statement, second)
        self._inspect(conn, req, f"{split.statement} FORMAT {split.fmt}")
        self._prepare(conn, req, in_session, "INSERT")
        res = conn.run(text, "TabSeparated", req.bind)
        _result_summary(req, res)
        req.summary.update(written_rows=res.rows_written(), written_bytes=res.bytes_written())
        self._send_buffered(req, b"", None, res.elapsed())

    def _inspect(self, conn: Conn, req: Request, statement: str) -> guard.Verdict:
        """Refuse a statement that reaches files, URLs, processes or other servers (guard.py)."""
        try:
            res = conn.run(f"{EXPLAIN_PREFIX}{statement}", "TabSeparatedRaw", req.bind)
        except ClickHouseError as err:
            raise _without_explain_prefix(err) from None
        return guard.inspect(statement, res.bytes().decode("utf-8", "replace"), self.server.policy)

    def _run_query(self, conn: Conn, req: Request, text: str, in_session: bool) -> None:
        req.log_query = text
        text, second = sql.check_single_statement(text)
        if second is not None:
            raise _multi_statement_error(text, second)
        kind = sql.first_keyword(text)
        if not kind:
            raise ch_error(62, "SYNTAX_ERROR", "Empty query")
        # what the statement is and touches, from ClickHouse's own parse (not from its first word)
        verdict = self._inspect(conn, req, text)
        text = verdict.text
        read_only = guard.is_read_only(verdict.root)
        if self.command == "GET" and not read_only and verdict.root.kind not in ("Set", "UseQuery"):
            raise ch_error(
                164,
                "READONLY",
                "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
                "You should use method POST for modifying queries",
            )
        if req.params.get("readonly", "0") not in ("0", "") and not read_only:
            raise ch_error(164, "READONLY", "Cannot execute query in readonly mode")
        self._prepare(conn, req, in_session, kind)
        if kind in sql.RESULT_KEYWORDS:
            query, fmt = sql.strip_format(text)
            fmt = fmt or req.params.get("default_format") or "TabSeparated"
            if req.params.get("cancel_http_readonly_queries_on_client_close") in ("1", "true"):
                # a tag in the text lets the ticker KILL the query if the client hangs up
                tag = uuid.uuid4().hex
                query = f"{query}\n/* aetl-cancel:{tag} */"
                self.server.watched[self] = tag
            if fmt.lower() in PYTHON_ONLY_FORMATS:
                raise ch_error(73, "UNKNOWN_FORMAT", f"Unknown output format {fmt}")
            if kind in sql.STREAMABLE_KEYWORDS and streamable_format(fmt):
                wait = req.params.get("wait_end_of_query", "0").lower() in ("1", "true")
                self._stream(conn, req, query, fmt, buffered=wait)
            else:
                res = conn.run(query, fmt, req.bind)
                _result_summary(req, res)
                self._send_buffered(req, res.bytes(), fmt, res.elapsed())
        else:
            res = conn.run(text, "TabSeparated", req.bind)
            self._after_command(conn, kind, text, in_session)
            _result_summary(req, res)
            req.summary.update(written_rows=res.rows_written(), written_bytes=res.bytes_written())
            self._send_buffered(req, res.bytes(), None, res.elapsed())

    def _after_command(self, conn: Conn, kind: str, text: str, in_session: bool) -> None:
        """Track what a client's SET/USE/temporary table changed on the connection."""
        if kind == "USE":
            res = conn.run("SELECT currentDatabase()", "TabSeparatedRaw")
            conn.db = res.bytes().decode().strip()
            if in_session:
                conn.base_db = conn.db
            else:
                conn.dirty = True
        elif kind == "SET":
            conn.priors.clear()
            if not in_session:
                conn.dirty = True
        elif kind == "CREATE" and not in_session and "TEMPORARY" in text[:200].upper():
            conn.dirty = True

    # writing answers -------------------------------------------------------------------------
    def _encoding(self, req: Request) -> str | None:
        # the engine's default for enable_http_compression is 1 (clients rely on it): compress
        # whenever the client accepts an encoding, unless the request turns the setting off
        if req.params.get("enable_http_compression", "1").lower() in ("0", "false"):
            return None
        accepted = [
            e.split(";")[0].strip().lower() for e in (self.headers.get("Accept-Encoding") or "").split(",")
        ]
        for enc in accepted:
            if enc in RESPONSE_ENCODINGS:
                return enc
        return None

    def _common_headers(self, req: Request, fmt: str | None) -> None:
        wh = self.server.warehouse
        self.send_header("X-ClickHouse-Query-Id", req.query_id)
        self.send_header("X-ClickHouse-Server-Display-Name", wh.hostname)
        self.send_header("X-ClickHouse-Timezone", wh.timezone)
        if fmt is not None:
            self.send_header("X-ClickHouse-Format", fmt)
            ctype = "application/octet-stream"
            if fmt.lower().startswith(("tabseparated", "tsv", "csv", "pretty", "vertical", "markdown")):
                ctype = "text/plain; charset=UTF-8"
            elif fmt.lower().startswith("json"):
                ctype = "application/json; charset=UTF-8"
            self.send_header("Content-Type", ctype)
        else:
            self.send_header("Content-Type", "text/plain; charset=UTF-8")
        if req.params.get("session_id"):
            self.send_header("Keep-Alive", f"timeout={int(float(req.params.get('session_timeout') or 60))}")

    def _summary(self, req: Request, elapsed: float) -> str:
        s = req.summary
        return json.dumps(
            {
                "read_rows": str(s["read_rows"]),
                "read_bytes": str(s["read_bytes"]),
                "written_rows": str(s["written_rows"]),
                "written_bytes": str(s["written_bytes"]),
                "total_rows_to_read": str(s["read_rows"]),
                "result_rows": str(s["result_rows"] or s["written_rows"]),
                "result_bytes": str(s["result_bytes"]),
                "elapsed_ns": str(int(elapsed * 1e9)),
            },
            separators=(",", ":"),
        )

    def _send_buffered(self, req: Request, data: bytes, fmt: str | None, elapsed: float) -> None:
        self._done_with_conn()
        encoding = self._encoding(req) if data else None
        if encoding:
            comp = _Compressor(encoding)
            data = comp.compress(data) + comp.flush()
        self._begin_response(200)
        self._common_headers(req, fmt)
        self.send_header("X-ClickHouse-Summary", self._summary(req, elapsed))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, conn: Conn, req: Request, query: str, fmt: str, buffered: bool) -> None:
        started = time.monotonic()
        try:
            stream = conn.chdb._conn.send_query(query, fmt, params=req.bind)
        except RuntimeError as exc:
            raise _parse_chdb_error(exc) from None
        fetch = conn.chdb._conn.streaming_fetch_result
        finished = False

        def next_chunk() -> bytes | None:
            nonlocal finished
            try:
                res = fetch(stream)
            except RuntimeError as exc:
                finished = True
                raise _parse_chdb_error(exc) from None
            if res is None or res.rows_read() == 0:
                finished = True
                return None
            summary = req.summary
            summary["result_rows"] += res.rows_read()
            summary["result_bytes"] += res.bytes_read()
            summary["read_rows"] += res.storage_rows_read()
            summary["read_bytes"] += res.storage_bytes_read()
            return res.bytes()

        try:
            if buffered:
                self._collect_and_send(req, fmt, next_chunk, started)
                return
            first = next_chunk()  # errors before the first byte get a proper HTTP error answer
            reframer = Reframer(fmt)
            encoding = self._encoding(req)
            comp = _Compressor(encoding) if encoding else None
            chunked = self.request_version != "HTTP/1.0"
            self._begin_response(200)
            self._common_headers(req, fmt)
            tag = _exception_tag()
            self.send_header("X-ClickHouse-Exception-Tag", tag)
            self.send_header("X-ClickHouse-Summary", self._summary(req, 0.0))
            if encoding:
                self.send_header("Content-Encoding", encoding)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.close_connection = True
            self.end_headers()
            self.headers_sent = True

            def write(data: bytes) -> None:
                if comp is not None:
                    data = comp.compress(data)
                if not data:
                    return
                if chunked:
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
                else:
                    self.wfile.write(data)

            try:
                chunk = first
                while chunk is not None:
                    write(reframer.feed(chunk))
                    chunk = next_chunk()
                self._done_with_conn()
                write(reframer.finish())
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                raise
            except Exception as exc:
                if not isinstance(exc, ClickHouseError):
                    log.exception("internal error while streaming query id=%s", req.query_id)
                err = exc if isinstance(exc, ClickHouseError) else internal_error(req.query_id)
                # Late error: ClickHouse's tagged exception block, so clients raise instead of
                # silently returning short data.
                if finished:
                    self._done_with_conn()
                message = f"{err.message} (version {self.server.warehouse.version})"
                block = f"\r\n__exception__\r\n{tag}\r\n{message}\n{len(message)} {tag}\r\n__exception__\r\n"
                write(block.encode())
                req.status = f"late error {err.code}"
            if comp is not None:
                tail = comp.flush()
                if tail:
                    if chunked:
                        self.wfile.write(b"%X\r\n%s\r\n" % (len(tail), tail))
                    else:
                        self.wfile.write(tail)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            if not finished:
                with contextlib.suppress(Exception):
                    conn.chdb._conn.streaming_cancel_query(stream)

    def _collect_and_send(
        self, req: Request, fmt: str, next_chunk: Callable[[], bytes | None], started: float
    ) -> None:
        """``wait_end_of_query=1``: the whole answer into a spool (memory, then the engine's tmp
        folder), then sent with Content-Length; any error is still a plain error answer."""
        reframer = Reframer(fmt)
        encoding = self._encoding(req)
        comp = _Compressor(encoding) if encoding else None
        raw_size = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, dir=self.server.warehouse.tmp_dir) as spool:

            def put(data: bytes) -> None:
                nonlocal raw_size
                raw_size += len(data)
                if comp is not None:
                    data = comp.compress(data)
                if data:
                    spool.write(data)

            chunk = next_chunk()
            while chunk is not None:
                put(reframer.feed(chunk))
                chunk = next_chunk()
            put(reframer.finish())
            if comp is not None:
                spool.write(comp.flush())
            self._done_with_conn()
            if raw_size == 0:  # an empty answer is sent as is, like ClickHouse
                spool.seek(0)
                spool.truncate()
                encoding = None
            size = spool.tell()
            spool.seek(0)
            self._begin_response(200)
            self._common_headers(req, fmt)
            self.send_header("X-ClickHouse-Summary", self._summary(req, time.monotonic() - started))
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.headers_sent = True
            while data := spool.read(1 << 20):
                self.wfile.write(data)


def _exception_tag() -> str:
    """16 random lower-case letters and digits, like ClickHouse's exception tag."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return secrets.choice(alphabet[:26]) + "".join(secrets.choice(alphabet) for _ in range(15))


def _statement_kind(text: str) -> tuple[str, int]:
    """Leading keyword, with ``WITH … INSERT`` counted as INSERT (and where its INSERT starts)."""
    kind = sql.first_keyword(text)
    if kind == "WITH":
        pos = sql.leading_with_insert(text)
        if pos is not None:
            return "INSERT", pos
    return kind, 0


def _result_summary(req: Request, res: Any) -> None:
    # chDB's rows_read()/bytes_read() count the result; storage_* count what was read
    req.summary.update(
        read_rows=res.storage_rows_read(),
        read_bytes=res.storage_bytes_read(),
        result_rows=res.rows_read(),
        result_bytes=res.bytes_read(),
    )


EXPLAIN_PREFIX = "EXPLAIN AST "


def _without_explain_prefix(err: ClickHouseError) -> ClickHouseError:
    """A syntax error found while parsing for the guard, with positions of the client's statement."""
    if err.code != 62:
        return err
    shift = len(EXPLAIN_PREFIX)

    def back(match: re.Match[str]) -> str:
        return f"{match.group(1)}{max(1, int(match.group(2)) - shift)}"

    message = re.sub(r"(position |line 1, col )(\d+)", back, err.message)
    return ClickHouseError(err.code, message, err.name)


def _multi_statement_error(text: str, pos: int) -> ClickHouseError:
    snippet = text[pos : pos + 40]
    return ch_error(
        62,
        "SYNTAX_ERROR",
        f"Syntax error (Multi-statements are not allowed): failed at position {pos + 1} ({snippet!r}) "
        "(line 1, col 1): . ",
    )


class WarehouseHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    warehouse: Warehouse

    def __init__(self, address: tuple[str, int], warehouse: Warehouse | None, platform_user: PlatformUser):
        if warehouse is not None:
            self.warehouse = warehouse
        self.platform_user = platform_user
        self.policy = guard.Policy(file_roots=(), user=platform_user.name, password=platform_user.password)
        self.max_multipart_bytes = int(os.environ.get("AETL_WAREHOUSE_MAX_MULTIPART_BYTES") or 256 << 20)
        self.keepalives: set[_Keepalive] = set()
        self.watched: dict[Handler, str] = {}  # read-only queries to KILL if their client hangs up
        self._ticking = threading.Event()
        super().__init__(address, Handler)
        threading.Thread(target=self._tick, name="progress-headers", daemon=True).start()

    def _tick(self) -> None:
        while not self._ticking.wait(0.1):
            now = time.monotonic()
            for keeper in list(self.keepalives):
                keeper.tick(now)
            for handler, tag in list(self.watched.items()):
                if handler._client_closed() and self.watched.pop(handler, None) is not None:
                    log.info("client closed the connection: cancelling its query")
                    self.warehouse.kill(tag)

    def server_close(self) -> None:
        self._ticking.set()
        super().server_close()

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ClickHouse HTTP server over chDB (the embedded warehouse)")
    parser.add_argument("--host", default=os.environ.get("AETL_WAREHOUSE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CLICKHOUSE_HTTP_PORT", "8123")))
    parser.add_argument("--data-dir", default=str(data_root() / "warehouse"))
    parser.add_argument("--log-level", default=os.environ.get("AETL_WAREHOUSE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # CLICKHOUSE_PASSWORD, else the file in the data folder (generated if missing); never on argv
    password = ensure_platform_password()
    if not password and not is_loopback_host(args.host):
        log.error(
            "refusing to listen on %s without a password: set CLICKHOUSE_PASSWORD or remove the empty "
            "value so %s is used",
            args.host,
            password_file(),
        )
        return 1
    try:
        server = WarehouseHTTPServer((args.host, args.port), None, PlatformUser(platform_user(), password))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    try:
        warehouse = Warehouse(
            args.data_dir, max_sessions=int(os.environ.get("AETL_WAREHOUSE_MAX_SESSIONS") or 256)
        )
    except Exception as exc:  # e.g. another server owns the folder: chDB holds a lock on <dir>/status
        log.error("cannot open the data folder %s: %s", args.data_dir, exc)
        server.server_close()
        return 1
    server.warehouse = warehouse
    server.policy = guard.Policy(
        file_roots=guard.Policy.roots_from(os.environ.get("AETL_WAREHOUSE_FILE_ROOTS", ""), data_root()),
        user=server.platform_user.name,
        password=server.platform_user.password,
        table_functions=warehouse.names("SELECT lower(name) FROM system.table_functions"),
        engines=warehouse.names(
            "SELECT lower(name) FROM system.table_engines "
            "UNION ALL SELECT lower(name) FROM system.database_engines"
        ),
    )

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "warehouse listening on http://%s:%s data=%s (chDB %s, engine %s)",
        args.host,
        server.server_address[1],
        warehouse.path,
        chdb.__version__,
        warehouse.version,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        warehouse.close()
        log.info("warehouse stopped, data folder released")
    return 0


if __name__ == "__main__":
    sys.exit(main())
