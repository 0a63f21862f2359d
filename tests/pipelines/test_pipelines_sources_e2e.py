"""The ai-etl spec's own example through the API, from real sources: PostgreSQL `transactions` →
ClickHouse `daily_sales` (keep `amount > 0` with the spec's Python transform, then a day/sum in SQL),
and the same day/sum from MariaDB, a Parquet file and an `.xlsx` file — one pipeline with four
targets: created, deployed, run, polled to success through the API; each warehouse table equals the
same SQL on the source, row for row; a second run leaves no duplicates."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import xlsxwriter  # type: ignore[import-untyped]
from clickhouse_connect.driver.client import Client
from pipeline_helpers import Caller, wait_deployed, wait_for

from api.core.config import get_settings
from orchestration.stack import Stack
from tests.sources import (
    create_mysql_transactions,
    create_transactions_table,
    import_folder,
    mysql_source,
    postgres_source,
    transaction_rows,
)

ROWS = 600
SPEC_TRANSFORM = "def transform(df): return df[df['amount'] > 0]"
PG_DAILY_SALES = (
    "SELECT date, sum(amount), count(*) FROM transactions WHERE amount > 0 GROUP BY date ORDER BY date"
)


def daily_sql(source: str) -> str:
    return (
        f"SELECT toDate(date) AS day, sum(amount) AS total_amount, count() AS transactions "
        f"FROM {source} WHERE amount > 0 GROUP BY day"
    )


def expected_from_rows() -> list[tuple[dt.date, Decimal, int]]:
    """The day/sum of the positive amounts, computed in Python from the rows every source holds."""
    totals: dict[dt.date, tuple[Decimal, int]] = {}
    for _, _, amount, day, _, _ in transaction_rows(ROWS):
        assert isinstance(amount, Decimal) and isinstance(day, dt.date)
        if amount > 0:
            total, count = totals.get(day, (Decimal(0), 0))
            totals[day] = (total + amount, count + 1)
    return [(day, total, count) for day, (total, count) in sorted(totals.items())]


@pytest.fixture()
def files(stack: Stack) -> Iterator[Path]:
    with import_folder(get_settings().file_roots[0]) as folder:
        rows = transaction_rows(ROWS)
        table = pa.table(
            {
                "id": [r[0] for r in rows],
                "customer": [r[1] for r in rows],
                "amount": [float(r[2]) for r in rows],  # type: ignore[arg-type]
                "date": [r[3] for r in rows],
            }
        )
        pq.write_table(table, folder / "transactions.parquet")
        book = xlsxwriter.Workbook(str(folder / "transactions.xlsx"))
        sheet = book.add_worksheet()
        date_format = book.add_format({"num_format": "yyyy-mm-dd"})
        sheet.write_row(0, 0, table.column_names)
        for i, row in enumerate(table.to_pylist(), start=1):
            sheet.write_row(i, 0, [row["id"], row["customer"], row["amount"]])
            sheet.write_datetime(i, 3, row["date"], date_format)
        book.close()
        yield folder


def connector(api: httpx.Client, caller: Caller, **body: Any) -> str:
    body = {"name": f"c_{uuid.uuid4().hex[:6]}", **body}
    response = api.post("/connectors", headers=caller.headers, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def run_to_success(api: httpx.Client, caller: Caller, pipeline_id: str) -> dict[str, Any]:
    started = api.post(f"/pipelines/{pipeline_id}/run", headers=caller.headers, json={})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    def finished() -> dict[str, Any] | None:
        response = api.get(f"/pipelines/{pipeline_id}/runs", headers=caller.headers)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        mine = next((r for r in items if r["id"] == run_id), None)
        return mine if mine and mine["status"] in ("success", "failed", "cancelled") else None

    run: dict[str, Any] = wait_for(finished, 300, interval=2, what=f"run {run_id}")
    assert run["status"] == "success", run
    return run


def test_spec_example_from_postgres_mariadb_parquet_and_xlsx(
    api: httpx.Client, engineer: Caller, warehouse: Client, files: Path
) -> None:
    database = f"analytics_{uuid.uuid4().hex[:8]}"
    with postgres_source() as pg, mysql_source() as maria:
        create_transactions_table(pg, ROWS)
        create_mysql_transactions(maria, ROWS)
        pg_id = connector(api, engineer, type="postgresql", config=pg.connector_config(),
                          credentials=pg.credentials())  # fmt: skip
        maria_id = connector(api, engineer, type="mysql", config=maria.connector_config(),
                             credentials=maria.credentials())  # fmt: skip
        parquet_id = connector(api, engineer, type="parquet", config={"path": files.name})
        excel_id = connector(api, engineer, type="excel", config={"path": files.name})
        body = {
            "name": f"Sales Data ETL {database}",
            "description": "Extract sales data from PostgreSQL, transform and load to ClickHouse",
            "sources": [
                {"id": "source_1", "type": "postgresql", "connector_id": pg_id, "table": "transactions"},
                {"id": "maria", "type": "mysql", "connector_id": maria_id, "table": "transactions"},
                {"id": "parquet", "type": "parquet", "connector_id": parquet_id,
                 "path": "transactions.parquet"},
                {"id": "xlsx", "type": "excel", "connector_id": excel_id, "path": "transactions.xlsx"},
            ],
            "transformations": [
                # the spec's own Python transform, then the day/sum in the warehouse
                {"id": "transform_1", "type": "python", "code": SPEC_TRANSFORM},
                {"id": "daily", "type": "sql", "sql": daily_sql("transform_1")},
                {"id": "daily_maria", "type": "sql", "sql": daily_sql("maria")},
                {"id": "daily_parquet", "type": "sql", "sql": daily_sql("parquet")},
                {"id": "daily_xlsx", "type": "sql", "sql": daily_sql("xlsx")},
            ],
            "targets": [
                {"id": "target_1", "type": "clickhouse", "database": database, "table": "daily_sales",
                 "input": "daily", "mode": "replace", "order_by": ["day"]},
                {"id": "from_maria", "database": database, "table": "daily_sales_mariadb",
                 "input": "daily_maria", "mode": "replace", "order_by": ["day"]},
                {"id": "from_parquet", "database": database, "table": "daily_sales_parquet",
                 "input": "daily_parquet", "mode": "replace", "order_by": ["day"]},
                {"id": "from_xlsx", "database": database, "table": "daily_sales_xlsx",
                 "input": "daily_xlsx", "mode": "replace", "order_by": ["day"]},
            ],
        }  # fmt: skip
        created = api.post("/pipelines", headers=engineer.headers, json=body)
        assert created.status_code == 201, created.text
        pipeline_id = created.json()["id"]
        try:
            deployed = api.post(f"/pipelines/{pipeline_id}/deploy", headers=engineer.headers)
            assert deployed.status_code == 200, deployed.text
            state = wait_deployed(api, engineer, pipeline_id)
            assert state["deploy_status"] == "deployed", state

            first = run_to_success(api, engineer, pipeline_id)
            on_postgres = [(d, Decimal(t), int(c)) for d, t, c in pg.execute(PG_DAILY_SALES)]
            assert on_postgres == expected_from_rows()
            for table, exact in (("daily_sales", True), ("daily_sales_mariadb", True),
                                 ("daily_sales_parquet", False), ("daily_sales_xlsx", False)):  # fmt: skip
                got = warehouse.query(
                    f"SELECT day, total_amount, transactions FROM {database}.{table} ORDER BY day"
                ).result_rows
                if exact:  # numeric(10,2)/decimal(10,2) stay decimals: equal to the cent
                    assert [(d, Decimal(t), c) for d, t, c in got] == on_postgres, table
                else:  # the files hold the amounts as floats
                    assert [(d, c) for d, _, c in got] == [(d, c) for d, _, c in on_postgres], table
                    totals = [float(t) for _, t, _ in on_postgres]
                    assert [float(t) for _, t, _ in got] == pytest.approx(totals), table
            assert first["rows_processed"] == 4 * len(on_postgres)

            run_to_success(api, engineer, pipeline_id)  # again: replace loads, nothing doubled
            for table in ("daily_sales", "daily_sales_mariadb", "daily_sales_parquet", "daily_sales_xlsx"):
                assert int(warehouse.command(f"SELECT count() FROM {database}.{table}")) == len(on_postgres)
        finally:
            api.delete(f"/pipelines/{pipeline_id}", headers=engineer.headers)
            warehouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")
