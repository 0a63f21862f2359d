"""Connector endpoints through the real API: CRUD, tests that really connect, introspection, bad input,
permissions per role, and no credential in any response or log line."""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import xlsxwriter  # type: ignore[import-untyped]

from api.core.config import get_settings
from api.core.permissions import ROLE_NAMES, role_can
from orchestration.warehouse.client import get_client
from tests.connectors.conftest import Caller, assert_error
from tests.sources import PgSource, create_mysql_transactions, mysql_source

SEEN_RESPONSES: list[str] = []


def _record(response: httpx.Response) -> httpx.Response:
    SEEN_RESPONSES.append(response.text)
    return response


def test_postgres_connector_crud_masks_credentials(
    api: httpx.Client, admin: Caller, pg_source: PgSource
) -> None:
    name = f"pg_{uuid.uuid4().hex[:6]}"
    created = _record(
        api.post(
            "/connectors",
            headers=admin.headers,
            json={"name": name, "type": "postgresql", "config": pg_source.connector_config(),
                  "credentials": pg_source.credentials()},
        )
    )  # fmt: skip
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("conn_") and body["type"] == "postgresql" and body["status"] == "active"
    assert body["config"]["password"] == "********" and body["config"]["username"] == pg_source.username
    connector_id = body["id"]

    listing = _record(api.get("/connectors", headers=admin.headers, params={"type": "postgresql"}))
    assert listing.status_code == 200
    items = {c["id"]: c for c in listing.json()["items"]}
    assert connector_id in items and listing.json()["total"] >= 1
    assert items[connector_id]["config"]["password"] == "********"

    got = _record(api.get(f"/connectors/{connector_id}", headers=admin.headers))
    assert got.status_code == 200 and got.json()["status"] == "success"
    assert got.json()["data"]["config"]["password"] == "********"

    # partial update: the masked password sent back keeps the stored one, the test still connects
    updated = _record(
        api.put(
            f"/connectors/{connector_id}",
            headers=admin.headers,
            json={"description": "sales", "config": {**got.json()["data"]["config"], "connect_timeout": 3}},
        )
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["config"]["connect_timeout"] == 3
    assert updated.json()["data"]["description"] == "sales"
    tested = _record(api.post(f"/connectors/{connector_id}/test", headers=admin.headers))
    assert tested.status_code == 200, tested.text
    result = tested.json()
    assert result["test_status"] == "success" and result["connector_id"] == connector_id
    assert result["latency_ms"] > 0 and result["tested_at"].endswith("Z")
    assert result["details"] == {
        "dns_resolved": True,
        "connection_established": True,
        "authentication_successful": True,
        "database_exists": True,
        "query_execution_successful": True,
    }
    assert "PostgreSQL" in result["server_version"]
    after = api.get(f"/connectors/{connector_id}", headers=admin.headers).json()["data"]
    assert after["test_status"] == "success" and after["last_tested"]

    # the duplicate name is refused; the deleted connector is gone
    again = api.post("/connectors", headers=admin.headers, json={"name": name, "type": "csv", "config": {}})
    assert_error(again, 409, "DUPLICATE_RESOURCE")
    deleted = api.delete(f"/connectors/{connector_id}", headers=admin.headers)
    assert deleted.status_code == 200 and deleted.json()["status"] == "success"
    assert_error(api.get(f"/connectors/{connector_id}", headers=admin.headers), 404, "RESOURCE_NOT_FOUND")
    assert_error(api.post(f"/connectors/{connector_id}/test", headers=admin.headers), 404)


def test_aggregator_create_shape_and_table_schema(
    api: httpx.Client, admin: Caller, pg_source: PgSource, make_connector: Callable[..., dict[str, object]]
) -> None:
    # aggregator spelling: connector_type, username/password inside config
    connector = make_connector(
        connector_type="postgresql", config={**pg_source.connector_config(), **pg_source.credentials()}
    )
    assert connector["config"]["password"] == "********"  # type: ignore[index]
    schema = _record(api.get(f"/connectors/{connector['id']}/schema/transactions", headers=admin.headers))
    assert schema.status_code == 200, schema.text
    body = schema.json()
    columns = {c["name"]: c for c in body["columns"]}
    assert list(columns) == ["id", "customer", "amount", "date", "created_at", "paid"]
    assert columns["id"]["primary_key"] is True and columns["id"]["nullable"] is False
    assert (
        columns["amount"]["type"] == "numeric(10,2)"
        and columns["amount"]["clickhouse_type"] == "Decimal(10, 2)"
    )
    assert columns["paid"]["nullable"] is True and columns["paid"]["clickhouse_type"] == "Nullable(Bool)"
    assert columns["created_at"]["clickhouse_type"] == "DateTime64(6, 'UTC')"
    assert body["primary_key"] == ["id"]
    assert {"name": "idx_transactions_date", "columns": ["date"], "unique": False, "primary": False} in body[
        "indexes"
    ]
    assert body["row_count"] == 500 and body["row_count_exact"] is True
    # qualified names work; a missing table is 404, SQL in the name is 422 before any query
    assert (
        api.get(
            f"/connectors/{connector['id']}/schema/public.transactions", headers=admin.headers
        ).status_code
        == 200
    )
    assert_error(api.get(f"/connectors/{connector['id']}/schema/nope", headers=admin.headers), 404)
    bad = api.get(
        f"/connectors/{connector['id']}/schema/transactions; DROP TABLE transactions", headers=admin.headers
    )
    assert_error(bad, 422, "VALIDATION_ERROR")
    assert pg_source.execute("SELECT count(*) FROM transactions") == [(500,)]


def test_mysql_clickhouse_and_file_connectors_test_and_describe(
    api: httpx.Client, admin: Caller, make_connector: Callable[..., dict[str, object]], files_dir: Path
) -> None:
    with mysql_source() as source:
        create_mysql_transactions(source, 300)
        mysql = make_connector(
            type="mariadb", config=source.connector_config(), credentials=source.credentials()
        )
        assert mysql["type"] == "mysql"
        tested = _record(api.post(f"/connectors/{mysql['id']}/test", headers=admin.headers))
        assert tested.status_code == 200, tested.text
        assert "MariaDB" in tested.json()["server_version"]
        schema = api.get(f"/connectors/{mysql['id']}/schema/transactions", headers=admin.headers).json()
        columns = {c["name"]: c for c in schema["columns"]}
        assert columns["amount"]["clickhouse_type"] == "Decimal(10, 2)" and columns["id"]["primary_key"]
        assert schema["row_count"] == 300 and schema["primary_key"] == ["id"]
        assert any(i["name"] == "idx_date" for i in schema["indexes"])

    # the platform's own warehouse (no host): test and describe a table there
    warehouse = get_client(get_settings().clickhouse_url)
    database = f"t_{uuid.uuid4().hex[:8]}"
    warehouse.command(f"CREATE DATABASE {database}")
    try:
        warehouse.command(
            f"CREATE TABLE {database}.sales (id UInt64, amount Nullable(Float64)) "
            "ENGINE = MergeTree ORDER BY id"
        )
        warehouse.command(f"INSERT INTO {database}.sales VALUES (1, 2.5), (2, NULL)")
        ch = make_connector(type="clickhouse", config={"database": database})
        assert _record(api.post(f"/connectors/{ch['id']}/test", headers=admin.headers)).status_code == 200
        schema = api.get(f"/connectors/{ch['id']}/schema/sales", headers=admin.headers).json()
        assert schema["row_count"] == 2 and schema["primary_key"] == ["id"]
        assert [c["nullable"] for c in schema["columns"]] == [False, True]
    finally:
        warehouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        warehouse.close()

    # files: CSV (gzip), Parquet, Excel under the file root
    (files_dir / "sales.csv.gz").write_bytes(
        gzip.compress(b"id,amount,day\n1,2.5,2025-01-01\n2,3.5,2025-01-02\n")
    )
    pq.write_table(pa.table({"id": [1, 2, 3], "name": ["a", "b", None]}), files_dir / "items.parquet")
    book = xlsxwriter.Workbook(str(files_dir / "book.xlsx"))
    sheet = book.add_worksheet("data")
    for r, row in enumerate([["id", "label"], [1, "x"], [2, "y"]]):
        sheet.write_row(r, 0, row)
    book.close()
    folder = files_dir.name
    for kind, name, rows, first_type in (
        ("csv", "sales.csv.gz", 2, "Nullable(Int64)"),
        ("parquet", "items.parquet", 3, "Nullable(Int64)"),
        ("excel", "book.xlsx", 2, "Nullable(Int64)"),
    ):
        connector = make_connector(type=kind, config={"path": folder})
        tested = _record(api.post(f"/connectors/{connector['id']}/test", headers=admin.headers))
        assert tested.status_code == 200, tested.text
        assert tested.json()["details"]["files_found"] >= 1
        schema = api.get(f"/connectors/{connector['id']}/schema/{name}", headers=admin.headers)
        assert schema.status_code == 200, schema.text
        assert (
            schema.json()["row_count"] == rows
            and schema.json()["columns"][0]["clickhouse_type"] == first_type
        )
        assert_error(api.get(f"/connectors/{connector['id']}/schema/missing.csv", headers=admin.headers), 404)


@pytest.mark.parametrize(
    ("config", "credentials", "reason"),
    [
        ({"host": "127.0.0.1", "port": 1, "database": "x"}, {"username": "u", "password": "p"}, "refused"),
        ({"host": "no-such-host.invalid", "database": "x"}, {"username": "u", "password": "p"}, "dns"),
        ({"host": "127.0.0.1", "database": "no_such_db_aetl"}, {"username": "postgres"}, "database_missing"),
        (
            {"host": "127.0.0.1", "database": "postgres"},
            {"username": "no_such_role_aetl", "password": "x"},
            "auth",
        ),
    ],
)
def test_postgres_test_failures_say_what_failed_quickly(
    api: httpx.Client,
    admin: Caller,
    make_connector: Callable[..., dict[str, object]],
    config: dict[str, object],
    credentials: dict[str, str],
    reason: str,
) -> None:
    connector = make_connector(type="postgresql", config=config, credentials=credentials)
    started = time.monotonic()
    response = _record(api.post(f"/connectors/{connector['id']}/test", headers=admin.headers))
    assert time.monotonic() - started < 5
    body = assert_error(response, 502, "CONNECTOR_ERROR")
    assert body["errors"][0]["code"] == "CONN_001"  # type: ignore[index]
    assert body["error"]["details"]["reason"] == reason, body  # type: ignore[index]
    assert body["error"]["details"]["steps"]["query_execution_successful"] is False  # type: ignore[index]
    stored = api.get(f"/connectors/{connector['id']}", headers=admin.headers).json()["data"]
    assert stored["test_status"] == "failed" and stored["test_message"]


def test_mysql_wrong_password_is_an_auth_failure(
    api: httpx.Client, admin: Caller, make_connector: Callable[..., dict[str, object]]
) -> None:
    with mysql_source() as source:
        connector = make_connector(
            type="mysql",
            config=source.connector_config(),
            credentials={"username": source.username, "password": "wrong"},
        )
        started = time.monotonic()
        response = _record(api.post(f"/connectors/{connector['id']}/test", headers=admin.headers))
        assert time.monotonic() - started < 5
        body = assert_error(response, 502, "CONNECTOR_ERROR")
        assert body["error"]["details"]["reason"] == "auth"  # type: ignore[index]
        assert "authentication failed" in str(body["message"])


def test_unreachable_host_fails_within_five_seconds(
    api: httpx.Client, admin: Caller, make_connector: Callable[..., dict[str, object]]
) -> None:
    # a TEST-NET address: packets go nowhere, so only the time limit ends the attempt
    connector = make_connector(
        type="mysql",
        config={"host": "192.0.2.1", "database": "x", "connect_timeout": 30},
        credentials={"username": "u"},
    )
    started = time.monotonic()
    response = api.post(f"/connectors/{connector['id']}/test", headers=admin.headers)
    assert time.monotonic() - started < 5
    body = assert_error(response, 502, "CONNECTOR_ERROR")
    assert body["error"]["details"]["reason"] in ("timeout", "refused")  # type: ignore[index]


def test_bad_input_is_4xx_in_the_contract_shape(api: httpx.Client, admin: Caller, files_dir: Path) -> None:
    def create(body: dict[str, object]) -> httpx.Response:
        return api.post(
            "/connectors", headers=admin.headers, json={"name": f"bad_{uuid.uuid4().hex[:6]}", **body}
        )

    body = assert_error(create({"type": "oracle", "config": {}}), 422, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "type"  # type: ignore[index]
    body = assert_error(
        create({"type": "postgresql", "config": {"host": "h", "port": 0, "database": "d", "username": "u"}}),
        422,
    )
    assert body["errors"][0]["field"] == "config.port"  # type: ignore[index]
    huge = "h" * (1024 * 1024)
    body = assert_error(
        create({"type": "postgresql", "config": {"host": huge, "database": "d", "username": "u"}}), 422
    )
    assert body["errors"][0]["field"] == "config.host" and huge not in str(body)  # type: ignore[index]
    body = assert_error(
        create({"type": "mysql", "config": {"host": "h; DROP TABLE x", "database": "d", "username": "u"}}),
        422,
    )
    assert body["errors"][0]["field"] == "config.host"  # type: ignore[index]
    body = assert_error(create({"type": "postgresql", "config": {"host": "h", "database": "d"}}), 422)
    assert body["errors"][0]["field"] == "config.username"  # type: ignore[index]
    assert_error(create({"type": "csv", "config": {"path": "../etc"}}), 422)
    assert_error(
        create({"type": "mysql", "config": {"host": "h", "database": "d", "username": "u", "sneaky": 1}}), 422
    )
    assert_error(create({"config": {}}), 422)
    assert_error(api.post("/connectors", headers=admin.headers, content=b"{not json"), 422)
    # a symlink that leaves the file root is refused when used
    (files_dir / "escape").symlink_to("/etc")
    created = api.post(
        "/connectors",
        headers=admin.headers,
        json={
            "name": f"f_{uuid.uuid4().hex[:6]}",
            "type": "csv",
            "config": {"path": f"{files_dir.name}/escape"},
        },
    )
    assert created.status_code == 201
    tested = api.post(f"/connectors/{created.json()['id']}/test", headers=admin.headers)
    body = assert_error(tested, 502, "CONNECTOR_ERROR")
    assert body["error"]["details"]["reason"] == "path"  # type: ignore[index]
    assert_error(api.get(f"/connectors/{created.json()['id']}/schema/passwd", headers=admin.headers), 502)
    api.delete(f"/connectors/{created.json()['id']}", headers=admin.headers)
    assert_error(api.get("/connectors/conn_missing", headers=admin.headers), 404)
    assert_error(api.put("/connectors/conn_missing", headers=admin.headers, json={"name": "x"}), 404)
    assert_error(api.get("/connectors", headers=admin.headers, params={"limit": 0}), 422)


ROUTES: list[tuple[str, str, str, str]] = [
    # (method, path, resource, action)
    ("GET", "/connectors", "connectors", "view"),
    ("POST", "/connectors", "connectors", "create"),
    ("GET", "/connectors/{id}", "connectors", "view"),
    ("PUT", "/connectors/{id}", "connectors", "edit"),
    ("DELETE", "/connectors/{id}", "connectors", "delete"),
    ("POST", "/connectors/{id}/test", "connectors", "view"),
    ("GET", "/connectors/{id}/schema/transactions", "connectors", "view"),
    ("POST", "/schema/introspect", "connectors", "view"),
    ("POST", "/schema/map", "connectors", "edit"),
    ("GET", "/schema/mappings/map_missing", "connectors", "view"),
    ("POST", "/schema/compare", "connectors", "view"),
    ("POST", "/schema/generate-transformation", "connectors", "view"),
]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_route_for_every_role(
    api: httpx.Client,
    as_role: Callable[[str], Caller],
    make_connector: Callable[..., dict[str, object]],
    pg_source: PgSource,
    role: str,
) -> None:
    caller = as_role(role)
    connector = make_connector(
        type="postgresql", config=pg_source.connector_config(), credentials=pg_source.credentials()
    )
    bodies: dict[str, dict[str, object]] = {
        "/connectors": {"name": f"r_{uuid.uuid4().hex[:6]}", "type": "csv", "config": {}},
        "/connectors/{id}": {"description": "x"},
        "/schema/introspect": {"connector_id": connector["id"], "include_columns": False},
        "/schema/map": {"name": "m", "source_connector_id": connector["id"], "source_table": "transactions",
                        "target_table": "sales"},
        "/schema/compare": {"source": {"columns": [{"name": "a", "type": "Int32"}]},
                            "target": {"columns": [{"name": "a", "type": "Int64"}]}},
        "/schema/generate-transformation": {"mapping": {"name": "m", "source_connector_id": connector["id"],
                                            "source_table": "t", "target_table": "s",
                                            "fields": [{"source": "a", "target": "b"}]}},
    }  # fmt: skip
    for method, template, resource, action in ROUTES:
        path = template.replace("{id}", str(connector["id"]))
        body = bodies.get(template)
        response = api.request(method, path, headers=caller.headers, json=body if method != "GET" else None)
        if role_can(role, resource, action):
            assert response.status_code not in (401, 403), f"{role} {method} {template}: {response.text}"
            assert response.status_code < 500, f"{role} {method} {template}: {response.text}"
        else:
            assert_error(response, 403, "PERMISSION_DENIED")
        if method == "POST" and template == "/connectors" and response.status_code == 201:
            make_connector  # noqa: B018 - created by this role; remove it as admin
            api.delete(f"/connectors/{response.json()['id']}", headers=as_role("admin").headers)
        if method == "DELETE" and response.status_code == 200:
            connector = make_connector(
                type="postgresql", config=pg_source.connector_config(), credentials=pg_source.credentials()
            )
        SEEN_RESPONSES.append(response.text)
    assert api.get("/connectors").status_code == 401


def test_no_credential_in_any_response_or_log_line(pg_source: PgSource) -> None:
    """Runs after the tests above in this module: every password they used must be absent."""
    settings = get_settings()
    passwords = [pg_source.password, "wrong"]
    logs = (settings.data_dir / "test-stack.log").read_text(errors="replace")
    for text in SEEN_RESPONSES:
        assert pg_source.password not in text
    assert pg_source.password not in logs
    assert SEEN_RESPONSES, "the tests above recorded responses"
    assert all(p not in logs for p in passwords[:1])
