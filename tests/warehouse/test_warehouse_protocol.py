"""The ClickHouse HTTP protocol as clients use it: errors, sessions, settings, parameters, compression."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import uuid
import zlib

import httpx
import lz4.block
import lz4.frame
import pytest
import zstandard
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, StreamFailureError
from clickhouse_connect.driver.external import ExternalData

from orchestration.warehouse.client import get_client
from tests.support import WarehouseProcess, basic_auth_header, warehouse_auth


def test_ping_and_root_answer_ok(http: httpx.Client) -> None:
    assert http.get("/ping").text == "Ok.\n"
    assert http.get("/").text == "Ok.\n"


def test_malformed_query_answers_clickhouse_error_and_server_survives(
    client: Client, http: httpx.Client
) -> None:
    with pytest.raises(DatabaseError) as info:
        client.query("SELEC 1")
    assert info.value.code == 62
    assert "Syntax error" in str(info.value)
    resp = http.post("/", content=b"SELECT * FROM no_such_db.no_such_table")
    assert resp.status_code == 404
    assert resp.headers["X-ClickHouse-Exception-Code"] in ("60", "81")
    assert resp.text.startswith("Code: ")
    assert "DB::Exception" in resp.text
    assert client.command("SELECT 1") == 1
    assert http.get("/ping").text == "Ok.\n"


def test_late_error_in_stream_raises(client: Client) -> None:
    query = "SELECT throwIf(number = 150000 AND sleep(0.5) = 0) FROM numbers(200000) SETTINGS max_threads=1"
    got = 0
    with pytest.raises(StreamFailureError) as info, client.query_row_block_stream(query) as stream:
        for block in stream:
            got += len(block)
    assert "Code: 395" in str(info.value)
    assert 0 < got < 200_000
    with pytest.raises(DatabaseError) as info2:
        client.query(query)
    assert info2.value.code == 395
    assert client.command("SELECT 2") == 2


def test_late_error_is_a_tagged_exception_block(http: httpx.Client) -> None:
    # the sleep makes sure the first rows are out before the failure
    query = (
        b"SELECT throwIf(number = 150000 AND sleep(0.5) = 0) FROM numbers(200000) "
        b"SETTINGS max_threads = 1 FORMAT TSV"
    )
    resp = http.post("/", content=query)
    assert resp.status_code == 200  # the first rows were already sent
    tag = resp.headers["X-ClickHouse-Exception-Tag"]
    assert f"__exception__\r\n{tag}\r\nCode: 395." in resp.text
    assert resp.text.endswith(f" {tag}\r\n__exception__\r\n")


def test_headers_query_id_format_and_summary(http: httpx.Client, database: str) -> None:
    qid = f"q-{uuid.uuid4()}"
    resp = http.post("/", params={"query_id": qid}, content=b"SELECT 1 FORMAT JSONEachRow")
    assert resp.headers["X-ClickHouse-Query-Id"] == qid
    assert resp.headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert resp.text == '{"1":1}\n'
    resp = http.post("/", content=f"CREATE TABLE {database}.h (a UInt8) ENGINE = Memory".encode())
    assert resp.status_code == 200
    assert "X-ClickHouse-Format" not in resp.headers
    assert "X-ClickHouse-Summary" in resp.headers
    resp = http.post("/", params={"query": f"INSERT INTO {database}.h FORMAT CSV"}, content=b"1\n2\n3\n")
    assert resp.status_code == 200, resp.text
    assert '"written_rows":"3"' in resp.headers["X-ClickHouse-Summary"]


def test_with_names_header_sent_once_over_many_chunks(http: httpx.Client) -> None:
    resp = http.post("/", content=b"SELECT number AS n FROM numbers(300000) FORMAT TSVWithNamesAndTypes")
    lines = resp.text.splitlines()
    assert lines[:3] == ["n", "UInt64", "0"]
    assert len(lines) == 300_002
    assert lines.count("n") == 1


def test_default_format_and_database_params(http: httpx.Client, database: str) -> None:
    http.post("/", content=f"CREATE TABLE {database}.d (a UInt8) ENGINE = Memory".encode())
    resp = http.get(
        "/",
        params={
            "query": "SELECT currentDatabase() AS db",
            "database": database,
            "default_format": "JSONEachRow",
        },
    )
    assert resp.json() == {"db": database}
    assert http.get("/", params={"query": "SELECT currentDatabase()"}).text == "default\n"
    resp = http.get("/", params={"query": "SELECT 1", "database": "no_such_database_x"})
    assert resp.headers["X-ClickHouse-Exception-Code"] == "81"


def test_get_is_readonly(http: httpx.Client) -> None:
    resp = http.get("/", params={"query": "CREATE DATABASE should_not_exist_get"})
    assert resp.headers["X-ClickHouse-Exception-Code"] == "164"
    assert http.get("/", params={"query": "EXISTS DATABASE should_not_exist_get"}).text == "0\n"


def test_exists_database_is_answered(client: Client) -> None:
    assert client.command("EXISTS DATABASE default") == 1
    assert client.command("EXISTS DATABASE no_such_database_y") == 0


def test_sessions_keep_temporary_tables_apart(warehouse_url: str) -> None:
    a = get_client(warehouse_url, session_id=f"s-{uuid.uuid4()}")
    b = get_client(warehouse_url, session_id=f"s-{uuid.uuid4()}")
    try:
        a.command("CREATE TEMPORARY TABLE tmp_x (v UInt32)")
        a.insert("tmp_x", [[1], [2], [3]], column_names=["v"])
        assert a.command("SELECT sum(v) FROM tmp_x") == 6
        with pytest.raises(DatabaseError) as info:
            b.command("SELECT sum(v) FROM tmp_x")
        assert info.value.code == 60
        a.command("SET max_threads = 1")
        assert a.command("SELECT getSetting('max_threads')") == 1
        assert b.command("SELECT getSetting('max_threads')") != 1
    finally:
        a.close()
        b.close()


def test_busy_session_answers_session_is_locked(warehouse_url: str) -> None:
    sid = f"s-{uuid.uuid4()}"
    results: dict[str, httpx.Response] = {}

    def slow() -> None:
        results["slow"] = httpx.post(
            warehouse_url,
            auth=warehouse_auth(),
            params={"session_id": sid},
            content=b"SELECT sleep(2)",
            timeout=30,
        )

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.7)
    resp = httpx.post(
        warehouse_url, auth=warehouse_auth(), params={"session_id": sid}, content=b"SELECT 1", timeout=30
    )
    t.join()
    assert resp.headers.get("X-ClickHouse-Exception-Code") == "373", resp.text
    assert "locked" in resp.text
    assert results["slow"].status_code == 200
    # once the first query is done the session is free again
    assert (
        httpx.post(warehouse_url, auth=warehouse_auth(), params={"session_id": sid}, content=b"SELECT 7").text
        == "7\n"
    )


def test_session_check_unknown_session(http: httpx.Client) -> None:
    resp = http.post(
        "/", params={"session_id": f"nope-{uuid.uuid4()}", "session_check": "1"}, content=b"SELECT 1"
    )
    assert resp.headers["X-ClickHouse-Exception-Code"] == "372"


def test_settings_apply_per_request_and_unknown_setting_fails(client: Client, http: httpx.Client) -> None:
    assert client.command("SELECT getSetting('max_threads')", settings={"max_threads": 1}) == 1
    assert client.command("SELECT getSetting('max_threads')") != 1  # restored afterwards
    resp = http.post("/", params={"max_block_size": "1234"}, content=b"SELECT getSetting('max_block_size')")
    assert resp.text == "1234\n"
    assert http.post("/", content=b"SELECT getSetting('max_block_size')").text != "1234\n"
    resp = http.post("/", params={"no_such_setting_zz": "1"}, content=b"SELECT 1")
    assert resp.headers["X-ClickHouse-Exception-Code"] == "115"
    assert "Unknown setting" in resp.text
    assert http.post("/", content=b"SELECT 1").text == "1\n"


def test_query_parameters_bind(client: Client, http: httpx.Client) -> None:
    row = client.query(
        "SELECT {a:Int32} + 1, {s:String}, {arr:Array(String)}, {n:Nullable(Int8)}",
        parameters={"a": 41, "s": "it's a\ttab\\", "arr": ["x", "y'"], "n": None},
    ).result_rows[0]
    assert row == (42, "it's a\ttab\\", ["x", "y'"], None)
    resp = http.post("/", params={"param_x": "5"}, content=b"SELECT {x:UInt8} * 2")
    assert resp.text == "10\n"


def test_multi_statements_are_refused(client: Client, http: httpx.Client) -> None:
    with pytest.raises(DatabaseError) as info:
        client.command("SELECT 1; SELECT 2")
    assert info.value.code == 62
    assert "Multi-statements are not allowed" in str(info.value)
    assert http.post("/", content=b"SELECT 1;").text == "1\n"  # a trailing semicolon is fine
    assert http.post("/", content=b"SELECT ';' -- ; SELECT 2\n").text == ";\n"


def test_non_utf8_literals(http: httpx.Client, database: str) -> None:
    http.post("/", content=f"CREATE TABLE {database}.b (s String) ENGINE = Memory".encode())
    resp = http.post("/", content=f"INSERT INTO {database}.b VALUES ('\xff\xfe\\x00ok')".encode("latin-1"))
    assert resp.status_code == 200, resp.text
    assert http.post("/", content=f"SELECT hex(s) FROM {database}.b".encode()).text == "FFFE006F6B\n"
    resp = http.post("/", content=b"SELECT length($bin$\x80\x81\x82$bin$)")
    assert resp.text == "3\n"


def _compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    # two frames back to back, as clickhouse-connect sends one lz4 frame per block
    half = len(data) // 2
    return lz4.frame.compress(data[:half]) + lz4.frame.compress(data[half:])


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "lz4"])
def test_compressed_request_bodies(http: httpx.Client, database: str, encoding: str) -> None:
    http.post("/", content=f"CREATE TABLE {database}.c (a UInt32, s String) ENGINE = Memory".encode())
    data = "".join(f"{i},v{i}\n" for i in range(10_000)).encode()
    resp = http.post(
        "/",
        params={"query": f"INSERT INTO {database}.c FORMAT CSV"},
        content=_compress(encoding, data),
        headers={"Content-Encoding": encoding},
    )
    assert resp.status_code == 200, resp.text
    resp = http.post(
        "/",
        content=_compress(encoding, f"SELECT count() FROM {database}.c".encode()),
        headers={"Content-Encoding": encoding},
    )
    assert resp.text == "10000\n"


def test_chunked_request_body(http: httpx.Client, database: str) -> None:
    http.post("/", content=f"CREATE TABLE {database}.ch (a UInt32) ENGINE = Memory".encode())

    def gen():  # httpx sends an iterator with Transfer-Encoding: chunked
        yield f"INSERT INTO {database}.ch FOR".encode()
        yield b"MAT TSV\n1\n2"
        yield b"\n3\n"

    resp = http.post("/", content=gen())
    assert resp.status_code == 200, resp.text
    assert http.post("/", content=f"SELECT sum(a) FROM {database}.ch".encode()).text == "6\n"


@pytest.mark.parametrize("encoding", ["zstd", "lz4", "gzip"])
def test_truncated_compressed_insert_is_refused_and_not_applied(
    warehouse_url: str, http: httpx.Client, database: str, encoding: str
) -> None:
    http.post("/", content=f"CREATE TABLE {database}.tr (a UInt32) ENGINE = MergeTree ORDER BY a".encode())
    data = "".join(f"{i}\n" for i in range(200_000)).encode()
    body = _compress(encoding, data)
    if encoding == "lz4":
        body = lz4.frame.compress(data)
    truncated = body[: len(body) // 2]
    resp = httpx.post(
        warehouse_url,
        auth=warehouse_auth(),
        params={"query": f"INSERT INTO {database}.tr FORMAT TSV"},
        content=truncated,
        headers={"Content-Encoding": encoding},
        timeout=30,
    )
    assert resp.status_code >= 400
    assert "X-ClickHouse-Exception-Code" in resp.headers
    assert http.post("/", content=f"SELECT count() FROM {database}.tr".encode()).text == "0\n"
    assert http.get("/ping").text == "Ok.\n"


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip", "deflate"])
def test_compressed_responses(warehouse_url: str, encoding: str) -> None:
    query = b"SELECT number FROM numbers(200000) FORMAT TSV"
    with (
        httpx.Client(timeout=30, auth=warehouse_auth()) as h,
        h.stream(
            "POST",
            warehouse_url,
            params={"enable_http_compression": "1"},
            content=query,
            headers={"Accept-Encoding": encoding},
        ) as resp,
    ):
        assert resp.headers["Content-Encoding"] == encoding
        raw = b"".join(resp.iter_raw())  # as sent, not decoded by httpx
    if encoding == "lz4":
        raw = lz4.frame.decompress(raw)
    elif encoding == "zstd":
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    elif encoding == "gzip":
        raw = gzip.decompress(raw)
    else:
        raw = zlib.decompress(raw)
    text = raw.decode()
    assert text.count("\n") == 200_000
    c = get_client(warehouse_url, compress=encoding)
    try:
        assert c.query("SELECT sum(number) FROM numbers(1000)").result_rows == [(499500,)]
        table = c.query_arrow("SELECT number FROM numbers(300000)")
        assert table.num_rows == 300_000
        assert len(c.query("SELECT number FROM numbers(300000)").result_rows) == 300_000
    finally:
        c.close()


def test_external_tables(client: Client) -> None:
    ext = ExternalData(data=b"1\ta\n2\tb\n3\tc\n", file_name="ext", structure=["id UInt32", "name String"])
    rows = client.query("SELECT sum(id), groupArray(name) FROM ext", external_data=ext).result_rows
    assert rows == [(6, ["a", "b", "c"])]


def test_concurrent_queries_run_in_parallel(warehouse_url: str) -> None:
    """Four sleeps of one second on four connections: with a global lock this takes four seconds."""

    def sleeper() -> None:
        c = get_client(warehouse_url)
        try:
            c.command("SELECT sleep(1)")
        finally:
            c.close()

    started = time.monotonic()
    threads = [threading.Thread(target=sleeper) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("workers", [2, 8])
def test_concurrent_clients_insert_and_select(warehouse_url: str, database: str, workers: int) -> None:
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            c = get_client(warehouse_url)
            try:
                table = f"{database}.w{workers}_{k}"
                c.command(f"CREATE TABLE {table} (id UInt32, k UInt8) ENGINE = MergeTree ORDER BY id")
                for batch in range(5):
                    c.insert(table, [[batch * 1000 + i, k] for i in range(1000)], column_names=["id", "k"])
                    assert c.command(f"SELECT count() FROM {table}") == (batch + 1) * 1000
                assert c.query(f"SELECT DISTINCT k FROM {table}").result_rows == [(k,)]
            finally:
                c.close()
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _native_block(data: bytes) -> bytes:
    """ClickHouse block compression (lz4) as sent with decompress=1; the checksum is not verified."""
    comp = lz4.block.compress(data, store_size=False)
    return (
        b"\0" * 16 + b"\x82" + (len(comp) + 9).to_bytes(4, "little") + len(data).to_bytes(4, "little") + comp
    )


def test_decompress_param_reads_clickhouse_compressed_blocks(http: httpx.Client, database: str) -> None:
    assert (
        http.post(
            "/", params={"decompress": "1"}, content=_native_block(b"SELECT ") + _native_block(b"42")
        ).text
        == "42\n"
    )
    http.post("/", content=f"CREATE TABLE {database}.dc (a UInt32) ENGINE = Memory".encode())
    query = {"decompress": "1", "query": f"INSERT INTO {database}.dc FORMAT TSV"}
    body = _native_block(b"1\n2\n") + _native_block(b"3\n")
    assert http.post("/", params=query, content=body).status_code == 200
    resp = http.post("/", params=query, content=body[:-3])
    assert resp.headers["X-ClickHouse-Exception-Code"] == "33"
    assert http.post("/", content=f"SELECT sum(a) FROM {database}.dc".encode()).text == "6\n"


def test_idle_session_expires(http: httpx.Client) -> None:
    session = {"session_id": f"s-{uuid.uuid4()}", "session_timeout": "1"}
    assert http.post("/", params=session, content=b"CREATE TEMPORARY TABLE tt (a UInt8)").status_code == 200
    assert (
        http.post("/", params={**session, "session_check": "1"}, content=b"EXISTS TEMPORARY TABLE tt").text
        == "1\n"
    )
    time.sleep(2.5)
    resp = http.post("/", params={**session, "session_check": "1"}, content=b"SELECT 1")
    assert resp.headers["X-ClickHouse-Exception-Code"] == "372"


def test_url_settings_in_a_session_do_not_override_the_sessions_own(warehouse_url: str) -> None:
    c = get_client(warehouse_url, session_id=f"s-{uuid.uuid4()}")
    try:
        c.command("SET max_block_size = 777")
        assert c.command("SELECT getSetting('max_block_size')", settings={"max_block_size": 555}) == 555
        assert c.command("SELECT getSetting('max_block_size')") == 777
    finally:
        c.close()


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip"])
def test_streamed_results_with_compression(warehouse_url: str, encoding: str) -> None:
    c = get_client(warehouse_url, compress=encoding)
    try:
        n = 0
        with c.query_arrow_stream("SELECT number, toString(number) AS s FROM numbers(500000)") as stream:
            for batch in stream:
                n += batch.num_rows
        assert n == 500_000
        rows = 0
        with c.query_row_block_stream("SELECT number FROM numbers(300000)") as blocks:
            for block in blocks:
                rows += len(block)
        assert rows == 300_000
    finally:
        c.close()


def test_readonly_param_refuses_writes_and_is_not_sticky(http: httpx.Client, database: str) -> None:
    resp = http.post(
        "/",
        params={"readonly": "1"},
        content=f"CREATE TABLE {database}.ro (a UInt8) ENGINE = Memory".encode(),
    )
    assert resp.headers["X-ClickHouse-Exception-Code"] == "164"
    assert http.post("/", params={"readonly": "1"}, content=b"SELECT 1").text == "1\n"
    resp = http.post("/", content=f"CREATE TABLE {database}.ro (a UInt8) ENGINE = Memory".encode())
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("fmt", ["TSV", "ArrowStream", "Native"])
@pytest.mark.parametrize("in_session", [False, True])
def test_client_disconnect_mid_stream_leaves_connection_clean(
    warehouse_url: str, fmt: str, in_session: bool
) -> None:
    sid = f"s-{uuid.uuid4()}"
    path = f"/?session_id={sid}" if in_session else "/"
    query = f"SELECT number, toString(number) FROM numbers(100000000) FORMAT {fmt}"
    url = httpx.URL(warehouse_url)
    with socket.create_connection((url.host, url.port)) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: x\r\n{basic_auth_header()}\r\n"
                f"Content-Length: {len(query)}\r\n\r\n{query}"
            ).encode()
        )
        received = 0
        while received < 300_000:
            received += len(sock.recv(65536))
    params = {"session_id": sid} if in_session else {}
    deadline = time.monotonic() + 10
    while True:  # the server notices the disconnect at its next write
        resp = httpx.post(warehouse_url, auth=warehouse_auth(), params=params, content=b"SELECT 1")
        if resp.headers.get("X-ClickHouse-Exception-Code") != "373" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert resp.text == "1\n"
    for _ in range(5):
        assert (
            httpx.post(warehouse_url, auth=warehouse_auth(), params=params, content=b"SELECT 2").text == "2\n"
        )


def test_bad_row_in_insert_answers_error(http: httpx.Client, database: str) -> None:
    http.post("/", content=f"CREATE TABLE {database}.bad (a UInt32) ENGINE = MergeTree ORDER BY a".encode())
    body = "".join(f"{i}\n" for i in range(1000)) + "not-a-number\n" + "".join(f"{i}\n" for i in range(1000))
    resp = http.post("/", params={"query": f"INSERT INTO {database}.bad FORMAT TSV"}, content=body.encode())
    assert resp.status_code >= 400
    assert resp.headers["X-ClickHouse-Exception-Code"] in ("27", "6", "72", "117")
    assert http.post("/", content=f"SELECT count() FROM {database}.bad".encode()).text == "0\n"
    assert http.post("/", content=b"SELECT 3").text == "3\n"


def test_back_to_back_queries_in_one_session_never_find_it_locked(warehouse_url: str) -> None:
    """The session is released before the last bytes of an answer go out, so the next query may follow."""
    c = get_client(warehouse_url, session_id=f"s-{uuid.uuid4()}")
    try:
        for i in range(60):
            with c.query_arrow_stream("SELECT number FROM numbers(20000)") as stream:
                assert sum(batch.num_rows for batch in stream) == 20_000
            assert c.command(f"SELECT {i}") == i
            with pytest.raises(DatabaseError):
                c.command("SELEC 1")
    finally:
        c.close()


def test_summary_counts_rows_read_and_result_rows(client: Client) -> None:
    summary = client.query("SELECT count() FROM numbers(1000000)").summary
    assert summary["read_rows"] == "1000000"
    assert summary["result_rows"] == "1"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 13;",
        "SELECT 13;\n",
        "SELECT 13;\u00a0",
        "SELECT 13; /* c */",
        "SELECT 13; /* a */ ;",
        "SELECT 13; /* in; */ ;",
    ],
)
def test_trailing_terminators_are_not_a_second_statement(client: Client, query: str) -> None:
    assert client.query(query).result_rows == [(13,)]
    assert client.raw_query(query, fmt="TabSeparated") == b"13\n"


def test_inline_insert_data_keeps_semicolons_and_with_clause(client: Client, database: str) -> None:
    table = f"{database}.semi"
    client.command(f"CREATE TABLE {table} (s String) ENGINE = MergeTree ORDER BY s")
    client.command(f"INSERT INTO {table} (s) FORMAT TabSeparated\nvalue_1;\n")
    client.query(f"WITH 1 AS y INSERT INTO {table} (s) FORMAT TabSeparated\nvalue_2;\n")
    client.query(
        f"WITH {{SELECT:Int32}} AS value INSERT INTO {table} (s) FORMAT TabSeparated\nvalue_3;\n",
        parameters={"SELECT": 13},
    )
    rows = client.query(f"SELECT s FROM {table} ORDER BY s").result_rows
    assert rows == [("value_1;",), ("value_2;",), ("value_3;",)]


def test_binary_heredoc_parameters(client: Client) -> None:
    assert client.raw_query("SELECT $v$;", parameters={"$v$": b"13"}, fmt="TabSeparated") == b"13\n"
    csv = client.raw_query(
        "SELECT col2, col1 FROM format(CSVWithNames, $xx$)", parameters={"$xx$": b"col1,col2\n100,700"}
    )
    assert csv == b"700\t100\n"
    row = client.query("SELECT hex($b$) AS h", parameters={"$b$": b"\xff\x00\x80"}).result_rows
    assert row == [("FF0080",)]


def test_wait_end_of_query_spools_large_answers(http: httpx.Client) -> None:
    """wait_end_of_query=1 buffers the answer (beyond 64 MB on disk) and sends it with a length."""
    query = b"SELECT repeat('x', 100) FROM numbers(800000)"
    resp = http.post("/", params={"wait_end_of_query": "1", "enable_http_compression": "0"}, content=query)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == 800_000 * 101
    assert '"result_rows":"800000"' in resp.headers["X-ClickHouse-Summary"]
    resp = http.post(
        "/",
        params={"wait_end_of_query": "1"},
        content=b"SELECT throwIf(number = 150000 AND sleep(0.5) = 0) FROM numbers(200000) "
        b"SETTINGS max_threads=1",
    )
    assert resp.status_code == 500  # a late failure is still a plain error answer when buffered
    assert resp.headers["X-ClickHouse-Exception-Code"] == "395"


def test_progress_headers_keep_long_statements_alive(http: httpx.Client, client: Client) -> None:
    progress = {"send_progress_in_http_headers": "1", "http_headers_progress_interval_ms": "300"}
    resp = http.post("/", params={**progress, "wait_end_of_query": "1"}, content=b"SELECT sleep(1) + 41")
    assert resp.status_code == 200
    assert resp.text == "41\n"
    assert len(resp.headers.get_list("X-ClickHouse-Progress")) >= 2
    # a failure after the status line went out: 200 with the exception code, as ClickHouse does
    resp = http.post("/", params=progress, content=b"SELECT throwIf(sleep(1) = 0)")
    assert resp.status_code == 200
    assert resp.headers["X-ClickHouse-Exception-Code"] == "395"
    with pytest.raises(DatabaseError) as info:
        client.query("SELECT throwIf(sleep(1) = 0)", settings={"http_headers_progress_interval_ms": 300})
    assert info.value.code == 395
    assert client.command("SELECT sleep(1) + 1", settings={"http_headers_progress_interval_ms": 300}) == 1


@pytest.mark.parametrize("wait", ["0", "1"])
def test_client_hang_up_cancels_read_only_query(warehouse_url: str, http: httpx.Client, wait: str) -> None:
    marker = uuid.uuid4().hex
    query = (
        f"SELECT sum(sleepEachRow(0.001)) FROM numbers(100000) SETTINGS max_block_size = 100 /* {marker} */"
    )
    url = httpx.URL(warehouse_url)
    path = f"/?wait_end_of_query={wait}&cancel_http_readonly_queries_on_client_close=1"
    running = (
        f"SELECT count() FROM system.processes WHERE query LIKE '%{marker}%' AND query NOT LIKE '%processes%'"
    )
    with socket.create_connection((url.host, url.port)) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: x\r\n{basic_auth_header()}\r\n"
                f"Content-Length: {len(query)}\r\n\r\n{query}"
            ).encode()
        )
        time.sleep(1)
        assert http.post("/", content=running.encode()).text == "1\n"
    deadline = time.monotonic() + 5
    while http.post("/", content=running.encode()).text != "0\n":
        assert time.monotonic() < deadline, "the query kept running after its client hung up"
        time.sleep(0.2)


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "99999999999999999999999"])
def test_malformed_content_length_is_a_400_and_the_server_carries_on(
    warehouse_url: str, warehouse_process: WarehouseProcess, length: str
) -> None:
    url = httpx.URL(warehouse_url)
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        head = f"POST / HTTP/1.1\r\nHost: x\r\n{basic_auth_header()}\r\nContent-Length: {length}\r\n\r\n"
        sock.sendall(head.encode() + b"SELECT 1")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Invalid Content-Length" in answer
    assert "Traceback" not in warehouse_process.log_tail()
    assert httpx.post(warehouse_url, auth=warehouse_auth(), content=b"SELECT 3").text == "3\n"
