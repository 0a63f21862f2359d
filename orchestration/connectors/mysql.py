"""MySQL / MariaDB: connection test, introspection, and the extract path (unbuffered cursor → Arrow).

Rows come through an unbuffered (server-side streaming) cursor in batches, become Arrow record
batches with the column types fixed up front, and are inserted into the warehouse batch by batch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pymysql  # type: ignore[import-untyped]
import pymysql.cursors  # type: ignore[import-untyped]

from orchestration.connectors.base import (
    ColumnInfo,
    ConnectorFailure,
    IndexInfo,
    TableRef,
    TableSchema,
    TestReport,
    check_table_name,
    probe_tcp,
    remaining_budget,
)
from orchestration.connectors.config import MySQLConfig
from orchestration.connectors.types import mysql_to_clickhouse, nullable, strip_nullable

EXACT_COUNT_LIMIT = 100_000
BATCH_ROWS = 50_000


def _classify(error: pymysql.MySQLError, config: MySQLConfig) -> ConnectorFailure:
    code = error.args[0] if error.args and isinstance(error.args[0], int) else 0
    if code in (1045, 1044, 1698):
        return ConnectorFailure(
            "auth", f"authentication failed for user {config.username!r}", step="authenticate"
        )
    if code == 1049:
        return ConnectorFailure(
            "database_missing", f"database {config.database!r} does not exist", step="database"
        )
    if code == 2003:
        return ConnectorFailure("refused", f"connection to {config.host}:{config.port} refused")
    if code == 2013:
        return ConnectorFailure("timeout", f"{config.host}:{config.port} did not answer in time")
    return ConnectorFailure("unknown", f"MySQL refused the connection (error {code})")


def connect(config: MySQLConfig, timeout: float | None = None, *, streaming: bool = False) -> Any:
    try:
        return pymysql.connect(
            host=config.host,
            port=config.port,
            user=config.username,
            password=config.password.get_secret_value() if config.password else "",
            database=config.database,
            connect_timeout=max(1, int(timeout or config.connect_timeout)),
            ssl={"ssl": {}} if config.ssl else None,
            charset="utf8mb4",
            cursorclass=pymysql.cursors.SSCursor if streaming else pymysql.cursors.Cursor,
        )
    except pymysql.MySQLError as error:
        raise _classify(error, config) from None


def test_connection(config: MySQLConfig) -> TestReport:
    started = time.monotonic()
    details: dict[str, Any] = probe_tcp(config.host, config.port, min(config.connect_timeout, 4.0))
    conn = connect(config, remaining_budget(started))
    try:
        details["authentication_successful"] = True
        details["database_exists"] = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT version()")
            row = cursor.fetchone()
        details["query_execution_successful"] = True
    finally:
        conn.close()
    return TestReport((time.monotonic() - started) * 1000, details, str(row[0]) if row else None)


def _query(config: MySQLConfig, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = connect(config)
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement, args)
            return list(cursor.fetchall())
    except pymysql.MySQLError as error:
        raise ConnectorFailure("query", f"MySQL query failed: {error.args[-1]}", step="query") from None
    finally:
        conn.close()


def list_tables(config: MySQLConfig) -> list[TableRef]:
    rows = _query(
        config,
        "SELECT TABLE_NAME, TABLE_TYPE, TABLE_ROWS FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
        (config.database,),
    )
    return [
        TableRef(
            name,
            config.database,
            "view" if kind == "VIEW" else "table",
            int(rows) if rows is not None else None,
        )
        for name, kind, rows in rows
    ]


def _split(config: MySQLConfig, table: str) -> tuple[str, str]:
    schema, name = check_table_name(table)
    return schema or config.database, name


def columns_of(config: MySQLConfig, table: str) -> list[tuple[Any, ...]]:
    database, name = _split(config, table)
    rows = _query(
        config,
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY, COLUMN_DEFAULT "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION",
        (database, name),
    )
    if not rows:
        raise ConnectorFailure("table_missing", f"table {database}.{name} does not exist", step="query")
    return rows


def describe_table(config: MySQLConfig, table: str) -> TableSchema:
    database, name = _split(config, table)
    rows = columns_of(config, table)
    index_rows = _query(
        config,
        "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        (database, name),
    )
    indexes: dict[str, IndexInfo] = {}
    for index_name, non_unique, column in index_rows:
        info = indexes.setdefault(
            index_name, IndexInfo(index_name, [], unique=not non_unique, primary=index_name == "PRIMARY")
        )
        info.columns.append(column)
    primary = indexes["PRIMARY"].columns if "PRIMARY" in indexes else []
    estimate_rows = _query(
        config,
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (database, name),
    )
    estimate = int(estimate_rows[0][0]) if estimate_rows and estimate_rows[0][0] is not None else 0
    if estimate < EXACT_COUNT_LIMIT:
        count = _query(config, f"SELECT count(*) FROM `{database}`.`{name}`")
        row_count, exact, method = int(count[0][0]), True, "count(*)"
    else:
        row_count, exact, method = estimate, False, "estimated from information_schema.TABLES.TABLE_ROWS"
    return TableSchema(
        table_name=table,
        columns=[
            ColumnInfo(
                c,
                t,
                nullable(mysql_to_clickhouse(t), n == "YES"),
                primary_key=c in primary,
                default=None if d is None else str(d),
            )
            for c, t, n, _, d in rows
        ],
        primary_key=primary,
        indexes=list(indexes.values()),
        row_count=row_count,
        row_count_exact=exact,
        row_count_method=method,
    )


def _arrow_type(ch_type: str) -> pa.DataType:
    base = strip_nullable(ch_type)
    if base.startswith("Int") or base.startswith("UInt"):
        bits = int(base.lstrip("UInt"))
        return getattr(pa, ("uint" if base.startswith("U") else "int") + str(bits))()
    if base.startswith("Decimal("):
        precision, scale = (int(x) for x in base[8:-1].split(","))
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    if base in ("Float32", "Float64"):
        return pa.float32() if base == "Float32" else pa.float64()
    if base == "Date32":
        return pa.date32()
    if base.startswith("DateTime64"):
        return pa.timestamp("us")
    return pa.string()


def stream_batches(
    config: MySQLConfig,
    table: str | None,
    query: str | None,
    cursor_column: str | None = None,
    cursor_after: Any = None,
) -> tuple[list[ColumnInfo], Iterator[pa.RecordBatch]]:
    """Column types and a generator of Arrow batches of the rows (bounded: BATCH_ROWS at a time)."""
    if table:
        database, name = _split(config, table)
        columns = [
            ColumnInfo(c, t, nullable(mysql_to_clickhouse(t), n == "YES"))
            for c, t, n, _, _ in columns_of(config, table)
        ]
        select = f"SELECT * FROM `{database}`.`{name}`"
    else:
        assert query is not None
        select = f"SELECT * FROM ({query.strip().rstrip(';')}) AS source"
        columns = []
    args: tuple[Any, ...] = ()
    if cursor_column is not None and cursor_after is not None:
        select = f"SELECT * FROM ({select}) AS s WHERE `{cursor_column}` > %s"
        args = (cursor_after,)
    conn = connect(config, streaming=True)
    cursor = conn.cursor()
    try:
        cursor.execute(select, args)
        if not columns:
            columns = [ColumnInfo(d[0], "", "Nullable(String)") for d in cursor.description]
        schema = pa.schema([(c.name, _arrow_type(c.clickhouse_type)) for c in columns])
    except BaseException as error:
        # an open unbuffered result holds the table's metadata lock: never leave one behind
        _abandon(conn)
        if isinstance(error, pymysql.MySQLError):
            raise ConnectorFailure("query", f"MySQL query failed: {error.args[-1]}", step="query") from None
        raise

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            while rows := cursor.fetchmany(BATCH_ROWS):
                columns_data = list(zip(*rows, strict=True))
                arrays = [
                    pa.array(
                        [None if v is None else str(v) for v in col] if f.type == pa.string() else col,
                        type=f.type,
                    )
                    for col, f in zip(columns_data, schema, strict=True)
                ]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        finally:
            _abandon(conn)

    return columns, batches()


def _abandon(conn: Any) -> None:
    """Close without draining an unread result (closing the socket ends the query server-side)."""
    with contextlib.suppress(Exception):
        conn._force_close()  # pymysql's close() would read the rest of the result first
