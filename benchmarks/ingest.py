"""Loading 1M rows through move_target next to the native baseline, in the same run.

    .venv/bin/python benchmarks/ingest.py [--rows 1000000] [--only csv|postgres] [--repeat 2]
                                          [--modes append,replace]

Starts the embedded warehouse (`python -m orchestration.warehouse.server`) on a free port with a
temporary data folder (its imports folder is the file root), then for each source:
- CSV (8 columns of sales data): native = the warehouse's own `INSERT … SELECT FROM file(...)` into
  a MergeTree table; ours = `move_target` with a CSV connector, once per mode of `--csv-modes`:
  `append` into a new table (its types inferred), `append-declared` into a new table with the
  column types declared in the source (`options.columns`), `append-existing` into a table that
  already holds the same rows (the file is read with that table's types; rows that do not fit are
  quarantined);
- PostgreSQL (the same rows in a table): native = `COPY (SELECT …) TO STDOUT` alone, read by psycopg
  and thrown away; ours = `move_target` with a PostgreSQL connector into the warehouse, once per
  load mode of `--modes`: `append` into a new table, `append-existing` into a table already holding
  the rows, `replace`; each streams straight into the load's own table, which is then renamed,
  moved (MOVE PARTITION) or swapped in.
For the `-existing` modes the worker first loads the same rows with another load id and merges the
table's parts, before its clock.
After its clock the worker runs the same load id once more (a retried run) and reports the rows that
wrote (must be 0) and the rows in the table.
Each `move_target` runs in a child process (a run worker's stand-in) whose peak RSS is reported;
the modules it imports on first use are loaded before its clock starts.
The native baselines run in a fresh process too, started like the worker (the same imports), so
the warehouse has sat idle for as long before each of them: after 3 s idle the same native insert
is 10–36 ms slower than right after other work (`--natives-in-process` measures them the old way,
from this process between the workers).
Prints rows/s, the ratio to native and the peak RSS; best of --repeat. The CSV native baseline
is measured twice: into declared types (UInt16, non-Nullable), and into the types the warehouse
infers from the file (Nullable Int64 …), which is what a new table from an undeclared file gets
(and so the table of `append-existing`, made by such a load). The ratio against the baseline with
the same column types as the mode's table is marked "like for like"."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
# the warehouse started here, its clients and the workers share one generated password
os.environ.setdefault("CLICKHOUSE_PASSWORD", uuid.uuid4().hex)
DECLARED = "file() → declared types"
INFERRED = "file() → inferred types"
COLUMNS = (
    "id UInt64, order_date Date, customer_id UInt32, product String, region String, "
    "quantity UInt16, unit_price Float64, amount Float64"
)


def free_port() -> int:
    from tests.support import free_port as pick

    return pick()


def write_sales_csv(path: Path, rows: int) -> None:
    """8 columns of sales data (~100 bytes a row), written by the warehouse itself for speed."""
    import chdb  # only the benchmark set-up writes the file this way

    query = (
        f"SELECT number + 1 AS id, toDate('2024-01-01') + (number % 365) AS order_date, "
        f"toUInt32(number % 50000) AS customer_id, concat('product-', toString(number % 1000)) AS product, "
        f"['north','south','east','west'][number % 4 + 1] AS region, toUInt16(number % 20 + 1) AS quantity, "
        f"round(1 + (number % 10000) / 100, 2) AS unit_price, round(quantity * unit_price, 2) AS amount "
        f"FROM numbers({rows}) INTO OUTFILE '{path}' FORMAT CSVWithNames"
    )
    chdb.query(query)


def start_warehouse(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = open(data_dir / "warehouse.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestration.warehouse.server", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir / "warehouse")],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "AETL_DATA_DIR": str(data_dir)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/ping", timeout=1).text == "Ok.\n":
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("warehouse did not start")


def warehouse_command(url: str, sql: str) -> str:
    auth = ("default", os.environ["CLICKHOUSE_PASSWORD"])
    response = httpx.post(url, content=sql.encode(), timeout=600, auth=auth)
    response.raise_for_status()
    return response.text


def native_csv(url: str, path: Path, inferred: bool = False) -> float:
    """Into a table of the declared column types, or (`inferred`) of the types ClickHouse infers from
    the file itself (Nullable, 64-bit integers), as a table created from the file gets them."""
    table = f"native_{uuid.uuid4().hex[:8]}"
    if inferred:
        warehouse_command(
            url,
            f"CREATE TABLE {table} ENGINE = MergeTree ORDER BY tuple() "
            f"EMPTY AS SELECT * FROM file('{path}', 'CSVWithNames')",
        )
    else:
        warehouse_command(url, f"CREATE TABLE {table} ({COLUMNS}) ENGINE = MergeTree ORDER BY tuple()")
    started = time.perf_counter()
    warehouse_command(url, f"INSERT INTO {table} SELECT * FROM file('{path}', 'CSVWithNames')")
    elapsed = time.perf_counter() - started
    warehouse_command(url, f"DROP TABLE {table} SYNC")
    return elapsed


def load_postgres(pg_url: str, csv_path: Path) -> None:
    """The same rows as the CSV, in a PostgreSQL table."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE sales (id bigint, order_date date, customer_id integer, product text, region text, "
            "quantity smallint, unit_price double precision, amount double precision)"
        )
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY sales FROM STDIN (FORMAT csv, HEADER)") as copy,
            csv_path.open("rb") as handle,
        ):
            while block := handle.read(1 << 20):
                copy.write(block)
        conn.execute("VACUUM ANALYZE sales")


def native_copy(pg_url: str) -> float:
    started = time.perf_counter()
    with (
        psycopg.connect(pg_url) as conn,
        conn.cursor() as cursor,
        cursor.copy("COPY (SELECT * FROM sales) TO STDOUT") as copy,
    ):
        for _ in copy:
            pass
    return time.perf_counter() - started


def worker(args: argparse.Namespace) -> None:
    """One move_target in this process (the run worker's stand-in); prints JSON figures."""
    # the embedded warehouse of this benchmark, as a run worker sees its stack's (never CLICKHOUSE_URL,
    # which means "a real ClickHouse" and gets no platform password)
    os.environ["CLICKHOUSE_HTTP_PORT"] = str(urlsplit(args.warehouse).port)
    from orchestration.connectors.config import parse_connector_config
    from orchestration.movement import MoveContext, move_target
    from orchestration.specs.pipeline import PipelineDocument
    from orchestration.warehouse.resource import ClickHouseResource

    if args.native:
        # the native baseline from a process started like the worker (same imports, so the warehouse has
        # sat idle for as long), the clock around its one statement only
        if args.native == "copy":
            seconds = native_copy(f"{PG_SERVER}/{args.pg_database}")
        else:
            seconds = native_csv(args.warehouse, Path(args.path), inferred=args.native == "inferred")
        print(json.dumps({"seconds": seconds}))
        return

    class Log:
        def info(self, msg: str, *a: object, **k: object) -> None:
            print(msg, file=sys.stderr)

        def warning(self, msg: str, *a: object, **k: object) -> None:
            print(msg, file=sys.stderr)

    base_mode, *flags = args.mode.split("-")
    if args.worker == "csv":
        connector = parse_connector_config("csv", {"path": ""})
        source = {"id": "source_1", "connector_id": "conn_bench", "type": "csv", "path": args.path}
        if "declared" in flags:
            source["options"] = {"columns": dict(c.strip().split(" ", 1) for c in COLUMNS.split(","))}
    else:
        connector = parse_connector_config(
            "postgresql", {"host": "127.0.0.1", "database": args.pg_database, "username": "postgres"}
        )
        source = {"id": "source_1", "connector_id": "conn_bench", "table": "sales"}
    table = f"ours_{uuid.uuid4().hex[:8]}"
    existing = "existing" in flags
    target = {"table": table, "mode": base_mode}
    doc = PipelineDocument.parse({"name": "bench", "sources": [source], "targets": [target]})
    warehouse = ClickHouseResource(url=args.warehouse)
    if existing:
        move_target(
            doc, doc.targets[0], MoveContext(Log(), "bench", uuid.uuid4().hex), warehouse,
            connectors=lambda _id: connector,
        )  # fmt: skip
        # a settled table: the background merges of those parts (10 at 10M rows) would otherwise run
        # during the clock, on the same 2 cores
        warehouse.command(f"OPTIMIZE TABLE {table} FINAL")
    # modules the engine imports on first use (the settings behind the file roots): a run worker pays
    # them once per process, not per row, so they are loaded before the clock starts
    from orchestration.connectors.config import file_roots

    file_roots()
    load_id = uuid.uuid4().hex
    started = time.perf_counter()
    result = move_target(
        doc, doc.targets[0], MoveContext(Log(), "bench", load_id), warehouse, connectors=lambda _id: connector
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    # after the clock: the same load id again (a retried run) must write nothing
    retry = move_target(
        doc, doc.targets[0], MoveContext(Log(), "bench", load_id), warehouse, connectors=lambda _id: connector
    )  # fmt: skip
    final_rows = int(warehouse.command(f"SELECT count() FROM {table}"))
    warehouse.command(f"DROP TABLE {table} SYNC")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the worker's own children (psql for PostgreSQL): the largest of them. An upper bound: Linux counts
    # a child's peak from the memory it shared with the worker at fork (psql alone peaks at ~9 MB)
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "rows": result.rows_written,
                "path": result.path,
                "retry_rows_written": retry.rows_written,
                "rows_in_table": final_rows,
                "peak_rss_mb": peak_mb,
                "child_peak_rss_mb": child_mb,
            }
        )
    )


def run_worker(kind: str, warehouse: str, data_dir: Path, **extra: str) -> dict[str, object]:
    argv = [sys.executable, __file__, "--worker", kind, "--warehouse", warehouse]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", value]
    env = {**os.environ, "AETL_DATA_DIR": str(data_dir), "AETL_FILE_ROOTS": str(data_dir / "imports")}
    output = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise SystemExit(f"worker failed:\n{output.stderr[-3000:]}")
    if os.environ.get("BENCH_VERBOSE"):
        print(output.stderr[-2000:])
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def native_worker(kind: str, warehouse: str, data_dir: Path, **extra: str) -> Callable[[], float]:
    """A native baseline measured by a fresh worker process (see worker())."""
    return lambda: float(run_worker(kind, warehouse, data_dir, **extra)["seconds"])  # type: ignore[arg-type]


def report(
    name: str, rows: int, natives: dict[str, float], ours: dict[str, object], like: str | None = None
) -> None:
    """`like`: the native baseline whose table has the same column types as this mode's."""
    seconds = float(ours["seconds"])  # type: ignore[arg-type]
    ratios = ", ".join(
        f"{native / seconds:.2f} vs {label}" + (" (like for like)" if label == like else "")
        for label, native in natives.items()
    )
    print(
        f"{name:<20} move_target {rows / seconds / 1e6:6.2f} M rows/s via {ours['path']} | ratio {ratios} | "
        f"peak RSS of the worker {float(ours['peak_rss_mb']):7.1f} MB "  # type: ignore[arg-type]
        f"(its largest child {float(ours['child_peak_rss_mb']):5.1f} MB, counted by Linux from the "  # type: ignore[arg-type]
        f"memory shared at fork) | the same load id again wrote "
        f"{ours['retry_rows_written']} rows, {ours['rows_in_table']} in the table"
    )


def measure(
    kind: str,
    args: argparse.Namespace,
    natives: dict[str, Callable[[], float]],
    modes: dict[str, dict[str, str]],
    url: str,
    data_dir: Path,
) -> None:
    """Native and every mode take turns, round after round, so a slow spell of the machine hits all
    of them alike; the best of each is reported."""
    native_times: dict[str, list[float]] = {label: [] for label in natives}
    ours: dict[str, list[dict[str, object]]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):
        for label, native in natives.items():
            native_times[label].append(native())
        for mode, extra in modes.items():
            ours[mode].append(run_worker(kind, url, data_dir, **extra))
    best_native = {label: min(times) for label, times in native_times.items()}
    for label, seconds in best_native.items():
        print(f"{kind:<20} native {label}: {args.rows / seconds / 1e6:6.2f} M rows/s")
    for mode, results in ours.items():
        best = min(results, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
        like = None
        if kind == "csv":
            like = DECLARED if "declared" in mode else INFERRED
        report(f"{'pg' if kind == 'postgres' else kind} {mode}", args.rows, best_native, best, like)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", choices=["csv", "postgres"])
    parser.add_argument("--worker", choices=["csv", "postgres"])
    parser.add_argument("--warehouse")
    parser.add_argument("--path")
    parser.add_argument("--pg-database")
    parser.add_argument("--mode", default="append", help="the worker's load mode")
    parser.add_argument("--native", choices=["declared", "inferred", "copy"], help="the worker: a baseline")
    parser.add_argument(
        "--natives-in-process",
        action="store_true",
        help="run the native baselines from this process (right after other work) instead of a fresh one",
    )
    parser.add_argument(
        "--modes", default="append,append-existing,replace", help="PostgreSQL: load modes to measure"
    )
    parser.add_argument(
        "--csv-modes", default="append,append-declared,append-existing", help="CSV: load modes to measure"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="aetl_bench_") as tmp:
        data_dir = Path(tmp)
        imports = data_dir / "imports"
        imports.mkdir()
        csv_path = imports / "sales.csv"
        write_sales_csv(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"{args.rows} rows, CSV {size_mb:.0f} MB; {args.repeat} runs each, best shown")
        process, url = start_warehouse(data_dir)
        try:
            if args.only in (None, "csv"):
                natives = {
                    DECLARED: lambda: native_csv(url, csv_path),
                    INFERRED: lambda: native_csv(url, csv_path, inferred=True),
                }
                if not args.natives_in_process:
                    natives = {
                        label: native_worker("csv", url, data_dir, native=kind, path=str(csv_path))
                        for label, kind in ((DECLARED, "declared"), (INFERRED, "inferred"))
                    }
                measure(
                    "csv", args, natives,
                    {m: {"path": "sales.csv", "mode": m} for m in args.csv_modes.split(",")}, url, data_dir,
                )  # fmt: skip
            if args.only in (None, "postgres"):
                database = f"aetl_bench_{uuid.uuid4().hex[:8]}"
                with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {database}")
                pg_url = f"{PG_SERVER}/{database}"
                try:
                    load_postgres(pg_url, csv_path)
                    modes = {m: {"pg_database": database, "mode": m} for m in args.modes.split(",")}
                    copy = (
                        (lambda: native_copy(pg_url))
                        if args.natives_in_process
                        else native_worker("postgres", url, data_dir, native="copy", pg_database=database)
                    )
                    measure("postgres", args, {"COPY … TO STDOUT alone": copy}, modes, url, data_dir)
                finally:
                    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
                        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
