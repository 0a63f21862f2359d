"""Bounded sessions and multipart bodies; no internal exception text and no secret leaves the
server (not to the client, not into the log); no browser may talk to it."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestration.warehouse import sql
from tests.support import WarehouseProcess, warehouse_auth


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseProcess]:
    root = tmp_path_factory.mktemp("small_warehouse")
    env = {**os.environ, "AETL_WAREHOUSE_MAX_SESSIONS": "3", "AETL_WAREHOUSE_MAX_MULTIPART_BYTES": "4096"}
    server = WarehouseProcess(root / "data", root / "warehouse.log", env=env)
    yield server
    assert server.stop() == 0, server.log_tail()


def test_open_sessions_are_limited(small_warehouse: WarehouseProcess) -> None:
    sessions = [f"s-{uuid.uuid4()}" for _ in range(4)]
    with httpx.Client(base_url=small_warehouse.url, auth=warehouse_auth(), timeout=30) as http:
        for sid in sessions[:3]:
            assert http.post("/", params={"session_id": sid}, content=b"SELECT 1").text == "1\n"
        refused = http.post("/", params={"session_id": sessions[3]}, content=b"SELECT 1")
        assert refused.headers["X-ClickHouse-Exception-Code"] == "700", refused.text
        assert "USER_SESSION_LIMIT_EXCEEDED" in refused.text
        # an open session keeps working, and sessionless requests are not sessions
        assert http.post("/", params={"session_id": sessions[0]}, content=b"SELECT 2").text == "2\n"
        assert http.post("/", content=b"SELECT 3").text == "3\n"


def test_session_timeouts_are_bounded(warehouse_url: str) -> None:
    """A session may idle at most ClickHouse's max_session_timeout (3600 s); nonsense is a 374."""
    with httpx.Client(base_url=warehouse_url, auth=warehouse_auth(), timeout=30) as http:
        for value in ("3601", "86400", "-1", "nan", "soon"):
            sid = f"t-{uuid.uuid4()}"
            answer = http.post("/", params={"session_id": sid, "session_timeout": value}, content=b"SELECT 1")
            assert answer.headers["X-ClickHouse-Exception-Code"] == "374", (value, answer.text)
            assert "INVALID_SESSION_TIMEOUT" in answer.text
        sid = f"t-{uuid.uuid4()}"
        ok = http.post("/", params={"session_id": sid, "session_timeout": "5"}, content=b"SELECT 1")
        assert ok.text == "1\n" and ok.headers["Keep-Alive"] == "timeout=5"


def test_multipart_bodies_are_limited(small_warehouse: WarehouseProcess) -> None:
    with httpx.Client(base_url=small_warehouse.url, auth=warehouse_auth(), timeout=30) as http:
        small = {"ext": ("ext.tsv", b"1\n2\n", "text/tab-separated-values")}
        ok = http.post(
            "/", params={"query": "SELECT sum(a) FROM ext", "ext_structure": "a UInt8"}, files=small
        )
        assert ok.text == "3\n", ok.text
        big = {"ext": ("ext.tsv", b"1\n" * 10_000, "text/tab-separated-values")}
        refused = http.post(
            "/", params={"query": "SELECT count() FROM ext", "ext_structure": "a UInt8"}, files=big
        )
        assert refused.status_code == 413, refused.text
        assert "QUERY_IS_TOO_LARGE" in refused.text


def test_an_internal_error_sends_a_code_and_an_id_not_python_text(
    small_warehouse: WarehouseProcess,
) -> None:
    # a ClickHouse-compressed block whose payload is not lz4: the server's own Python fails on it
    header = bytes(16) + bytes([0x82]) + (9 + 25).to_bytes(4, "little") + (1000).to_bytes(4, "little")
    body = header + b"\xff" * 25
    query_id = f"q-{uuid.uuid4()}"
    response = httpx.post(
        small_warehouse.url,
        params={
            "query": "INSERT INTO FUNCTION null('a UInt8') FORMAT Native",
            "decompress": "1",
            "query_id": query_id,
        },
        content=body,
        auth=warehouse_auth(),
    )
    assert response.headers["X-ClickHouse-Exception-Code"] == "1001", response.text
    assert query_id in response.text
    for leak in ("Traceback", "LZ4", "Error:", ".py", "/"):
        assert leak not in response.text.split("(version")[0], response.text
    log = small_warehouse.log_path.read_text()
    assert query_id in log and "Traceback" in log  # the details stay in the server log


@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS", "HEAD"])
def test_requests_from_a_browser_are_refused(warehouse_url: str, method: str) -> None:
    headers = {"Origin": "http://evil.example"}
    response = httpx.request(
        method, warehouse_url, params={"query": "SELECT 1"}, headers=headers, auth=warehouse_auth()
    )
    assert response.status_code == 403
    if method != "HEAD":
        assert "ACCESS_DENIED" in response.text
    assert "access-control-allow-origin" not in {k.lower() for k in response.headers}


def test_a_cross_site_form_post_cannot_run_sql(warehouse_url: str) -> None:
    form = {"query": "SELECT count() FROM file('/etc/passwd', 'LineAsString')"}
    response = httpx.post(warehouse_url, data=form, headers={"Origin": "null"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO t VALUES ('" + "x" * 900 + "hunter2-secret')",
        "SELECT 'hunter2-secret" + "y" * 1000,
        "CREATE DICTIONARY d (k UInt8) PRIMARY KEY k SOURCE(CLICKHOUSE(PASSWORD 'hunter2-secret' TABLE 't'))",
        "SELECT $$hunter2-secret$$",
    ],
)
def test_the_log_helper_masks_before_it_truncates(statement: str) -> None:
    line = sql.for_log(statement)
    assert "hunter2" not in line
    assert len(line) <= 201


def test_no_password_in_the_warehouse_log(warehouse_process: WarehouseProcess, warehouse_url: str) -> None:
    user, password = warehouse_auth()
    httpx.post(warehouse_url, params={"user": user, "password": password}, content=b"SELECT 1")
    httpx.post(warehouse_url, params={"user": user, "password": password + "x"}, content=b"SELECT 1")
    httpx.post(warehouse_url, auth=(user, password), content=f"SELECT '{password}'".encode())
    long_literal = "SELECT '" + "z" * 2000 + password + "'"
    httpx.post(warehouse_url, auth=(user, password), content=long_literal.encode())
    log = Path(warehouse_process.log_path).read_text()
    assert re.search(r"query id=\S+ session=- ok", log)  # queries are logged
    assert password not in log
