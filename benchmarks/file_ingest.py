"""Watched-folder ingestion: drop → queryable latency, and one big file's throughput next to native.

    .venv/bin/python benchmarks/file_ingest.py [--files 20] [--rows 1000000] [--running]

Starts its own stack (free ports, own databases; `--running` uses the stack of the current settings),
mounts a local folder under the stack's file roots through the API and watches it (`*.csv`, poll
interval 1 s). Then:
- latency: `--files` small CSVs (100 rows) dropped one at a time (written under a temporary name and
  renamed, as a careful writer does); for each, the time from the rename until its rows are
  queryable in the warehouse — p50 and p95 (target p50 < 8 s, p95 < 15 s);
- throughput: one `--rows` CSV (8 columns of sales data) dropped into the same watch, drop →
  queryable, next to the warehouse's own `INSERT … SELECT FROM file()` of the same file into a
  MergeTree table in the same run (target ≥ 0.8×). The watch's figure includes the sensor's
  completeness checks and the run's start-up.
The issue's third figure — peak RSS of the run worker for a file larger than 2 GB — is not measured
by this script yet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_stack import RUNNING_HELP, admin_headers, percentile, running_stack  # noqa: E402

from orchestration.warehouse.client import get_client  # noqa: E402

SALES_COLUMNS = (
    "id UInt64, order_date Date, customer_id UInt32, product String, region String, "
    "quantity UInt16, unit_price Float64, amount Float64"
)


def drop(folder: Path, name: str, text: str | None = None, source: Path | None = None) -> float:
    """Write under a temporary name, rename; returns the moment of the rename (monotonic)."""
    partial = folder / f"{name}.part"
    if source is not None:
        os.replace(source, partial)
    else:
        partial.write_text(text or "")
    os.replace(partial, folder / name)
    return time.monotonic()


def wait_rows(client: object, table: str, where: str, rows: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            count = int(client.command(f"SELECT count() FROM {table} WHERE {where}"))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the table appears with the first import
            count = 0
        if count >= rows:
            return time.monotonic()
        time.sleep(0.1)
    raise SystemExit(f"{table}: {rows} rows where {where} not queryable after {timeout:.0f} s")


def write_sales_csv(client: object, path: Path, rows: int) -> None:
    """Written by the warehouse itself (INTO OUTFILE is refused by its guard, so via a query result)."""
    query = (
        f"SELECT number + 1 AS id, toDate('2024-01-01') + (number % 365) AS order_date, "
        f"toUInt32(number % 50000) AS customer_id, concat('product-', toString(number % 1000)) AS product, "
        f"['north','south','east','west'][number % 4 + 1] AS region, toUInt16(number % 20 + 1) AS quantity, "
        f"round(1 + (number % 10000) / 100, 2) AS unit_price, round(quantity * unit_price, 2) AS amount "
        f"FROM numbers({rows})"
    )
    with path.open("wb") as out, client.raw_stream(query, fmt="CSVWithNames") as stream:  # type: ignore[attr-defined]
        for chunk in stream:
            out.write(chunk)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--running", action="store_true", help=RUNNING_HELP)
    args = parser.parse_args()

    with running_stack(args.running, AETL_RATE_LIMIT_ENABLED="false") as stack:
        headers = admin_headers(stack)
        api = httpx.Client(base_url=f"{stack.api_url}/api/v1", headers=headers, timeout=120)
        warehouse = get_client(stack.settings.clickhouse_url)
        folder = stack.settings.file_roots[0] / f"bench_{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        database = f"bench_{uuid.uuid4().hex[:8]}"
        warehouse.command(f"CREATE DATABASE {database}")
        (folder / "small").mkdir()
        (folder / "big").mkdir()
        mount = api.post("/mvp/storage/mount", json={"storage_type": "local", "path": str(folder)})
        mount.raise_for_status()
        watches = []
        for sub, table in (("small", "events"), ("big", "sales")):
            watch = api.post(
                "/mvp/storage/watch",
                json={
                    "storage_id": mount.json()["storage_id"],
                    "watch_path": f"/{sub}",
                    "file_pattern": "*.csv",
                    "poll_interval_seconds": 1,
                    "import_config": {"target_table": table, "target_database": database},
                },
            )
            watch.raise_for_status()
            watches.append(watch.json()["watch_id"])
        try:
            latencies = []
            for i in range(args.files):
                lines = "".join(f"{i * 100 + r},kind_{r % 7}\n" for r in range(100))
                dropped = drop(folder / "small", f"small_{i:03d}.csv", "id,kind\n" + lines)
                where = f"endsWith(_source_file, 'small_{i:03d}.csv')"
                seen = wait_rows(warehouse, f"{database}.events", where, 100)
                latencies.append(seen - dropped)
                print(f"  file {i + 1}: drop → queryable {seen - dropped:.2f} s", flush=True)
            print(
                f"drop → queryable, {args.files} small files: p50 {percentile(latencies, 50):.2f} s, "
                f"p95 {percentile(latencies, 95):.2f} s, max {max(latencies):.2f} s "
                "(target p50 < 8 s, p95 < 15 s)"
            )

            staging = stack.settings.file_roots[0] / f"bench_big_{uuid.uuid4().hex[:8]}.csv"
            write_sales_csv(warehouse, staging, args.rows)
            size_mb = staging.stat().st_size / 1e6
            native_table = f"{database}.native"
            warehouse.command(
                f"CREATE TABLE {native_table} ({SALES_COLUMNS}) ENGINE = MergeTree ORDER BY tuple()"
            )
            started = time.perf_counter()
            warehouse.command(f"INSERT INTO {native_table} SELECT * FROM file('{staging}', 'CSVWithNames')")
            native = time.perf_counter() - started
            dropped = drop(folder / "big", "big.csv", source=staging)
            seen = wait_rows(warehouse, f"{database}.sales", "1", args.rows, timeout=1800)
            ours = seen - dropped
            print(
                f"{args.rows} rows ({size_mb:.0f} MB CSV): native INSERT … SELECT FROM file() "
                f"{args.rows / native / 1e6:.2f} M rows/s; watch drop → queryable {ours:.1f} s = "
                f"{args.rows / ours / 1e6:.2f} M rows/s; ratio {native / ours:.2f} (target ≥ 0.8)"
            )
        finally:
            for watch_id in watches:
                api.delete(f"/mvp/storage/watches/{watch_id}")
            warehouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")
            shutil.rmtree(folder, ignore_errors=True)
            warehouse.close()
            api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
