"""/schema endpoints: introspection of a real source, stored mappings, comparison, and the generated SQL
run in the real warehouse."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from api.core.config import get_settings
from orchestration.warehouse.client import get_client
from tests.connectors.conftest import Caller, assert_error
from tests.sources import PgSource


def test_introspect_map_and_generate_sql_that_runs_in_the_warehouse(
    api: httpx.Client, admin: Caller, pg_source: PgSource, make_connector: Callable[..., dict[str, object]]
) -> None:
    connector = make_connector(
        type="postgresql", config=pg_source.connector_config(), credentials=pg_source.credentials()
    )
    found = api.post(
        "/schema/introspect",
        headers=admin.headers,
        json={"connector_id": connector["id"], "source_type": "database"},
    )
    assert found.status_code == 200, found.text
    data = found.json()["data"]
    assert found.json()["status"] == "success" and data["connector_type"] == "postgresql"
    table = next(t for t in data["tables"] if t["name"] == "transactions")
    assert table["primary_key"] == ["id"] and table["row_count"] == 500 and table["row_count_exact"] is True
    assert [c["name"] for c in table["columns"]][:3] == ["id", "customer", "amount"]
    assert_error(
        api.post(
            "/schema/introspect",
            headers=admin.headers,
            json={"connector_id": connector["id"], "tables": ["nope"]},
        ),
        404,
    )

    # explicit mapping with a cast and an expression; stored and read back
    mapping = api.post(
        "/schema/map",
        headers=admin.headers,
        json={
            "name": "sales",
            "source_connector_id": connector["id"],
            "source_table": "transactions",
            "target_table": "sales",
            "fields": [
                {"source": "id", "target": "sale_id", "target_type": "UInt64"},
                {"source": "amount", "target": "amount", "target_type": "Decimal(12, 2)"},
                {"target": "month", "expression": "toStartOfMonth(date)"},
            ],
        },
    )
    assert mapping.status_code == 201, mapping.text
    mapping_id = mapping.json()["data"]["id"]
    got = api.get(f"/schema/mappings/{mapping_id}", headers=admin.headers)
    assert got.status_code == 200 and got.json()["data"]["fields"][2]["expression"] == "toStartOfMonth(date)"
    assert_error(api.get("/schema/mappings/map_missing", headers=admin.headers), 404)

    generated = api.post(
        "/schema/generate-transformation", headers=admin.headers, json={"mapping_id": mapping_id}
    )
    assert generated.status_code == 200, generated.text
    result = generated.json()["data"]
    assert result["transformation"]["type"] == "sql" and result["source"]["table"] == "transactions"
    assert result["target"]["input"] == "transform_1"

    # the generated SQL runs in the warehouse over a staged copy of the source
    warehouse = get_client(get_settings().clickhouse_url)
    database = f"t_{uuid.uuid4().hex[:8]}"
    try:
        warehouse.command(f"CREATE DATABASE {database}")
        warehouse.command(
            f"CREATE TABLE {database}.src (id Int64, amount Decimal(10, 2), date Date) "
            "ENGINE = MergeTree ORDER BY id"
        )
        warehouse.command(
            f"INSERT INTO {database}.src VALUES (1, 2.50, '2025-03-04'), (2, 7.25, '2025-04-01')"
        )
        rows = warehouse.query(
            f"WITH source_1 AS (SELECT * FROM {database}.src) {result['sql']} ORDER BY sale_id"
        ).result_rows
        assert [(r[0], float(r[1]), str(r[2])) for r in rows] == [
            (1, 2.5, "2025-03-01"),
            (2, 7.25, "2025-04-01"),
        ]
    finally:
        warehouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        warehouse.close()

    # automatic mapping: every column, same names, ClickHouse types
    auto = api.post(
        "/schema/map",
        headers=admin.headers,
        json={
            "name": "auto",
            "source_connector_id": connector["id"],
            "source_table": "transactions",
            "target_table": "tx",
        },
    )
    assert auto.status_code == 201, auto.text
    fields = auto.json()["data"]["fields"]
    assert [f["target"] for f in fields] == ["id", "customer", "amount", "date", "created_at", "paid"]
    assert fields[2]["target_type"] == "Decimal(10, 2)"


def test_compare_schemas(
    api: httpx.Client, admin: Caller, pg_source: PgSource, make_connector: Callable[..., dict[str, object]]
) -> None:
    connector = make_connector(
        type="postgresql", config=pg_source.connector_config(), credentials=pg_source.credentials()
    )
    body = {
        "source": {"connector_id": connector["id"], "table": "transactions"},
        "target": {"columns": [
            {"name": "id", "type": "Int64", "nullable": False},
            {"name": "customer", "type": "String", "nullable": False},
            {"name": "amount", "type": "Float32", "nullable": False},
            {"name": "date", "type": "Date32", "nullable": False},
            {"name": "paid", "type": "Bool", "nullable": True},
            {"name": "region", "type": "String", "nullable": True},
        ]},
    }  # fmt: skip
    response = api.post("/schema/compare", headers=admin.headers, json=body)
    assert response.status_code == 200, response.text
    diff = response.json()["data"]
    assert diff["only_in_source"] == ["created_at"] and diff["only_in_target"] == ["region"]
    changes = {c["name"]: c for c in diff["changes"]}
    assert changes["amount"]["change"] == "type_changed" and changes["amount"]["safe"] is False
    assert changes["region"]["change"] == "added" and changes["region"]["safe"] is True
    assert diff["compatible"] is False and not diff["identical"]
    assert set(diff["unchanged"]) == {"id", "customer", "date", "paid"}
    same = api.post(
        "/schema/compare", headers=admin.headers, json={"source": body["target"], "target": body["target"]}
    )
    assert same.json()["data"]["identical"] is True and same.json()["data"]["compatible"] is True
    widening = {
        "source": {"columns": [{"name": "a", "type": "Int32"}]},
        "target": {"columns": [{"name": "a", "type": "Int64"}]},
    }
    assert (
        api.post("/schema/compare", headers=admin.headers, json=widening).json()["data"]["compatible"] is True
    )


def test_schema_bad_input(
    api: httpx.Client, admin: Caller, pg_source: PgSource, make_connector: Callable[..., dict[str, object]]
) -> None:
    connector = make_connector(
        type="postgresql", config=pg_source.connector_config(), credentials=pg_source.credentials()
    )
    injected = ["x; DROP TABLE transactions"]
    subquery = [{"target": "x", "expression": "(SELECT password FROM users)"}]
    cases = [
        ("/schema/introspect", {"connector_id": "conn_missing"}, 404),
        ("/schema/introspect", {"connector_id": connector["id"], "tables": injected}, 404),
        ("/schema/introspect", {}, 422),
        ("/schema/map", {"name": "m", "source_connector_id": connector["id"], "source_table": "transactions",
                         "target_table": "bad name; drop"}, 422),
        ("/schema/map", {"name": "m", "source_connector_id": connector["id"], "source_table": "transactions",
                         "target_table": "t", "fields": subquery}, 422),
        ("/schema/map", {"name": "m", "source_connector_id": connector["id"], "source_table": "transactions",
                         "target_table": "t", "fields": [{"target": "x"}]}, 422),
        ("/schema/map", {"name": "m", "source_connector_id": connector["id"], "source_table": "t; --",
                         "target_table": "t"}, 422),
        ("/schema/compare", {"source": {"connector_id": connector["id"]}, "target": {"columns": []}}, 422),
        ("/schema/generate-transformation", {}, 422),
        ("/schema/generate-transformation", {"mapping_id": "map_missing"}, 404),
    ]  # fmt: skip
    for path, body, status in cases:
        assert_error(api.post(path, headers=admin.headers, json=body), status)
    assert pg_source.execute("SELECT count(*) FROM transactions") == [(500,)]
