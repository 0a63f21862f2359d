"""Assets materialized through a real Dagster instance (PostgreSQL storage) into a real warehouse."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from dagster import AssetKey, DagsterInstance, materialize

from orchestration.dbt import dbt_executable, prepare_dbt_manifest
from orchestration.defs.warehouse import calendar_days, calendar_days_is_gapless
from orchestration.warehouse.resource import ClickHouseResource

RUN_CONFIG = {"ops": {"calendar_days": {"config": {"start": "2024-01-01", "end": "2024-12-31"}}}}


@pytest.mark.timeout(120)
def test_calendar_days_lands_in_the_warehouse(
    dagster_instance: DagsterInstance, warehouse_url: str, warehouse_database: str, warehouse_client: Client
) -> None:
    resource = ClickHouseResource(url=f"{warehouse_url}/{warehouse_database}")
    for _ in range(2):  # a second run replaces the rows, it never doubles them
        result = materialize(
            [calendar_days, calendar_days_is_gapless],
            resources={"clickhouse": resource},
            instance=dagster_instance,
            run_config=RUN_CONFIG,
            tags={"aetl/test": "calendar"},
        )
        assert result.success
    rows = warehouse_client.query(
        f"SELECT count(), min(date), max(date), countIf(is_weekend) FROM {warehouse_database}.calendar_days"
    ).result_rows[0]
    assert rows == (366, dt.date(2024, 1, 1), dt.date(2024, 12, 31), 104)

    materialization = result.asset_materializations_for_node("calendar_days")[0]
    assert materialization.metadata["dagster/row_count"].value == 366
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["rows"].value == 366

    # The instance's PostgreSQL storage has the run and the materialization.
    stored = dagster_instance.get_latest_materialization_event(AssetKey("calendar_days"))
    assert stored is not None and stored.run_id == result.run_id
    assert dagster_instance.get_run_by_id(result.run_id).tags["aetl/test"] == "calendar"


@pytest.fixture
def dbt_schema(warehouse_client: Client, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """profiles.yml takes its schema from DBT_SCHEMA: one per test, dropped afterwards."""
    schema = f"dbt_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("DBT_SCHEMA", schema)
    yield schema
    warehouse_client.command(f"DROP DATABASE IF EXISTS {schema} SYNC")


@pytest.mark.timeout(240)
def test_dbt_models_build_in_the_warehouse(
    dagster_instance: DagsterInstance, warehouse_url: str, warehouse_client: Client, dbt_schema: str
) -> None:
    prepare_dbt_manifest()
    from dagster_dbt import DbtCliResource

    from orchestration.defs.datamarts import DBT_PROJECT, dbt_models

    result = materialize(
        [dbt_models],
        resources={
            "dbt": DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable()),
            # The only route to the warehouse: dbt gets CLICKHOUSE_HOST/PORT from this URL.
            "clickhouse": ClickHouseResource(url=warehouse_url),
        },
        instance=dagster_instance,
    )
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"demo_orders", "stg_demo__orders", "orders_daily"} <= materialized
    assert int(warehouse_client.command(f"SELECT count() FROM {dbt_schema}.orders_daily")) > 0


@pytest.mark.timeout(60)
def test_replace_table_swaps_in_new_rows_and_keeps_old_ones_on_failure(
    warehouse_url: str, warehouse_database: str, warehouse_client: Client
) -> None:
    import pyarrow as pa

    def ddl(name: str) -> str:
        return f"CREATE TABLE IF NOT EXISTS {name} (id UInt32, name String) ENGINE = MergeTree ORDER BY id"

    resource = ClickHouseResource(url=f"{warehouse_url}/{warehouse_database}")
    batches = [pa.record_batch({"id": pa.array([i, i + 1], pa.uint32()), "name": ["a", "b"]}) for i in (0, 2)]
    batches.append(pa.record_batch({"id": pa.array([4, 5], pa.uint32()), "name": ["c", "d"]}))
    assert resource.replace_table("items", ddl, batches) == 6
    assert resource.replace_table("items", ddl, batches[:1]) == 2  # full refresh, not an append
    count = f"SELECT count() FROM {warehouse_database}.items"
    assert warehouse_client.query(count).result_rows == [(2,)]

    broken = pa.record_batch({"id": pa.array(["not a number"]), "name": ["x"]})
    with pytest.raises(DatabaseError):  # the server refuses the text in a UInt32 column
        resource.replace_table("items", ddl, [batches[1], broken])
    assert warehouse_client.query(count).result_rows == [(2,)]
    tables = warehouse_client.query(f"SELECT name FROM system.tables WHERE database = '{warehouse_database}'")
    assert [row[0] for row in tables.result_rows] == ["items"]  # no staging table left behind
