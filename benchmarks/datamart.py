"""Datamarts over 1M rows: create → queryable, and the Excel export's time and memory, next to native.

    .venv/bin/python benchmarks/datamart.py [--rows 1000000] [--running]

Starts its own stack (free ports, own databases; `--running` uses the stack of the current settings,
then the API's memory is not measured). A pipeline loads `--rows` rows of sales from the warehouse
into its target `<db>.sales` (through the API: create, deploy, run). Then:
- create → queryable, through `POST /mvp/datamarts/create` (validation, dbt model, dbt parse,
  location reload, the first build as a Dagster run, row count), for a daily aggregate and for a
  1M-row datamart (every column of the target). Native baseline in the same run: the warehouse's
  own `CREATE TABLE … ENGINE = MergeTree AS <the same SELECT>`.
- Excel export of the 1M-row datamart through `POST /mvp/export/excel/datamart/{name}` (typed cells,
  summary sheet, chart): wall time, file size, and the API process's peak RSS during the export
  (its high-water mark is reset first, through /proc/<pid>/clear_refs). Baseline in the same run:
  bare xlsxwriter in constant-memory mode writing the same rows (no formats, no summary) in a child
  process, its time and peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_stack import RUNNING_HELP, admin_headers, running_stack  # noqa: E402

from orchestration.warehouse.client import get_client  # noqa: E402

BARE_EXPORT = """
import sys, time, xlsxwriter
from orchestration.warehouse.client import get_client
url, table, path = sys.argv[1:4]
client = get_client(url)
started = time.perf_counter()
book = xlsxwriter.Workbook(path, {"constant_memory": True})
sheet = book.add_worksheet("Data")
with client.query_row_block_stream(f"SELECT * FROM {table}", settings={"max_block_size": 65536}) as stream:
    sheet.write_row(0, 0, list(stream.source.column_names))
    row = 1
    for block in stream:
        for values in block:
            sheet.write_row(row, 0, values)
            row += 1
book.close()
print(f"{time.perf_counter() - started:.3f} {row - 1}")
"""


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def api_pid(stack: Any) -> int | None:
    for component in getattr(stack, "components", []):
        if component.name == "api" and component.process is not None:
            return int(component.process.pid)
    return None


def wait_deployed(api: httpx.Client, pipeline_id: str) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = api.get(f"/pipelines/{pipeline_id}/status").json()["data"]
        if state["deploy_status"] == "deployed":
            return
        if state["deploy_status"] == "failed":
            raise SystemExit(f"deploy failed: {state}")
        time.sleep(0.5)
    raise SystemExit("deploy did not finish in 300 s")


def wait_run(api: httpx.Client, pipeline_id: str, run_id: str) -> None:
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        items = api.get(f"/pipelines/{pipeline_id}/runs").json()["items"]
        status = next((r["dagster_status"] for r in items if r["run_id"] == run_id), None)
        if status == "SUCCESS":
            return
        if status in ("FAILURE", "CANCELED"):
            raise SystemExit(f"pipeline run {run_id} ended {status}")
        time.sleep(1)
    raise SystemExit("pipeline run did not finish in 1800 s")


def create_datamart(api: httpx.Client, warehouse: Any, name: str, query: str) -> tuple[float, int]:
    started = time.monotonic()
    response = api.post(
        "/mvp/datamarts/create",
        json={"name": name, "description": "benchmark", "source_query": query, "materialized": True},
    )
    if response.status_code != 201:
        raise SystemExit(f"create {name}: {response.status_code} {response.text[:500]}")
    if response.json().get("status") == "failed":
        raise SystemExit(f"create {name}: the first build failed: {response.text[:1000]}")
    rows = int(warehouse.command(f"SELECT count() FROM analytics.{name}"))
    return time.monotonic() - started, rows


def native_create(warehouse: Any, database: str, table: str, query: str) -> float:
    started = time.perf_counter()
    warehouse.command(f"CREATE TABLE {database}.{table} ENGINE = MergeTree ORDER BY tuple() AS {query}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--running", action="store_true", help=RUNNING_HELP)
    args = parser.parse_args()

    with running_stack(args.running, AETL_RATE_LIMIT_ENABLED="false") as stack:
        api = httpx.Client(base_url=f"{stack.api_url}/api/v1", headers=admin_headers(stack), timeout=3600)
        warehouse = get_client(stack.settings.clickhouse_url)
        database = f"bench_{uuid.uuid4().hex[:8]}"
        suffix = uuid.uuid4().hex[:6]
        marts = [f"daily_{suffix}", f"wide_{suffix}"]
        pipeline_id = None
        try:
            warehouse.command(f"CREATE DATABASE {database}")
            warehouse.command(
                f"CREATE TABLE {database}.raw_sales (id UInt64, order_date Date, customer_id UInt32, "
                "product String, region String, quantity UInt16, unit_price Float64, amount Float64) "
                "ENGINE = MergeTree ORDER BY id"
            )
            warehouse.command(
                f"INSERT INTO {database}.raw_sales SELECT number + 1, toDate('2024-01-01') + number % 365, "
                "number % 50000, concat('product-', toString(number % 1000)), "
                "['north','south','east','west'][number % 4 + 1], number % 20 + 1, "
                "round(1 + (number % 10000) / 100, 2), "
                "round((number % 20 + 1) * (1 + (number % 10000) / 100), 2) "
                f"FROM numbers({args.rows})"
            )
            created = api.post(
                "/pipelines",
                json={
                    "name": f"Bench sales {database}",
                    "sources": [{"id": "raw", "type": "clickhouse", "table": f"{database}.raw_sales"}],
                    "targets": [{"id": "out", "type": "clickhouse", "database": database, "table": "sales",
                                 "mode": "replace", "order_by": ["id"]}],
                },
            )  # fmt: skip
            if created.status_code != 201:
                raise SystemExit(f"pipeline: {created.status_code} {created.text[:500]}")
            pipeline_id = created.json()["id"]
            api.post(f"/pipelines/{pipeline_id}/deploy").raise_for_status()
            wait_deployed(api, pipeline_id)
            run = api.post(f"/pipelines/{pipeline_id}/run", json={})
            run.raise_for_status()
            wait_run(api, pipeline_id, run.json()["run_id"])
            loaded = int(warehouse.command(f"SELECT count() FROM {database}.sales"))
            print(f"pipeline target {database}.sales: {loaded} rows")

            daily_query = (
                "SELECT s.order_date AS day, s.region AS region, count() AS orders, "
                "sum(s.amount) AS revenue "
                f"FROM {database}.sales AS s GROUP BY day, region"
            )
            wide_query = f"SELECT * FROM {database}.sales"
            for name, query in zip(marts, (daily_query, wide_query), strict=True):
                native = native_create(warehouse, database, f"native_{name}", query)
                ours, rows = create_datamart(api, warehouse, name, query)
                print(
                    f"datamart {name.split('_')[0]} over {loaded} rows ({rows} rows out): "
                    f"create → queryable {ours:.2f} s through the API; native CREATE TABLE … AS SELECT "
                    f"{native:.2f} s"
                )

            pid = None if args.running else api_pid(stack)
            if pid is not None:
                before = kib(pid, "VmRSS")
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM
            started = time.monotonic()
            export = api.post(
                f"/mvp/export/excel/datamart/{marts[1]}",
                json={"include_charts": True, "include_summary": True},
            )
            seconds = time.monotonic() - started
            if export.status_code != 200:
                raise SystemExit(f"export: {export.status_code} {export.text[:500]}")
            body = export.json()
            memory = ""
            if pid is not None:
                memory = (
                    f"; API process RSS {before / 1024:.0f} MB before, "
                    f"peak {kib(pid, 'VmHWM') / 1024:.0f} MB "
                    "during the export"
                )
            print(
                f"Excel export of {body['rows']} rows: {seconds:.1f} s, "
                f"{body['file_size_bytes'] / 1e6:.1f} MB, "
                f"{body['sheets']} data sheet(s){memory}"
            )
            bare_path = stack.settings.data_dir / f"bare_{suffix}.xlsx"
            child = subprocess.run(
                [sys.executable, "-c", BARE_EXPORT, stack.settings.clickhouse_url,
                 f"analytics.{marts[1]}", str(bare_path)],
                capture_output=True, text=True, check=True,
                cwd=Path(__file__).resolve().parents[1],
            )  # fmt: skip
            bare_seconds, bare_rows = child.stdout.split()
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(
                f"baseline, bare xlsxwriter (constant memory, no formats) of the same {bare_rows} rows: "
                f"{float(bare_seconds):.1f} s, {bare_path.stat().st_size / 1e6:.1f} MB, "
                f"child peak RSS {peak:.0f} MB; "
                f"ratio of times {float(bare_seconds) / seconds:.2f}"
            )
            bare_path.unlink(missing_ok=True)
        finally:
            for name in marts:
                with contextlib.suppress(Exception):
                    api.delete(f"/mvp/datamarts/{name}")
            if pipeline_id is not None:
                with contextlib.suppress(Exception):
                    api.delete(f"/pipelines/{pipeline_id}")
            warehouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")
            warehouse.close()
            api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
