"""Statements that reach the host's files, URLs, processes or other servers are refused (497),
wherever they hide in the statement; file() reads only inside the import folders."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from orchestration.warehouse.credentials import data_root
from tests.support import warehouse_auth

IMPORTS = data_root() / "imports"


def assert_denied(response: httpx.Response, what: str = "") -> None:
    assert response.status_code == 403, response.text
    assert response.headers["X-ClickHouse-Exception-Code"] == "497", response.text
    assert "ACCESS_DENIED" in response.text
    assert what.lower() in response.text.lower()


REFUSED = [
    ("SELECT count() FROM file('/etc/passwd', 'LineAsString')", "file()"),
    ("SELECT file('/etc/passwd')", "file()"),
    ("WITH x AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT count() FROM x", "file()"),
    ("SELECT * FROM (SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String'))", "url"),
    ("DESCRIBE TABLE url('http://127.0.0.1:1/', 'CSV')", "url"),
    ("SELECT * FROM s3('http://127.0.0.1:1/b/k.csv', 'CSV', 'a String')", "s3"),
    ("SELECT * FROM remote('127.0.0.1:9000', system.one)", "remote"),
    ("SELECT * FROM remoteSecure('127.0.0.1:9440', system.one)", "remoteSecure"),
    ("SELECT * FROM cluster('default', system.one)", "cluster"),
    ("SELECT * FROM mysql('127.0.0.1:3306', 'd', 't', 'u', 'p')", "mysql"),
    ("SELECT * FROM postgresql('127.0.0.1:5432', 'd', 't', 'u', 'p')", "postgresql"),
    ("SELECT * FROM executable('cat /etc/passwd', 'TSV', 'a String')", "executable"),
    ("SELECT * FROM hdfs('hdfs://127.0.0.1:9000/x', 'TSV', 'a String')", "hdfs"),
    ("SELECT * FROM sqlite('/tmp/x.db', 't')", "sqlite"),
    ("SELECT * FROM jdbc('jdbc:x', 't')", "jdbc"),
    ("SELECT * FROM odbc('DSN=x', 't')", "odbc"),
    ("SELECT * FROM mongodb('127.0.0.1:27017', 'd', 't', 'u', 'p', 'a String')", "mongodb"),
    ("SELECT * FROM redis('127.0.0.1:6379', 'k', 'k String')", "redis"),
    ("SELECT * FROM azureBlobStorage('http://127.0.0.1:1', 'c', 'b')", "azureBlobStorage"),
    ("SELECT * FROM Python(x)", "python"),
    ("SELECT * FROM numbers(3) INTO OUTFILE '/tmp/aetl_outfile.csv'", "OUTFILE"),
    ("INSERT INTO FUNCTION file('/tmp/aetl_written.csv', 'CSV') SELECT 1", "file()"),
    ("INSERT INTO FUNCTION url('http://127.0.0.1:1/', 'CSV', 'a UInt8') SELECT 1", "url"),
    ("CREATE TABLE guard_url (a String) ENGINE = URL('http://127.0.0.1:1/', CSV)", "Engine URL"),
    ("CREATE TABLE guard_file (a String) ENGINE = File(CSV, '/etc/passwd')", "Engine File"),
    ("CREATE TABLE guard_exe (a String) ENGINE = Executable('cat /etc/passwd', TSV)", "Engine Executable"),
    ("CREATE TABLE guard_s3 AS s3('http://127.0.0.1:1/b/k.csv', 'CSV', 'a String')", "s3"),
    ("CREATE TABLE guard_pg (a String) ENGINE = PostgreSQL('h:5432', 'd', 't', 'u', 'p')", "PostgreSQL"),
    ("CREATE TABLE guard_d (a String) ENGINE = Distributed('default', system, one)", "Distributed"),
    ("CREATE DATABASE guard_fs ENGINE = Filesystem('/etc')", "Filesystem"),
    ("CREATE DATABASE guard_my ENGINE = MySQL('h:3306', 'd', 'u', 'p')", "MySQL"),
    ("CREATE VIEW guard_v AS SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')", "url"),
    (
        "CREATE DICTIONARY guard_http (id UInt64, v String) PRIMARY KEY id "
        "SOURCE(HTTP(URL 'http://127.0.0.1:1/' FORMAT 'TSV')) LAYOUT(FLAT()) LIFETIME(0)",
        "Dictionary source HTTP",
    ),
    (
        "CREATE DICTIONARY guard_file_d (id UInt64, v String) PRIMARY KEY id "
        "SOURCE(FILE(PATH '/etc/passwd' FORMAT 'TSV')) LAYOUT(FLAT()) LIFETIME(0)",
        "Dictionary source FILE",
    ),
    (
        "CREATE DICTIONARY guard_remote (id UInt64, v String) PRIMARY KEY id "
        "SOURCE(CLICKHOUSE(HOST '10.1.1.1' PORT 9000 TABLE 't')) LAYOUT(FLAT()) LIFETIME(0)",
        "another server",
    ),
    ("SYSTEM SHUTDOWN", "SYSTEM SHUTDOWN"),
    ("SYSTEM RELOAD CONFIG", "SYSTEM RELOAD CONFIG"),
    ("BACKUP TABLE system.one TO File('/tmp/aetl_backup')", "BACKUP"),
    ("SELECT 1 SETTINGS format_schema = '/etc/passwd:Message'", "format_schema"),
    ("SELECT catboostEvaluate('/etc/passwd', 1)", "catboostEvaluate"),
    # a storage on a disk defined in the statement reaches a URL, another server or any folder
    (
        "CREATE TABLE guard_web (a String) ENGINE = MergeTree ORDER BY a "
        "SETTINGS disk = disk(type = 'web', endpoint = 'http://127.0.0.1:1/')",
        "disk",
    ),
    (
        "CREATE TABLE guard_s3d (a String) ENGINE = MergeTree ORDER BY a SETTINGS disk = "
        "disk(type = 's3', endpoint = 'http://127.0.0.1:1/b/', access_key_id = 'k', secret_access_key = 's')",
        "disk",
    ),
    (
        "CREATE TABLE guard_local (a String) ENGINE = MergeTree ORDER BY a "
        "SETTINGS disk = disk(type = 'local', path = '/etc/')",
        "disk",
    ),
    (
        "ATTACH TABLE guard_att UUID '5b1c6a2e-0000-4000-8000-000000000001' (a String) ENGINE = MergeTree "
        "ORDER BY a SETTINGS disk = disk(type = 'web', endpoint = 'http://127.0.0.1:1/')",
        "disk",
    ),
]


@pytest.mark.parametrize(("statement", "what"), REFUSED)
def test_reaching_outside_is_refused(http: httpx.Client, statement: str, what: str) -> None:
    assert_denied(http.post("/", content=statement.encode()), what)


def test_refused_writes_leave_no_file(http: httpx.Client) -> None:
    http.post("/", content=b"INSERT INTO FUNCTION file('/tmp/aetl_written.csv', 'CSV') SELECT 1")
    http.post("/", content=b"SELECT * FROM numbers(3) INTO OUTFILE '/tmp/aetl_outfile.csv'")
    assert not Path("/tmp/aetl_written.csv").exists()
    assert not Path("/tmp/aetl_outfile.csv").exists()


def test_streaming_insert_into_function_is_refused(http: httpx.Client) -> None:
    response = http.post(
        "/",
        params={"query": "INSERT INTO FUNCTION file('/tmp/aetl_stream.csv', 'CSV') FORMAT CSV"},
        content=b"1\n",
    )
    assert_denied(response, "file()")
    assert not Path("/tmp/aetl_stream.csv").exists()


def test_query_parameters_cannot_smuggle_a_path(http: httpx.Client) -> None:
    response = http.post(
        "/",
        params={"param_p": "/etc/passwd"},
        content=b"SELECT count() FROM file({p:String}, 'LineAsString')",
    )
    assert_denied(response, "file()")


def test_external_table_structure_cannot_smuggle_an_engine(http: httpx.Client) -> None:
    files = {"ext": ("ext.tsv", b"1\n", "text/tab-separated-values")}
    params = {
        "query": "SELECT * FROM ext",
        "ext_structure": "a String) ENGINE = URL('http://127.0.0.1:1/', CSV",
    }
    assert_denied(http.post("/", params=params, files=files), "url")


@pytest.fixture
def import_file() -> Iterator[Path]:
    IMPORTS.mkdir(parents=True, exist_ok=True)
    path = IMPORTS / f"guard_{uuid.uuid4().hex[:8]}.csv"
    path.write_text("a,b\n1,x\n2,y\n3,z\n")
    yield path
    path.unlink(missing_ok=True)


def test_file_inside_the_import_folder_is_read(http: httpx.Client, import_file: Path) -> None:
    response = http.post("/", content=f"SELECT sum(a) FROM file('{import_file}', 'CSVWithNames')".encode())
    assert response.status_code == 200, response.text
    assert response.text == "6\n"


def test_file_cannot_escape_the_import_folder(http: httpx.Client, import_file: Path, tmp_path: Path) -> None:
    escape = f"{IMPORTS}/../../../../../../etc/passwd"
    assert_denied(http.post("/", content=f"SELECT count() FROM file('{escape}', 'LineAsString')".encode()))
    link = IMPORTS / f"link_{uuid.uuid4().hex[:8]}"
    os.symlink("/etc/passwd", link)
    try:
        response = http.post("/", content=f"SELECT count() FROM file('{link}', 'LineAsString')".encode())
        assert_denied(response, "outside the import folders")
    finally:
        link.unlink()
    relative = http.post("/", content=b"SELECT count() FROM file('passwd', 'LineAsString')")
    assert_denied(relative, "relative")
    glob = http.post("/", content=f"SELECT count() FROM file('{IMPORTS}/*', 'LineAsString')".encode())
    assert_denied(glob, "glob")


def test_local_work_still_runs(client: Client, database: str) -> None:
    client.command(f"CREATE TABLE {database}.t (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    client.command(f"INSERT INTO {database}.t SELECT number, toString(number) FROM numbers(10)")
    client.command(f"CREATE VIEW {database}.v AS SELECT a FROM {database}.t WHERE a > 4")
    assert client.command(f"SELECT count() FROM {database}.v") == 5
    assert client.command("SELECT count() FROM (SELECT * FROM generateRandom('a UInt8', 1) LIMIT 3)") == 3
    assert client.command("SELECT sum(number) FROM numbers(10)") == 45
    assert client.command("SELECT format('{}-{}', 'a', 'b')") == "a-b"
    client.command("SYSTEM RELOAD DICTIONARIES")


def test_readonly_is_decided_by_the_parse_not_the_first_word(http: httpx.Client, database: str) -> None:
    http.post("/", content=f"CREATE TABLE {database}.r (a UInt8) ENGINE = Memory".encode())
    # a parenthesised SELECT and a WITH are reads; an INSERT behind a WITH is a write
    for read in (
        "(SELECT 1)",
        "WITH 1 AS x SELECT x",
        "EXPLAIN SELECT 1",
        "SHOW TABLES",
        "DESCRIBE system.one",
    ):
        ok = http.post("/", params={"readonly": "1"}, content=read.encode())
        assert ok.status_code == 200, (read, ok.text)
    write = f"WITH 1 AS x INSERT INTO {database}.r SELECT x"
    refused = http.post("/", params={"readonly": "1"}, content=write.encode())
    assert refused.headers["X-ClickHouse-Exception-Code"] == "164"
    get_write = http.get("/", params={"query": write})
    assert get_write.headers["X-ClickHouse-Exception-Code"] == "164"
    assert http.post("/", content=f"SELECT count() FROM {database}.r".encode()).text == "0\n"


def test_a_syntax_error_keeps_the_clients_positions(http: httpx.Client) -> None:
    response = http.post("/", content=b"SELECT (1")
    assert response.headers["X-ClickHouse-Exception-Code"] == "62"
    assert "EXPLAIN" not in response.text
    assert "failed at position 10" in response.text
    assert "'(' at position 8 is never closed" in response.text


@pytest.mark.parametrize("credentials", ["platform", "user only", "none"])
def test_a_dictionary_on_the_warehouse_itself_works_with_the_platform_user(
    client: Client, database: str, credentials: str
) -> None:
    user, password = warehouse_auth()
    client.command(f"CREATE TABLE {database}.src (id UInt64, v String) ENGINE = MergeTree ORDER BY id")
    client.command(f"INSERT INTO {database}.src VALUES (1, 'one'), (2, 'two')")
    pair = {
        "platform": f"USER '{user}' PASSWORD '{password}'",
        "user only": f"USER '{user}'",
        "none": "",
    }[credentials]
    client.command(
        f"CREATE DICTIONARY {database}.d (id UInt64, v String) PRIMARY KEY id "
        f"SOURCE(CLICKHOUSE({pair} DB '{database}' TABLE 'src')) LAYOUT(FLAT()) LIFETIME(0)"
    )
    assert client.command(f"SELECT dictGet('{database}.d', 'v', toUInt64(2))") == "two"
    assert password not in str(client.command(f"SHOW CREATE DICTIONARY {database}.d"))


@pytest.mark.parametrize("pair", ["USER 'default' PASSWORD 'wrong'", "USER 'someone' PASSWORD '{password}'"])
def test_a_dictionary_with_other_credentials_is_refused(http: httpx.Client, database: str, pair: str) -> None:
    pair = pair.format(password=warehouse_auth()[1])
    statement = (
        f"CREATE DICTIONARY {database}.bad (id UInt64, v String) PRIMARY KEY id "
        f"SOURCE(CLICKHOUSE({pair} TABLE 'src')) LAYOUT(FLAT()) LIFETIME(0)"
    )
    response = http.post("/", content=statement.encode())
    assert response.headers["X-ClickHouse-Exception-Code"] == "516", response.text
