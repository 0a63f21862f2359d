"""The HTTP request handler: ClickHouse's HTTP protocol on top of the pool, the guard and the codecs.

One request: refuse browsers, authenticate, read the statement (and, for ``INSERT … FORMAT``, spool
its data), let the guard decide what it may reach, run it on a session or pool connection, and
answer (streamed, spooled or buffered) with ClickHouse's headers and errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import select
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from orchestration.warehouse import guard, sql
from orchestration.warehouse.auth import authenticate, browser_refused
from orchestration.warehouse.bodies import BodyError, content_length
from orchestration.warehouse.bodies import decoded as _decoded
from orchestration.warehouse.bodies import native_decompressed as _native_decompressed
from orchestration.warehouse.bodies import raw_body as _raw_body
from orchestration.warehouse.errors import (
    STATUS_BY_NAME,
    ClickHouseError,
    ch_error,
    internal_error,
    parse_chdb_error,
)
from orchestration.warehouse.output import (
    PYTHON_ONLY_FORMATS,
    RESPONSE_ENCODINGS,
    Compressor,
    Reframer,
    streamable_format,
)
from orchestration.warehouse.pool import Conn
from orchestration.warehouse.pool import quote_ident as _ident

if TYPE_CHECKING:
    from orchestration.warehouse.server import WarehouseHTTPServer

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
SPOOL_MEMORY = 64 * 1024 * 1024
MAX_QUERY_BYTES = 256 * 1024 * 1024
INSERT_APPEND_CHUNK = 4 * 1024 * 1024


# ClickHouse's default max_session_timeout: a longer session is refused, as it refuses it
MAX_SESSION_TIMEOUT = 3600.0


def session_timeout(params: Mapping[str, str]) -> float:
    """The `session_timeout` parameter in seconds (default 60); 374 unless a number in [0, 3600]."""
    try:
        timeout = float(params.get("session_timeout") or 60)
    except ValueError:
        raise ch_error(374, "INVALID_SESSION_TIMEOUT", "Invalid session timeout") from None
    if not 0 <= timeout <= MAX_SESSION_TIMEOUT:  # NaN fails this too
        raise ch_error(
            374,
            "INVALID_SESSION_TIMEOUT",
            f"Session timeout {params.get('session_timeout')} is out of range [0, {MAX_SESSION_TIMEOUT:.0f}]",
        )
    return timeout


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
        try:
            length = content_length(self.headers)
        except BodyError as exc:
            # the body's end is unknown: answer and close, as ClickHouse does for a malformed request
            self.close_connection = True
            self._simple(400, f"{exc}\n".encode())
            return
        has_body = self.command == "POST" and (
            (length or 0) > 0 or "chunked" in (self.headers.get("Transfer-Encoding") or "")
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
                timeout = session_timeout(req.params)
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
        guard.check_settings(req.settings.items(), self.server.policy)
        conn.apply_settings(req.settings)
        for name, data, structure, fmt in req.external:
            conn.dirty = True
            # the structure comes from the client: it must not smuggle in an engine that reaches out
            create = self._inspect(conn, req, f"CREATE TEMPORARY TABLE {_ident(name)} ({structure})").text
            conn.run(create)
            ins = conn.start_insert(f"INSERT INTO {_ident(name)}", fmt)
            try:
                ins.append(data)
                ins.finish()
            except RuntimeError as exc:
                raise parse_chdb_error(exc) from None

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
            ins = conn.start_insert(statement, split.fmt)
            try:
                while data := spool.read(INSERT_APPEND_CHUNK):
                    ins.append(data)
                result = ins.finish()
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    ins.cancel()
                conn.flush()
                if isinstance(exc, RuntimeError):
                    raise parse_chdb_error(exc) from None
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
            with contextlib.suppress(ClickHouseError):  # an invalid one is answered with its own error
                self.send_header("Keep-Alive", f"timeout={int(session_timeout(req.params))}")

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
            comp = Compressor(encoding)
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
        stream = conn.start_stream(query, fmt, req.bind)
        finished = False

        def next_chunk() -> bytes | None:
            nonlocal finished
            try:
                res = conn.fetch(stream)
            except ClickHouseError:
                finished = True
                raise
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
            comp = Compressor(encoding) if encoding else None
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
                conn.cancel_stream(stream)

    def _collect_and_send(
        self, req: Request, fmt: str, next_chunk: Callable[[], bytes | None], started: float
    ) -> None:
        """``wait_end_of_query=1``: the whole answer into a spool (memory, then the engine's tmp
        folder), then sent with Content-Length; any error is still a plain error answer."""
        reframer = Reframer(fmt)
        encoding = self._encoding(req)
        comp = Compressor(encoding) if encoding else None
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
