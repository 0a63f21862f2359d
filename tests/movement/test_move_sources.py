"""move_target from real sources into the real warehouse: equal row for row, incremental, idempotent by
load id, clear failures that leave the target as it was, sandboxed Python steps, quarantined rows."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import xlsxwriter  # type: ignore[import-untyped]
from clickhouse_connect.driver.client import Client

from orchestration.connectors import postgres
from orchestration.movement import MoveContext, MoveError, move_target
from orchestration.movement.extract import pipe_folder
from orchestration.movement.python_step import StepLimits
from orchestration.specs.pipeline import PipelineDocument
from orchestration.warehouse.resource import ClickHouseResource
from tests.sources import (
    PgSource,
    add_transactions,
    create_mysql_transactions,
    create_transactions_table,
    mysql_source,
    postgres_source,
    transaction_rows,
)

DAILY_SALES_SQL = (
    "SELECT date AS day, sum(amount) AS total_amount, count() AS transactions "
    "FROM source_1 WHERE amount > 0 GROUP BY day"
)
STAGING_TABLES = "SELECT count() FROM system.tables WHERE database = 'aetl_staging'"
PG_DAILY_SALES = (
    "SELECT date, sum(amount), count(*) FROM transactions WHERE amount > 0 GROUP BY date ORDER BY date"
)


def document(
    source: dict[str, Any], target: dict[str, Any], steps: list[dict[str, Any]] | None = None
) -> PipelineDocument:
    return PipelineDocument.parse(
        {
            "name": "t",
            "sources": [{"id": "source_1", **source}],
            "transformations": steps or [],
            "targets": [target],
        }
    )


def run(doc: PipelineDocument, context: MoveContext, warehouse: ClickHouseResource, **kw: Any) -> Any:
    return move_target(doc, doc.targets[0], context, warehouse, **kw)


@pytest.fixture
def pg() -> Any:
    with postgres_source() as source:
        create_transactions_table(source, 2000)
        yield source


def test_postgres_daily_sales_equals_the_same_sql_on_postgres(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    doc = document(
        {"connector_id": connector["id"], "table": "transactions"},
        {"table": "daily_sales", "database": target_db, "mode": "replace", "order_by": ["day"]},
        [{"id": "transform_1", "type": "sql", "sql": DAILY_SALES_SQL}],
    )
    context = move_context()
    staging_tables = STAGING_TABLES
    staged_before = wh.command(staging_tables) if wh.command("EXISTS DATABASE aetl_staging") else 0
    result = run(doc, context, warehouse)
    assert result.path == "postgres_psql_pipe" and result.rows_read == 2000
    expected = pg.execute(PG_DAILY_SALES)
    got = wh.query(
        f"SELECT day, total_amount, transactions FROM {target_db}.daily_sales ORDER BY day"
    ).result_rows
    assert [(d, Decimal(t), c) for d, t, c in got] == [(d, s, c) for d, s, c in expected]
    assert result.rows_written == len(expected) and result.extraction_time_ms > 0
    metadata = result.as_metadata()
    assert metadata["movement_path"] == "postgres_psql_pipe" and metadata["rows_read"] == 2000
    # again, the same load id: still one row per day
    run(doc, context, warehouse)
    assert wh.command(f"SELECT count() FROM {target_db}.daily_sales") == len(expected)
    # this load's staging tables are gone
    assert wh.command(staging_tables) == staged_before


def test_postgres_copy_keeps_every_value_and_appends_once_per_load_id(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    pg.execute(
        "INSERT INTO transactions VALUES "
        "(999999, E'tab\\there \"q\" \\\\ back', -1.5, '2025-01-01', now(), NULL)"
    )
    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    doc = document(
        {"connector_id": connector["id"], "table": "transactions"},
        {"table": "tx", "database": target_db, "mode": "append", "order_by": ["id"]},
    )
    context = move_context()
    first = run(doc, context, warehouse)
    assert first.rows_written == 2001
    source_rows = pg.execute(
        "SELECT id, customer, amount, date, created_at AT TIME ZONE 'UTC', paid FROM transactions ORDER BY id"
    )
    got = wh.query(
        f"SELECT id, customer, amount, date, created_at, paid FROM {target_db}.tx ORDER BY id"
    ).result_rows
    assert [(r[0], r[1], Decimal(r[2]), r[3], r[4].replace(tzinfo=None), r[5]) for r in got] == source_rows
    # a retry of the same run (same load id) writes nothing; a new run appends
    again = run(doc, context, warehouse)
    assert again.rows_written == 0 and wh.command(f"SELECT count() FROM {target_db}.tx") == 2001
    run(doc, move_context(), warehouse)
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 4002


@pytest.mark.parametrize("copy_client", ["psql", "psycopg"])
def test_postgres_replace_streams_straight_into_the_new_table_and_a_broken_stream_publishes_nothing(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext], copy_client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """psql's COPY (C, no Python per row) when psql is installed, else psycopg's, both into a pipe."""
    if copy_client == "psycopg":
        monkeypatch.setattr(postgres.shutil, "which", lambda _name: None)
    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    target = {"table": "tx", "database": target_db, "mode": "replace", "order_by": ["id"]}
    staging_tables = STAGING_TABLES
    staged_before = wh.command(staging_tables) if wh.command("EXISTS DATABASE aetl_staging") else 0
    pipes = pipe_folder()
    pipes_before = set(pipes.iterdir()) if pipes.exists() else set()
    result = run(
        document({"connector_id": connector["id"], "table": "transactions"}, target),
        move_context(),
        warehouse,
    )
    # one write: COPY → named pipe → the insert into the table that is swapped in
    expected = "postgres_psql_pipe_direct" if copy_client == "psql" else "postgres_copy_text_pipe_direct"
    assert result.path == expected, result.path
    assert result.rows_read == 2000 and result.rows_written == 2000
    assert wh.query(f"SELECT sum(id), count() FROM {target_db}.tx").result_rows == pg.execute(
        "SELECT sum(id), count(*) FROM transactions"
    )
    assert wh.command(staging_tables) == staged_before and set(pipes.iterdir()) == pipes_before

    # PostgreSQL fails after ~6 MB have gone into the pipe: the warehouse saw an early end of the
    # data, yet the half-filled table is never swapped in
    failing = (
        "SELECT g AS id, 100 / (g - 500000) AS ratio, repeat('x', 4) AS pad "
        "FROM generate_series(1, 600000) AS g"
    )
    with pytest.raises(MoveError, match="division by zero"):
        run(document({"connector_id": connector["id"], "query": failing}, target), move_context(), warehouse)
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 2000
    assert wh.command(staging_tables) == staged_before and set(pipes.iterdir()) == pipes_before


def test_a_first_load_is_written_once_and_appears_whole_or_not_at_all(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An append into a table that does not exist yet fills a fresh table straight from the stream and
    renames it into place: a stream that breaks leaves no table, a retry of the load writes nothing."""
    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    target = {"table": "tx", "database": target_db, "mode": "append", "order_by": ["id"]}
    # the load's own table, and the hidden one CREATE OR REPLACE … AS SELECT fills before renaming it
    leftovers = (
        f"SELECT count() FROM system.tables WHERE database = '{target_db}' "
        "AND (name LIKE 'tx\\_\\_%' OR name LIKE '\\_tmp\\_replace\\_%')"
    )
    failing = (
        "SELECT g AS id, 100 / (g - 500000) AS ratio, repeat('x', 4) AS pad "
        "FROM generate_series(1, 600000) AS g"
    )
    with pytest.raises(MoveError, match="division by zero"):
        run(document({"connector_id": connector["id"], "query": failing}, target), move_context(), warehouse)
    assert not wh.command(f"EXISTS TABLE {target_db}.tx") and wh.command(leftovers) == 0

    doc = document({"connector_id": connector["id"], "table": "transactions"}, target)
    context = move_context()
    first = run(doc, context, warehouse)
    assert first.path == "postgres_psql_pipe_direct" and first.rows_written == 2000
    # the load's intent is in the ledger and its table is gone: the same load id again writes nothing
    again = run(doc, context, warehouse)
    assert again.path == "already_published" and again.rows_written == 0
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 2000 and wh.command(leftovers) == 0
    # the comment is not the only record: with the table's comment gone (a rebuild), the ledger knows
    wh.command(f"ALTER TABLE {target_db}.tx MODIFY COMMENT ''")
    rebuilt = run(doc, context, warehouse)
    assert rebuilt.path == "already_published" and rebuilt.rows_written == 0
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 2000 and wh.command(leftovers) == 0

    # another load created the target between this load's look and its rename: the rows go in from
    # the fresh table, once
    from orchestration.movement import engine

    real_info = engine._target_info  # noqa: SLF001
    looks: list[object] = []

    def first_look_misses(client: Any, table: Any) -> Any:
        looks.append(table)
        return engine.TargetInfo([]) if len(looks) == 1 else real_info(client, table)

    monkeypatch.setattr(engine, "_target_info", first_look_misses)
    raced = run(doc, move_context(), warehouse)
    assert raced.path == "postgres_psql_pipe_direct" and raced.rows_written == 2000
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 4000 and wh.command(leftovers) == 0


def test_a_load_stopped_before_or_while_publishing_is_finished_by_its_retry_exactly_once(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The worker dies after the load's intent is in the ledger (before the move, or after it): the
    retry of the same load id moves what is left, or sees the load's table gone, and writes nothing
    twice; an ordinary new load appends."""
    from orchestration.warehouse import publish

    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    target = {"table": "tx", "database": target_db, "mode": "append", "order_by": ["id"]}
    doc = document({"connector_id": connector["id"], "table": "transactions"}, target)
    # the load's own table, and the hidden one CREATE OR REPLACE … AS SELECT fills before renaming it
    leftovers = (
        f"SELECT count() FROM system.tables WHERE database = '{target_db}' "
        "AND (name LIKE 'tx\\_\\_%' OR name LIKE '\\_tmp\\_replace\\_%')"
    )
    assert run(doc, move_context(), warehouse).rows_written == 2000
    real_move = publish.move_rows

    def dies_before_moving(*args: Any) -> None:
        raise RuntimeError("the run worker died")

    context = move_context()
    monkeypatch.setattr(publish, "move_rows", dies_before_moving)
    with pytest.raises(RuntimeError):
        run(doc, context, warehouse)
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 2000 and wh.command(leftovers) == 1
    # the engine marks its load tables: the clean-up recognises this one, and keeps it for the retry
    _, pending = publish.abandoned_load_tables(wh, 0)
    assert len([p for p in pending if p.startswith(f"{target_db}.tx__load_")]) == 1, pending
    monkeypatch.setattr(publish, "move_rows", real_move)
    resumed = run(doc, context, warehouse)
    assert resumed.path == "already_published" and resumed.rows_written == 2000
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 4000 and wh.command(leftovers) == 0

    def dies_after_moving(*args: Any) -> None:
        real_move(*args)
        raise RuntimeError("the run worker died")

    context = move_context()
    monkeypatch.setattr(publish, "move_rows", dies_after_moving)
    with pytest.raises(RuntimeError):
        run(doc, context, warehouse)
    monkeypatch.setattr(publish, "move_rows", real_move)
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 6000
    again = run(doc, context, warehouse)
    assert again.path == "already_published" and again.rows_written == 0
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 6000 and wh.command(leftovers) == 0
    assert wh.command(f"SELECT count() = 3 * uniqExact(id) FROM {target_db}.tx") == 1


def test_merge_keeps_one_row_per_key_the_last_loaded_winning(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    target = {"table": "tx", "database": target_db, "mode": "merge", "merge_keys": ["id"]}
    doc = document({"connector_id": connector["id"], "table": "transactions"}, target)
    assert run(doc, move_context(), warehouse).rows_written == 2000
    pg.execute("UPDATE transactions SET amount = amount + 1000 WHERE id <= 10")
    add_transactions(pg, transaction_rows(5, start_id=5001))
    context = move_context()
    assert run(doc, context, warehouse).rows_written == 2005
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 2005
    got = wh.query(f"SELECT id, amount FROM {target_db}.tx WHERE id <= 10 ORDER BY id").result_rows
    assert [(i, Decimal(a)) for i, a in got] == pg.execute(
        "SELECT id, amount FROM transactions WHERE id <= 10 ORDER BY id"
    )
    assert run(doc, context, warehouse).rows_written == 0  # the same load again


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_a_large_table_is_read_by_several_copies_in_one_snapshot_and_a_failing_one_publishes_nothing(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext], mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Page ranges read side by side (here from 1 page on, 3 COPYs): every row once, as of the
    snapshot the load took, even when rows are committed while the COPYs start."""
    monkeypatch.setattr(postgres, "SPLIT_MIN_PAGES", 1)
    monkeypatch.setenv("AETL_PG_COPY_STREAMS", "3")
    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    source = {"connector_id": connector["id"], "table": "transactions"}
    target = {"table": "tx", "database": target_db, "mode": mode, "order_by": ["id"]}
    columns = "id, customer, amount, date, paid"
    expected = pg.execute(f"SELECT {columns} FROM transactions ORDER BY id")
    export = postgres.export_snapshot

    def export_then_commit(conn: Any) -> str:
        snapshot = export(conn)
        # committed after the snapshot, before the COPYs: on the last pages, not part of this load
        add_transactions(pg, transaction_rows(100, start_id=900_001))
        return snapshot

    monkeypatch.setattr(postgres, "export_snapshot", export_then_commit)
    result = run(document(source, target), move_context(), warehouse)
    # a replace, and the first load of any mode, is written once: straight into a fresh table
    assert result.path == "postgres_psql_3_pipes_direct", result.path
    assert result.rows_read == 2000 and result.rows_written == 2000
    got = wh.query(f"SELECT {columns} FROM {target_db}.tx ORDER BY id").result_rows
    assert [(r[0], r[1], Decimal(r[2]), r[3], r[4]) for r in got] == expected

    # one of the COPYs fails (its snapshot is not valid): the load fails, the target is as it was
    monkeypatch.setattr(postgres, "export_snapshot", export)
    command = postgres.psql_copy_command
    calls: list[str | None] = []

    def second_fails(conn: Any, statement: Any, snapshot: str | None = None) -> Any:
        calls.append(snapshot)
        return command(conn, statement, "00000003-0000BAD0-1" if len(calls) == 2 else snapshot)

    monkeypatch.setattr(postgres, "psql_copy_command", second_fails)
    staging_tables = STAGING_TABLES
    staged_before = wh.command(staging_tables)
    pipes_before = set(pipe_folder().iterdir())
    with pytest.raises(MoveError, match="invalid snapshot identifier"):
        run(document(source, target), move_context(), warehouse)
    assert len(calls) == 3
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 2000
    assert wh.command(staging_tables) == staged_before and set(pipe_folder().iterdir()) == pipes_before

    # a server that will not export a snapshot: one COPY reads the table
    monkeypatch.setattr(postgres, "psql_copy_command", command)
    monkeypatch.setattr(postgres, "export_snapshot", lambda _conn: None)
    single = run(document(source, target), move_context(), warehouse)
    assert single.path == "postgres_psql_pipe_direct", single.path
    assert single.rows_read == 2100


def test_incremental_loads_only_new_rows(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    doc = document(
        {"connector_id": connector["id"], "table": "transactions", "cursor_column": "id"},
        {
            "table": "tx",
            "database": target_db,
            "mode": "incremental",
            "cursor_column": "id",
            "order_by": ["id"],
        },
    )
    assert run(doc, move_context(), warehouse).rows_written == 2000
    add_transactions(pg, transaction_rows(150, start_id=2001))
    second = run(doc, move_context(), warehouse)
    # the cursor went to PostgreSQL: only the new rows were read, and only they arrived
    assert second.rows_read == 150 and second.rows_written == 150
    assert wh.command(f"SELECT count() FROM {target_db}.tx") == 2150
    assert wh.command(f"SELECT uniqExact(id) FROM {target_db}.tx") == 2150
    assert run(doc, move_context(), warehouse).rows_written == 0


def test_mariadb_daily_sales(
    make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    with mysql_source() as source:
        create_mysql_transactions(source, 1500)
        connector = make_connector(
            type="mysql", config=source.connector_config(), credentials=source.credentials()
        )
        doc = document(
            {"connector_id": connector["id"], "table": "transactions"},
            {"table": "daily_sales", "database": target_db, "mode": "replace"},
            [{"id": "transform_1", "type": "sql", "sql": DAILY_SALES_SQL}],
        )
        result = run(doc, move_context(), warehouse)
        assert result.path == "mysql_stream_arrow" and result.rows_read == 1500
        expected = source.execute(PG_DAILY_SALES)
        got = wh.query(
            f"SELECT day, total_amount, transactions FROM {target_db}.daily_sales ORDER BY day"
        ).result_rows
        assert [(d, Decimal(t), c) for d, t, c in got] == [tuple(r) for r in expected]
        copy = document(
            {"connector_id": connector["id"], "table": "transactions"},
            {"table": "tx", "database": target_db, "mode": "replace"},
        )
        run(copy, move_context(), warehouse)
        rows = source.execute(
            "SELECT id, customer, amount, date, created_at, paid FROM transactions ORDER BY id"
        )
        got = wh.query(
            f"SELECT id, customer, amount, date, created_at, paid FROM {target_db}.tx ORDER BY id"
        ).result_rows
        assert [(r[0], r[1], Decimal(r[2]), r[3], r[4], r[5]) for r in got] == [tuple(r) for r in rows]


def _sales_table(rows: int) -> pa.Table:
    data = transaction_rows(rows)
    return pa.table(
        {
            "id": [r[0] for r in data],
            "customer": [r[1] for r in data],
            "amount": [float(r[2]) for r in data],  # type: ignore[arg-type]
            "date": [r[3] for r in data],
        }
    )


@pytest.mark.parametrize("kind", ["parquet", "excel", "csv_gz", "jsonl", "parquet_gz"])
def test_files_load_row_for_row(
    kind: str, files_dir: Path, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    table = _sales_table(700)
    if kind.startswith("parquet"):
        name, connector_type = "sales.parquet", "parquet"
        pq.write_table(table, files_dir / name)
        if kind == "parquet_gz":
            (files_dir / f"{name}.gz").write_bytes(gzip.compress((files_dir / name).read_bytes()))
            (files_dir / name).unlink()
            name += ".gz"
    elif kind == "excel":
        name, connector_type = "sales.xlsx", "excel"
        book = xlsxwriter.Workbook(str(files_dir / name))
        sheet = book.add_worksheet()
        date_format = book.add_format({"num_format": "yyyy-mm-dd"})
        sheet.write_row(0, 0, table.column_names)
        for i, row in enumerate(table.to_pylist(), start=1):
            sheet.write_row(i, 0, [row["id"], row["customer"], row["amount"]])
            sheet.write_datetime(i, 3, row["date"], date_format)
        book.close()
    elif kind == "jsonl":
        name, connector_type = "sales.jsonl", "jsonl"
        import json

        lines = [json.dumps({**r, "date": r["date"].isoformat()}) for r in table.to_pylist()]
        (files_dir / name).write_text("\n".join(lines) + "\n")
    else:
        name, connector_type = "sales.csv.gz", "csv"
        import pyarrow.csv as pa_csv  # type: ignore[import-untyped]

        sink = pa.BufferOutputStream()
        pa_csv.write_csv(table, sink)
        (files_dir / name).write_bytes(gzip.compress(sink.getvalue().to_pybytes()))
    connector = make_connector(type=connector_type, config={"path": files_dir.name})
    doc = document(
        {"connector_id": connector["id"], "type": connector_type, "path": name},
        {"table": "sales", "database": target_db, "mode": "replace", "order_by": ["id"]},
    )
    result = run(doc, move_context(), warehouse)
    assert result.rows_written == 700 and result.rows_read == 700
    expected_path = {"excel": "arrow_stream_excel", "parquet_gz": "warehouse_file_parquet"}.get(
        kind, f"warehouse_file_{connector_type}"
    )
    assert result.path == expected_path
    got = wh.query(
        f"SELECT id, customer, amount, toDate(date) FROM {target_db}.sales ORDER BY id"
    ).result_rows
    assert [(int(a), b, float(c), d) for a, b, c, d in got] == [
        (r["id"], r["customer"], r["amount"], r["date"]) for r in table.to_pylist()
    ]


def test_rows_that_do_not_fit_are_quarantined_with_the_reason(
    files_dir: Path, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    wh.command(f"CREATE TABLE {target_db}.sales (id Int64, amount Float64) ENGINE = MergeTree ORDER BY id")
    (files_dir / "sales.csv").write_text("id,amount\n1,2.5\n2,oops\n3,4\nx,5\n")
    connector = make_connector(type="csv", config={"path": files_dir.name})
    doc = document(
        {"connector_id": connector["id"], "type": "csv", "path": "sales.csv"},
        {"table": "sales", "database": target_db, "mode": "append"},
    )
    result = run(doc, move_context(), warehouse)
    assert result.rows_written == 2 and result.rows_rejected == 2
    assert wh.query(f"SELECT id, amount FROM {target_db}.sales ORDER BY id").result_rows == [
        (1, 2.5),
        (3, 4.0),
    ]
    rejected = wh.query(
        f"SELECT raw_row, reason FROM {target_db}.sales__rejected ORDER BY row_number"
    ).result_rows
    assert [r[0] for r in rejected] == ["2,oops", "x,5"]
    assert all("Float64" in r[1] or "Int64" in r[1] for r in rejected)


def test_python_transform_runs_in_a_limited_process_without_secrets(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    connector = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    code = (
        "import os\n"
        "def transform(df):\n"
        "    out = df[df['amount'] > 0].copy()\n"
        "    out['amount_cents'] = (out['amount'].astype(float) * 100).round().astype('int64')\n"
        "    secret = [k for k in os.environ if 'URL' in k or 'KEY' in k or 'PASS' in k]\n"
        "    out['env_keys'] = ','.join(sorted(secret))\n"
        "    return out[['id', 'amount_cents', 'env_keys']]\n"
    )
    doc = document(
        {"connector_id": connector["id"], "table": "transactions"},
        {"table": "cents", "database": target_db, "mode": "replace", "order_by": ["id"]},
        [{"id": "transform_1", "type": "python", "code": code}],
    )
    result = run(doc, move_context(), warehouse)
    expected = pg.execute("SELECT id, (amount * 100)::bigint FROM transactions WHERE amount > 0 ORDER BY id")
    got = wh.query(f"SELECT id, amount_cents, env_keys FROM {target_db}.cents ORDER BY id").result_rows
    assert [(a, b) for a, b, _ in got] == [tuple(r) for r in expected]
    assert {e for _, _, e in got} == {""}
    assert result.transformation_time_ms > 0 and "python_step" in result.path


def test_failures_are_clear_and_keep_the_previous_rows(
    pg: PgSource, make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource,
    wh: Client, target_db: str, move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    good = make_connector(type="postgresql", config=pg.connector_config(), credentials=pg.credentials())
    target = {"table": "tx", "database": target_db, "mode": "replace", "order_by": ["id"]}
    run(document({"connector_id": good["id"], "table": "transactions"}, target), move_context(), warehouse)
    count = f"SELECT count() FROM {target_db}.tx"
    assert wh.command(count) == 2000

    raising = [
        {
            "id": "transform_1",
            "type": "python",
            "code": "def transform(df):\n    raise ValueError('bad amounts')\n",
        }
    ]
    with pytest.raises(MoveError, match="transform_1 failed: ValueError: bad amounts"):
        run(
            document({"connector_id": good["id"], "table": "transactions"}, target, raising),
            move_context(),
            warehouse,
        )
    assert wh.command(count) == 2000

    hog = [
        {"id": "transform_1", "type": "python", "code": "def transform(df):\n    while True:\n        pass\n"}
    ]
    with pytest.raises(MoveError, match="CPU time limit"):
        run(
            document({"connector_id": good["id"], "table": "transactions"}, target, hog),
            move_context(),
            warehouse,
            python_limits=StepLimits(cpu_seconds=2, memory_mb=4096, wall_seconds=30),
        )  # fmt: skip
    assert wh.command(count) == 2000

    with mysql_source() as source:
        wrong = make_connector(
            type="mysql",
            config=source.connector_config(),
            credentials={"username": source.username, "password": "nope"},
        )
        with pytest.raises(MoveError, match="authentication failed"):
            run(
                document({"connector_id": wrong["id"], "table": "transactions"}, target),
                move_context(),
                warehouse,
            )
    assert wh.command(count) == 2000

    pg.execute("DROP TABLE transactions")
    with pytest.raises(MoveError, match="transactions does not exist"):
        run(
            document({"connector_id": good["id"], "table": "transactions"}, target), move_context(), warehouse
        )
    assert wh.command(count) == 2000

    with pytest.raises(MoveError, match="does not exist"):
        run(
            document({"connector_id": "conn_missing", "table": "transactions"}, target),
            move_context(),
            warehouse,
        )
    assert wh.command(count) == 2000


def test_platform_warehouse_connector_reads_in_place(
    make_connector: Callable[..., dict[str, Any]], warehouse: ClickHouseResource, wh: Client, target_db: str,
    move_context: Callable[..., MoveContext],
) -> None:  # fmt: skip
    wh.command(f"CREATE TABLE {target_db}.raw (id UInt32, v String) ENGINE = MergeTree ORDER BY id")
    wh.command(f"INSERT INTO {target_db}.raw SELECT number, toString(number) FROM numbers(100)")
    connector = make_connector(type="clickhouse", config={"database": target_db})
    doc = document(
        {"connector_id": connector["id"], "table": "raw"}, {"table": "copy", "database": target_db}
    )
    result = run(doc, move_context(), warehouse)
    assert result.path == "warehouse_sql" and result.rows_written == 100
    assert uuid  # noqa: B018
