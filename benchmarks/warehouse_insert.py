"""Arrow insert + select of 1M rows: through the embedded warehouse server vs. chDB in-process.

    .venv/bin/python benchmarks/warehouse_insert.py [--rows 1000000] [--repeat 3]

Starts `python -m orchestration.warehouse.server` on a free port with a temporary data folder,
inserts one Arrow table with clickhouse-connect (`insert_arrow`) and reads it back
(`query_arrow`, `query_arrow_stream`), then does the same with chDB in this process (the baseline:
`send_insert(..., "Arrow")` and `query(..., "Arrow")`). Prints rows/s for each; best of --repeat.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa

REPO_ROOT = Path(__file__).resolve().parents[1]
DDL = (
    "CREATE TABLE {t} (id UInt64, name String, value Float64, ts DateTime, tag LowCardinality(String)) "
    "ENGINE = MergeTree ORDER BY id"
)


def make_table(rows: int) -> pa.Table:
    ids = pa.array(range(rows), pa.uint64())
    return pa.table(
        {
            "id": ids,
            "name": pa.array([f"name-{i % 10_000}" for i in range(rows)]),
            "value": pa.array([i * 0.5 for i in range(rows)], pa.float64()),
            "ts": pa.array([1_700_000_000 + i for i in range(rows)], pa.uint32()),
            "tag": pa.array([("a", "b", "c", "d")[i % 4] for i in range(rows)]),
        }
    )


def best(repeat: int, setup: Callable[[int], None], run: Callable[[int], object]) -> float:
    times = []
    for i in range(repeat):
        setup(i)
        started = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - started)
    return min(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_server(table: pa.Table, repeat: int, tmp: Path) -> dict[str, float]:
    from orchestration.warehouse.client import get_client

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestration.warehouse.server",
            "--port",
            str(port),
            "--data-dir",
            str(tmp / "srv"),
            "--log-level",
            "WARNING",
        ],
        cwd=REPO_ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ping", timeout=1).text == "Ok.\n":
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = get_client(url)
        rows = table.num_rows
        results = {}
        results["insert_arrow"] = rows / best(
            repeat,
            lambda i: client.command(DDL.format(t=f"default.b{i}")),
            lambda i: client.insert_arrow(f"default.b{i}", table),
        )
        assert client.command("SELECT count() FROM default.b0") == rows
        results["query_arrow"] = rows / best(
            repeat, lambda i: None, lambda i: client.query_arrow("SELECT * FROM default.b0")
        )

        def stream(i: int) -> None:
            n = 0
            with client.query_arrow_stream("SELECT * FROM default.b0") as s:
                for batch in s:
                    n += batch.num_rows
            assert n == rows

        results["query_arrow_stream"] = rows / best(repeat, lambda i: None, stream)
        client.close()
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_inprocess(table: pa.Table, repeat: int, tmp: Path) -> dict[str, float]:
    import chdb

    conn = chdb.connect(str(tmp / "local"))
    rows = table.num_rows
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    payload = sink.getvalue().to_pybytes()

    def insert(i: int) -> None:
        ins = conn.send_insert(f"INSERT INTO b{i}", "Arrow")
        ins.append(payload)
        ins.finish()

    results = {}
    results["insert_arrow"] = rows / best(repeat, lambda i: conn.query(DDL.format(t=f"b{i}")), insert)

    def select(i: int) -> None:
        data = conn.query("SELECT * FROM b0", "Arrow").bytes()
        assert pa.ipc.open_file(data).read_all().num_rows == rows

    results["query_arrow"] = rows / best(repeat, lambda i: None, select)
    conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = make_table(args.rows)
    print(f"{args.rows:,} rows, {table.nbytes / 1e6:.0f} MB as Arrow; best of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        server = bench_server(table, args.repeat, Path(tmp))
        local = bench_inprocess(table, args.repeat, Path(tmp))
    print(f"{'operation':<22}{'server rows/s':>16}{'chDB in-process rows/s':>26}{'ratio':>8}")
    for op in ("insert_arrow", "query_arrow", "query_arrow_stream"):
        base = local.get(op) or local["query_arrow"]
        print(f"{op:<22}{server[op]:>16,.0f}{base:>26,.0f}{server[op] / base:>8.2f}")


if __name__ == "__main__":
    main()
