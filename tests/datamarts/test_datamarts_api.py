"""Datamarts end to end: a pipeline loads sales, a datamart aggregates them by day as a dbt model in
the `aetl_datamarts` location (lineage to the pipeline's asset), refresh swaps atomically while a
reader polls, preview matches the warehouse, schedule on/off in Dagster; plus refused queries."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openpyxl
import pytest
from clickhouse_connect.driver.client import Client
from datamart_helpers import Caller

from api.dagster_client import DagsterClient
from api.datamarts import service
from api.datamarts.export import sign
from orchestration.specs.datamart import LOCATION


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@pytest.fixture(scope="module")
def sales_pipeline(
    api: httpx.Client, admin: Caller, warehouse: Client, dagster: DagsterClient
) -> Iterator[tuple[str, str, str]]:
    """Raw sales in the warehouse, a deployed pipeline that loads them into `<db>.sales`, run once."""
    database = f"dms_{uuid.uuid4().hex[:8]}"
    warehouse.command(f"CREATE DATABASE {database}")
    warehouse.command(
        f"CREATE TABLE {database}.raw_sales (id UInt32, sold_at DateTime, region String, amount Float64) "
        "ENGINE = MergeTree ORDER BY id"
    )
    warehouse.command(
        f"INSERT INTO {database}.raw_sales SELECT number, toDateTime('2026-01-01 00:00:00') + number * 3600, "
        "['north', 'south'][number % 2 + 1], number * 1.5 FROM numbers(240)"
    )
    body = {
        "name": f"Sales {database}",
        "sources": [{"id": "raw", "type": "clickhouse", "table": f"{database}.raw_sales"}],
        "targets": [{"id": "out", "type": "clickhouse", "database": database, "table": "sales",
                     "mode": "replace", "order_by": ["id"]}],
    }  # fmt: skip
    created = api.post("/pipelines", headers=admin.headers, json=body)
    assert created.status_code == 201, created.text
    pipeline_id = created.json()["id"]
    for _ in range(2):  # a reload of a location can time out on a machine this busy: once more
        assert api.post(f"/pipelines/{pipeline_id}/deploy", headers=admin.headers).status_code in (200, 202)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            state = api.get(f"/pipelines/{pipeline_id}/status", headers=admin.headers).json()["data"]
            if state["deploy_status"] in ("deployed", "failed"):
                break
            time.sleep(0.5)
        if state["deploy_status"] == "deployed":
            break
    assert state["deploy_status"] == "deployed", state
    run = api.post(f"/pipelines/{pipeline_id}/run", headers=admin.headers, json={})
    assert run.status_code == 202, run.text
    finished = dagster.wait_for_run(run.json()["run_id"], timeout=600, poll_interval=0.5)
    assert finished.status.value == "SUCCESS"
    assert warehouse.command(f"SELECT count() FROM {database}.sales") == 240
    yield database, pipeline_id, "sales"
    api.delete(f"/pipelines/{pipeline_id}", headers=admin.headers)
    warehouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")


@pytest.fixture(scope="module")
def daily_mart(
    api: httpx.Client, admin: Caller, sales_pipeline: tuple[str, str, str], warehouse: Client
) -> Iterator[dict[str, Any]]:
    database, _, table = sales_pipeline
    name = f"daily_sales_{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    response = api.post(
        "/mvp/datamarts/create",
        headers=admin.headers,
        json={
            "name": name,
            "description": "Daily aggregated sales",
            "source_query": "SELECT toDate(s.sold_at) AS day, count() AS orders, "
            f"sum(s.amount) AS total_amount FROM {database}.{table} AS s GROUP BY day ORDER BY day",
            "materialized": True,
            "refresh_schedule": "0 3 * * *",
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    body["create_seconds"] = time.monotonic() - started
    yield body
    # its input goes away with the test's database: a stale model would fail every later `dbt build`
    deleted = api.delete(f"/mvp/datamarts/{name}", headers=admin.headers)
    assert deleted.status_code == 204, deleted.text
    assert warehouse.command(f"EXISTS TABLE analytics.{name}") == 0


# the first test also waits for the session stack, the pipeline's deploy and run, and the create
@pytest.mark.timeout(1200)
def test_create_builds_a_dbt_model_downstream_of_the_pipeline(
    daily_mart: dict[str, Any],
    sales_pipeline: tuple[str, str, str],
    warehouse: Client,
    dagster: DagsterClient,
) -> None:
    assert daily_mart["status"] == "created", daily_mart
    assert daily_mart["row_count"] == 10  # 240 hours = 10 days
    assert daily_mart["next_refresh"].endswith("T03:00:00.000Z")
    name = daily_mart["datamart_name"]
    assert warehouse.command(f"SELECT sum(orders) FROM analytics.{name}") == 240
    assert (
        warehouse.command(
            f"SELECT engine FROM system.tables WHERE database = 'analytics' AND name = '{name}'"
        )
        == "MergeTree"
    )
    contents = dagster.repository_contents(LOCATION)
    assert f"datamart_{name}" in contents.jobs
    database, pipeline_id, table = sales_pipeline
    upstream = contents.assets[f"datamarts/{name}"]
    assert upstream == [f"pipelines/{pipeline_id.replace('-', '_')}/{database}__{table}"], upstream


def test_a_second_datamart_over_the_same_table_as_a_view(
    api: httpx.Client,
    admin: Caller,
    daily_mart: dict[str, Any],
    sales_pipeline: tuple[str, str, str],
    warehouse: Client,
    dagster: DagsterClient,
) -> None:
    """Two datamarts read one pipeline table (two dbt sources with one upstream key); `materialized:
    false` makes a view, which follows its input without a refresh."""
    database, pipeline_id, table = sales_pipeline
    name = f"by_region_{uuid.uuid4().hex[:6]}"
    response = api.post(
        "/mvp/datamarts/create",
        headers=admin.headers,
        json={
            "name": name,
            "source_query": f"SELECT region, count() AS orders FROM {database}.{table} GROUP BY region",
            "materialized": False,
        },
    )
    try:
        assert response.status_code == 201 and response.json()["status"] == "created", response.text
        assert response.json()["row_count"] == 2
        engine = warehouse.command(
            f"SELECT engine FROM system.tables WHERE database = 'analytics' AND name = '{name}'"
        )
        assert engine == "View"
        contents = dagster.repository_contents(LOCATION)
        upstream = f"pipelines/{pipeline_id.replace('-', '_')}/{database}__{table}"
        assert contents.assets[f"datamarts/{name}"] == [upstream]
        assert contents.assets[f"datamarts/{daily_mart['datamart_name']}"] == [upstream]
        rows = dict(warehouse.query(f"SELECT region, orders FROM analytics.{name}").result_rows)
        assert rows == {"north": 120, "south": 120}
    finally:
        assert api.delete(f"/mvp/datamarts/{name}", headers=admin.headers).status_code == 204
    assert warehouse.command(f"EXISTS TABLE analytics.{name}") == 0


def test_preview_matches_the_warehouse(
    api: httpx.Client, make_caller: Any, daily_mart: dict[str, Any], warehouse: Client
) -> None:
    analyst = make_caller("analyst")
    name = daily_mart["datamart_name"]
    response = api.get(f"/mvp/datamarts/{name}/preview", headers=analyst.headers, params={"limit": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == ["day", "orders", "total_amount"]
    assert body["total_rows"] == 10 and body["limit"] == 3 and len(body["rows"]) == 3
    direct = warehouse.query(f"SELECT day, orders, total_amount FROM analytics.{name} LIMIT 3").result_rows
    assert body["rows"] == [[d.isoformat(), o, t] for d, o, t in direct]
    assert isinstance(body["rows"][0][1], int) and isinstance(body["rows"][0][2], float)
    capped = api.get(f"/mvp/datamarts/{name}/preview", headers=analyst.headers, params={"limit": 50_000})
    assert capped.status_code == 200 and capped.json()["limit"] == 1000
    assert (
        api.get(f"/mvp/datamarts/{name}/preview", headers=analyst.headers, params={"limit": 0}).status_code
        == 422
    )


@pytest.mark.timeout(900)
def test_refresh_swaps_atomically_and_a_failed_refresh_keeps_the_data(
    api: httpx.Client,
    admin: Caller,
    daily_mart: dict[str, Any],
    sales_pipeline: tuple[str, str, str],
    warehouse: Client,
    dagster: DagsterClient,
    stack: Any,
) -> None:
    name = daily_mart["datamart_name"]
    database, _, table = sales_pipeline
    warehouse.command(f"INSERT INTO {database}.{table} SELECT * FROM {database}.raw_sales WHERE id < 24")
    counts: list[int] = []
    stop = threading.Event()

    def read() -> None:
        from orchestration.warehouse.client import get_client

        reader = get_client(stack.settings.clickhouse_url)
        try:
            while not stop.is_set():
                counts.append(int(reader.command(f"SELECT sum(orders) FROM analytics.{name}")))
                time.sleep(0.05)  # a reader, not a load test: the machine has two cores
        finally:
            reader.close()

    poller = threading.Thread(target=read)
    poller.start()
    try:
        response = api.post(
            f"/mvp/datamarts/{name}/refresh", headers=admin.headers, json={"concurrent_mode": True}
        )
        assert response.status_code == 202, response.text
        assert response.json()["refresh_status"] == "in_progress"
        run = dagster.wait_for_run(response.json()["run_id"], timeout=600, poll_interval=0.5)
    finally:
        stop.set()
        poller.join()
    assert run.status.value == "SUCCESS"
    assert run.tags["aetl/datamart"] == name
    assert counts and set(counts) <= {240, 264}, sorted(set(counts))  # never empty, never partial
    assert counts[-1] == 264

    # the input loses a column the model needs: the refresh fails, the previous table stays
    warehouse.command(f"ALTER TABLE {database}.{table} RENAME COLUMN amount TO amount_eur")
    try:
        response = api.post(f"/mvp/datamarts/{name}/refresh", headers=admin.headers)
        assert response.status_code == 202, response.text
        run = dagster.wait_for_run(response.json()["run_id"], timeout=600, poll_interval=0.5)
        assert run.status.value == "FAILURE"
        assert warehouse.command(f"SELECT sum(orders) FROM analytics.{name}") == 264
    finally:
        warehouse.command(f"ALTER TABLE {database}.{table} RENAME COLUMN amount_eur TO amount")
    detail = api.get(f"/mvp/datamarts/{name}", headers=admin.headers).json()
    assert detail["row_count"] == 10 and detail["last_run_status"] == "failed"


@pytest.mark.timeout(900)
def test_schedule_on_and_off_in_dagster(
    api: httpx.Client, admin: Caller, daily_mart: dict[str, Any], dagster: DagsterClient
) -> None:
    name = daily_mart["datamart_name"]
    on = api.post(
        f"/mvp/datamarts/{name}/schedule", headers=admin.headers, json={"cron_expression": "0 */6 * * *"}
    )
    assert on.status_code == 200, on.text
    body = on.json()
    assert body["enabled"] is True and body["schedule"] == "0 */6 * * *"
    assert body["next_run"][11:13] in ("00", "06", "12", "18") and body["next_run"][13:] == ":00:00.000Z"
    schedule = dagster.get_schedule(body["dagster_schedule_name"])
    assert schedule.cron_schedule == "0 */6 * * *" and schedule.status.value == "RUNNING"
    off = api.post(
        f"/mvp/datamarts/{name}/schedule",
        headers=admin.headers,
        json={"cron_expression": "0 */6 * * *", "enabled": False},
    )
    assert off.status_code == 200 and off.json()["next_run"] is None
    assert dagster.get_schedule(body["dagster_schedule_name"]).status.value == "STOPPED"


def test_excel_export_and_its_signed_link(
    api: httpx.Client, make_caller: Any, daily_mart: dict[str, Any], warehouse: Client, stack: Any
) -> None:
    executive = make_caller("executive")
    name = daily_mart["datamart_name"]
    response = api.post(
        f"/mvp/export/excel/datamart/{name}",
        headers=executive.headers,
        json={"include_charts": True, "include_summary": True},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == warehouse.command(f"SELECT count() FROM analytics.{name}") and body["sheets"] == 1
    link = httpx.get(body["file_url"], timeout=60)  # the link is the credential
    assert link.status_code == 200 and len(link.content) == body["file_size_bytes"]
    book = openpyxl.load_workbook(io.BytesIO(link.content))
    assert book.sheetnames == ["Summary", "Data"]
    data = book["Data"]
    header = [c.value for c in data[1]]
    assert header == ["day", "orders", "total_amount"]
    in_file = {r[0].date(): (r[1], r[2]) for r in data.iter_rows(min_row=2, values_only=True)}
    direct = warehouse.query(f"SELECT day, orders, total_amount FROM analytics.{name}").result_rows
    assert in_file == {d: (o, pytest.approx(t)) for d, o, t in direct}
    assert book["Summary"]["B2"].value == len(direct) and len(book["Summary"]._charts) == 1

    url = httpx.URL(body["file_url"])
    tampered = url.copy_set_param("expires", str(int(url.params["expires"]) + 3600))
    refused = httpx.get(tampered, timeout=60)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "PERMISSION_DENIED"
    past = int(time.time()) - 10
    key = service.link_key(stack.settings.secret_key.get_secret_value())
    file_id = url.path.rsplit("/", 1)[1].removesuffix(".xlsx")
    expired = url.copy_merge_params({"expires": str(past), "signature": sign(key, file_id, past)})
    assert httpx.get(expired, timeout=60).status_code == 410
    assert (
        api.post(f"/mvp/export/excel/datamart/{name}", headers=make_caller("viewer").headers).status_code
        == 403
    )


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("DELETE FROM {t} WHERE 1", 422, "VALIDATION_ERROR"),
        ("SELECT 1 FROM {t}; SELECT 2 FROM {t}", 422, "VALIDATION_ERROR"),
        ("INSERT INTO {t} SELECT * FROM {t}", 422, "VALIDATION_ERROR"),
        ("SELECT * FROM system.tables", 422, "VALIDATION_ERROR"),
        ("SELECT * FROM file('/etc/passwd', 'CSV')", 422, "VALIDATION_ERROR"),
        ("SELECT '{{{{ 1 }}}}' FROM {t}", 422, "VALIDATION_ERROR"),
        ("SELECT * FROM {db}.raw_sales", 403, "PERMISSION_DENIED"),  # not a pipeline target
        ("SELECT no_such_column FROM {t}", 422, "VALIDATION_ERROR"),  # the warehouse says so, nothing built
        ("SELECT 1 FROM {t} WHERE 1 = 1 " + "AND 1 = 1 " * 100_000, 422, "VALIDATION_ERROR"),  # ~1 MB
    ],
)
def test_refused_queries(
    api: httpx.Client, admin: Caller, sales_pipeline: tuple[str, str, str], query: str, status: int, code: str
) -> None:
    database, _, table = sales_pipeline
    sql = query.format(t=f"{database}.{table}", db=database)
    response = api.post(
        "/mvp/datamarts/create", headers=admin.headers, json={"name": "refused_mart", "source_query": sql}
    )
    assert response.status_code == status, response.text[:500]
    assert error_code(response) == code
    assert api.get("/mvp/datamarts/refused_mart", headers=admin.headers).status_code == 404


def test_bad_names_and_crons(api: httpx.Client, admin: Caller, daily_mart: dict[str, Any]) -> None:
    for body in (
        {"name": "Bad-Name", "source_query": "SELECT 1"},
        {"name": "x" * 64, "source_query": "SELECT 1"},
        {"name": "ok_name", "source_query": "SELECT 1", "refresh_schedule": "every day at 3"},
        {"name": "ok_name", "source_query": "SELECT 1", "description": "{{ env_var('X') }}"},
    ):
        response = api.post("/mvp/datamarts/create", headers=admin.headers, json=body)
        assert response.status_code == 422, (body, response.text)
    name = daily_mart["datamart_name"]
    bad = api.post(
        f"/mvp/datamarts/{name}/schedule", headers=admin.headers, json={"cron_expression": "61 * * * *"}
    )
    assert bad.status_code == 422 and error_code(bad) == "VALIDATION_ERROR"
    again = api.post(
        "/mvp/datamarts/create",
        headers=admin.headers,
        json={"name": name, "source_query": "SELECT 1 FROM x.y"},
    )
    assert again.status_code in (403, 409)
