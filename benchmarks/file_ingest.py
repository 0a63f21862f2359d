"""Watched-folder ingestion: drop → queryable latency, and one big file's throughput next to native.

    .venv/bin/python benchmarks/file_ingest.py [--files 20] [--rows 1000000] [--big-gb 2.2] [--running]

Starts its own stack (free ports, own databases; `--running` uses the stack of the current settings),
mounts a local folder under the stack's file roots through the API and watches it (`*.csv`, poll
interval 1 s). Then:
- latency: `--files` small CSVs (100 rows) dropped one at a time (written under a temporary name and
  renamed, as a careful writer does); for each, the time from the rename until its rows are
  queryable in the warehouse — p50 and p95 (target p50 < 8 s, p95 < 15 s);
- throughput: one `--rows` CSV (8 columns of sales data): the warehouse's own `INSERT … SELECT FROM
  file()` of it into a MergeTree table, then the importer (`orchestration.storage.importer.import_file`,
  the code a watch's run executes: hash, inference, parse, staging, publish) on the same file in this
  process (target ≥ 0.8× of native), then the file dropped into a watch (drop → queryable, which adds
  the sensor's completeness check and the run's start-up to the import);
- memory (`--big-gb`, 0 = skip): a CSV of at least that size written to a temporary folder under the
  file roots and dropped into a watch; the peak RSS of the run worker (the process that imports, a
  child of the warm run-worker server) and of the warehouse process, sampled every 0.2 s until the
  rows are queryable (target < 1 GB for the importing process). The file is deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_stack import RUNNING_HELP, admin_headers, percentile, running_stack  # noqa: E402

from orchestration.storage.importer import import_file  # noqa: E402
from orchestration.storage.mounts import LocalStorage, MountConfig  # noqa: E402
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


def write_sales_csv(client: object, path: Path, rows: int, offset: int = 0) -> None:
    """Written by the warehouse itself (INTO OUTFILE is refused by its guard, so via a query result)."""
    query = (
        f"SELECT number + 1 + {offset} AS id, toDate('2024-01-01') + (number % 365) AS order_date, "
        f"toUInt32(number % 50000) AS customer_id, concat('product-', toString(number % 1000)) AS product, "
        f"['north','south','east','west'][number % 4 + 1] AS region, toUInt16(number % 20 + 1) AS quantity, "
        f"round(1 + (number % 10000) / 100, 2) AS unit_price, round(quantity * unit_price, 2) AS amount "
        f"FROM numbers({rows})"
    )
    with path.open("wb") as out, client.raw_stream(query, fmt="CSVWithNames") as stream:  # type: ignore[attr-defined]
        for chunk in stream:
            out.write(chunk)


def stack_process(marker: str, also: str) -> psutil.Process | None:
    """The stack's process whose command line holds `marker` and `also` (its port or folder)."""
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if marker in line and also in line:
            return proc
    return None


def rss(pid: int) -> tuple[int, int]:
    """(resident bytes, of which anonymous) of a process: file-backed pages (a mapped file) are the rest."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon"):
                fields[name] = int(value.split()[0]) * 1024
    return fields.get("VmRSS", 0), fields.get("RssAnon", 0)


class PeakRss:
    """Samples the RSS of a process (with `children`: of its largest descendant) every 0.2 s in a thread."""

    def __init__(self, process: psutil.Process, children: bool = False) -> None:
        self.process, self.children = process, children
        self.peak = self.peak_anon = 0
        self.baseline = self._sample()[0] if not children else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> tuple[int, int]:
        try:
            pids = (
                [c.pid for c in self.process.children(recursive=True)]
                if self.children
                else [self.process.pid]
            )
            samples = []
            for pid in pids:
                with contextlib.suppress(OSError):
                    samples.append(rss(pid))
            return max(samples, default=(0, 0))
        except psutil.Error:
            return 0, 0

    def _run(self) -> None:
        while not self._stop.is_set():
            total, anon = self._sample()
            self.peak, self.peak_anon = max(self.peak, total), max(self.peak_anon, anon)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def write_big_csv(client: object, path: Path, gigabytes: float) -> int:
    """Sales rows until the file has at least `gigabytes` GB; the number of rows."""
    rows = 0
    with path.open("wb"):
        pass
    while path.stat().st_size < gigabytes * 1e9:
        block = 5_000_000
        part = path.with_suffix(".block")
        write_sales_csv(client, part, block, offset=rows)
        with path.open("ab") as out, part.open("rb") as data:
            if rows:
                data.readline()  # one header only
            shutil.copyfileobj(data, out, 16 * 1024 * 1024)
        part.unlink()
        rows += block
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-gb", type=float, default=0.0, help="memory: a file of this size (0: skip)")
    parser.add_argument("--running", action="store_true", help=RUNNING_HELP)
    args = parser.parse_args()

    with running_stack(args.running, AETL_RATE_LIMIT_ENABLED="false") as stack:
        # the importer called in this process decides its fast path from the stack's file() roots
        roots = stack.settings.file_roots
        os.environ["AETL_WAREHOUSE_FILE_ROOTS"] = stack.settings.warehouse_file_roots or ":".join(
            str(r) for r in ([r for r in roots if r.name == "imports"] or roots[:1])
        )
        headers = admin_headers(stack)
        api = httpx.Client(base_url=f"{stack.api_url}/api/v1", headers=headers, timeout=120)
        warehouse = get_client(stack.settings.clickhouse_url)
        folder = stack.settings.file_roots[0] / f"bench_{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        database = f"bench_{uuid.uuid4().hex[:8]}"
        warehouse.command(f"CREATE DATABASE {database}")
        mount = api.post("/mvp/storage/mount", json={"storage_type": "local", "path": str(folder)})
        mount.raise_for_status()
        watches = []
        for sub, table in (("small", "events"), ("big", "sales"), ("huge", "huge")):
            (folder / sub).mkdir(exist_ok=True)
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
            if latencies:
                print(
                    f"drop → queryable, {args.files} small files: p50 {percentile(latencies, 50):.2f} s, "
                    f"p95 {percentile(latencies, 95):.2f} s, max {max(latencies):.2f} s "
                    "(target p50 < 8 s, p95 < 15 s)"
                )

            if args.rows:
                throughput(stack, warehouse, folder, database, args.rows)
            if args.big_gb:
                memory(stack, warehouse, folder, database, args.big_gb)
        finally:
            for watch_id in watches:
                api.delete(f"/mvp/storage/watches/{watch_id}")
            warehouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")
            shutil.rmtree(folder, ignore_errors=True)
            warehouse.close()
            api.close()
    return 0


def throughput(stack: object, warehouse: object, folder: Path, database: str, rows: int) -> None:
    settings = stack.settings  # type: ignore[attr-defined]
    root = settings.file_roots[0]
    staging = root / f"bench_big_{uuid.uuid4().hex[:8]}.csv"
    write_sales_csv(warehouse, staging, rows)
    size_mb = staging.stat().st_size / 1e6
    native_table = f"{database}.native"
    warehouse.command(  # type: ignore[attr-defined]
        f"CREATE TABLE {native_table} ({SALES_COLUMNS}) ENGINE = MergeTree ORDER BY tuple()"
    )
    warehouse.command(f"SELECT count() FROM file('{staging}', 'CSVWithNames')")  # type: ignore[attr-defined]
    started = time.perf_counter()
    warehouse.command(f"INSERT INTO {native_table} SELECT * FROM file('{staging}', 'CSVWithNames')")  # type: ignore[attr-defined]
    native = time.perf_counter() - started
    storage = LocalStorage(MountConfig(storage_type="local", path=str(root)), [root])
    started = time.perf_counter()
    import_file(storage, staging.name, warehouse, table="direct_cold", database=database)
    cold = time.perf_counter() - started
    started = time.perf_counter()  # the second call: this process's imports and connections are warm
    result = import_file(storage, staging.name, warehouse, table="direct", database=database)
    importer = time.perf_counter() - started
    print(
        f"{rows} rows ({size_mb:.0f} MB CSV): native INSERT … SELECT FROM file() {native:.2f} s "
        f"({rows / native / 1e6:.2f} M rows/s); importer {importer:.2f} s "
        f"({rows / importer / 1e6:.2f} M rows/s, "
        f"path {result.path}, {result.rows_loaded} loaded, {result.rows_quarantined} quarantined); "
        f"ratio {native / importer:.2f} (target ≥ 0.8); first call in this process {cold:.2f} s",
        flush=True,
    )
    dropped = drop(folder / "big", "big.csv", source=staging)
    seen = wait_rows(warehouse, f"{database}.sales", "1", rows, timeout=1800)
    ours = seen - dropped
    print(
        f"  the same file through the watch: drop → queryable {ours:.1f} s "
        f"= {rows / ours / 1e6:.2f} M rows/s; "
        f"ratio to native {native / ours:.2f} (includes the sensor's check and the run's start-up)",
        flush=True,
    )


def memory(stack: object, warehouse: object, folder: Path, database: str, gigabytes: float) -> None:
    settings = stack.settings  # type: ignore[attr-defined]
    temp = settings.data_dir / f"bench_huge_{uuid.uuid4().hex[:8]}"
    temp.mkdir(parents=True)
    try:
        source = temp / "huge.csv"
        rows = write_big_csv(warehouse, source, gigabytes)
        size_gb = source.stat().st_size / 1e9
        workers = stack_process("orchestration.run_launcher.server", str(settings.dagster_home))
        house = stack_process("orchestration.warehouse.server", f"--port {settings.clickhouse_http_port}")
        if workers is None or house is None:
            raise SystemExit("the run-worker server or the warehouse process was not found")
        with PeakRss(workers, children=True) as worker_rss, PeakRss(house) as house_rss:
            dropped = drop(folder / "huge", "huge.csv", source=source)
            seen = wait_rows(warehouse, f"{database}.huge", "1", rows, timeout=3600)
        print(
            f"{rows} rows ({size_gb:.2f} GB CSV) through the watch: drop → queryable {seen - dropped:.0f} s; "
            f"peak RSS of the run worker {worker_rss.peak / 2**20:.0f} MiB "
            f"(anonymous {worker_rss.peak_anon / 2**20:.0f} MiB; target < 1024 MiB); "
            f"warehouse process peak {house_rss.peak / 2**20:.0f} MiB "
            f"(anonymous {house_rss.peak_anon / 2**20:.0f} MiB; "
            f"before the drop {house_rss.baseline / 2**20:.0f} MiB)",
            flush=True,
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        (folder / "huge" / "huge.csv").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
