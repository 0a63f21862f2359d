"""PostgreSQL: connection test, introspection, and the extract path (text COPY streamed as TSV).

PostgreSQL's text COPY format is ClickHouse's TabSeparated (same escapes, `\\N` for NULL), so the
rows go from the server's COPY straight into the warehouse's insert without being parsed in Python:
the run worker only forwards bytes, in bounded chunks.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Generator
from typing import Any

import psycopg
from psycopg import sql

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
from orchestration.connectors.config import PostgresConfig
from orchestration.connectors.types import nullable, pg_to_clickhouse, strip_nullable

# tables smaller than this (by the planner's estimate) are counted exactly
EXACT_COUNT_LIMIT = 100_000
COPY_CHUNK_BYTES = 4 * 1024 * 1024
# a table is read by several COPYs side by side only from this size on (2,048 pages: 16 MB)
SPLIT_MIN_PAGES = 2048
# how many: AETL_PG_COPY_STREAMS (1 turns the split off)
COPY_STREAMS_DEFAULT = 2
COPY_STREAMS_MAX = 16

# pages [first, end) of a table (end None: to the last page, including pages added since it was measured)
PageRange = tuple[int, int | None]


def copy_streams() -> int:
    """AETL_PG_COPY_STREAMS, within 1…16 (the default where it is not a number)."""
    try:
        value = int(os.environ.get("AETL_PG_COPY_STREAMS", COPY_STREAMS_DEFAULT))
    except ValueError:
        value = COPY_STREAMS_DEFAULT
    return max(1, min(value, COPY_STREAMS_MAX))


def psql_executable() -> str | None:
    return shutil.which("psql")


def _classify(error: psycopg.Error, config: PostgresConfig) -> ConnectorFailure:
    text = str(error).lower()
    if "password authentication failed" in text or "no password supplied" in text or "authentication" in text:
        return ConnectorFailure(
            "auth", f"authentication failed for user {config.username!r}", step="authenticate"
        )
    if "does not exist" in text and "database" in text:
        return ConnectorFailure(
            "database_missing", f"database {config.database!r} does not exist", step="database"
        )
    if "role" in text and "does not exist" in text:
        return ConnectorFailure("auth", f"user {config.username!r} does not exist", step="authenticate")
    if "timeout" in text:
        return ConnectorFailure("timeout", f"{config.host}:{config.port} did not answer in time")
    if "refused" in text:
        return ConnectorFailure("refused", f"connection to {config.host}:{config.port} refused")
    if "ssl" in text:
        return ConnectorFailure("refused", f"SSL negotiation with {config.host}:{config.port} failed")
    return ConnectorFailure("unknown", f"PostgreSQL refused the connection: {type(error).__name__}")


def connect(config: PostgresConfig, timeout: float | None = None) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            host=config.host,
            port=config.port,
            dbname=config.database,
            user=config.username,
            password=config.password.get_secret_value() if config.password else None,
            sslmode=config.ssl_mode,
            connect_timeout=max(1, int(timeout or config.connect_timeout)),
            application_name="aetl",
            autocommit=True,
        )
    except psycopg.Error as error:
        raise _classify(error, config) from None


def test_connection(config: PostgresConfig) -> TestReport:
    started = time.monotonic()
    details: dict[str, Any] = probe_tcp(config.host, config.port, min(config.connect_timeout, 4.0))
    with connect(config, remaining_budget(started)) as conn:
        details["authentication_successful"] = True
        details["database_exists"] = True
        row = conn.execute("SELECT version()").fetchone()
        details["query_execution_successful"] = True
    return TestReport((time.monotonic() - started) * 1000, details, str(row[0]) if row else None)


def list_tables(config: PostgresConfig) -> list[TableRef]:
    with connect(config) as conn:
        rows = conn.execute(
            """
            SELECT n.nspname, c.relname, c.relkind, c.reltuples::bigint
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
            ORDER BY 1, 2
            """
        ).fetchall()
    kinds = {"r": "table", "p": "table", "v": "view", "m": "materialized_view", "f": "foreign_table"}
    return [
        TableRef(name, schema, kinds.get(kind, "table"), int(estimate) if estimate >= 0 else None)
        for schema, name, kind, estimate in rows
    ]


def _relation_oid(conn: psycopg.Connection[Any], config: PostgresConfig, table: str) -> int:
    schema, name = check_table_name(table)
    row = conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema or config.schema_name, name),
    ).fetchone()
    if row is None:
        raise ConnectorFailure(
            "table_missing", f"table {schema or config.schema_name}.{name} does not exist", step="query"
        )
    return int(row[0])


def describe_table(config: PostgresConfig, table: str) -> TableSchema:
    with connect(config) as conn:
        oid = _relation_oid(conn, config, table)
        columns = conn.execute(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
            """,
            (oid,),
        ).fetchall()
        indexes = conn.execute(
            """
            SELECT ic.relname, i.indisunique, i.indisprimary,
                   array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
            FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = %s ORDER BY ic.relname
            """,
            (oid,),
        ).fetchall()
        estimate = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s", (oid,)).fetchone()
        estimated = int(estimate[0]) if estimate else -1
        if 0 <= estimated < EXACT_COUNT_LIMIT or estimated < 0:
            # never analyzed (-1) or small: an exact count is cheap enough
            count_row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*_qualified(config, table)))
            ).fetchone()
            row_count, exact, method = int(count_row[0]) if count_row else 0, True, "count(*)"
        else:
            row_count, exact, method = (
                estimated,
                False,
                "estimated from pg_class.reltuples (planner statistics)",
            )
    primary = next((list(cols) for _, _, is_primary, cols in indexes if is_primary), [])
    return TableSchema(
        table_name=table,
        columns=[
            ColumnInfo(
                name,
                pg_type,
                nullable(pg_to_clickhouse(pg_type), is_null),
                primary_key=name in primary,
                default=default,
            )
            for name, pg_type, is_null, default in columns
        ],
        primary_key=primary,
        indexes=[
            IndexInfo(name, list(cols), unique, is_primary) for name, unique, is_primary, cols in indexes
        ],
        row_count=row_count,
        row_count_exact=exact,
        row_count_method=method,
    )


def _qualified(config: PostgresConfig, table: str) -> tuple[str, str]:
    schema, name = check_table_name(table)
    return schema or config.schema_name, name


def relation_sql(
    config: PostgresConfig, table: str | None, query: str | None, pages: PageRange | None = None
) -> sql.Composable:
    if table:
        select = sql.SQL("SELECT * FROM {}").format(sql.Identifier(*_qualified(config, table)))
        if pages is None:
            return select
        first, end = pages
        bounds = [sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({first},0)"))]
        if end is not None:
            bounds.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({end},0)")))
        return sql.SQL("{} WHERE {}").format(select, sql.SQL(" AND ").join(bounds))
    assert query is not None and pages is None
    return sql.SQL(query.strip().rstrip(";"))  # type: ignore[arg-type]


def copy_ranges(
    conn: psycopg.Connection[Any], config: PostgresConfig, table: str, streams: int
) -> list[PageRange] | None:
    """Page ranges that split a plain table into `streams` COPYs read side by side; None: one COPY.

    Each range is read by a TID range scan (PostgreSQL 14+), so the streams share the table's pages
    without reading them twice. Views, partitioned and foreign tables, older servers and tables
    smaller than SPLIT_MIN_PAGES are read by one COPY.
    """
    if streams < 2 or conn.info.server_version < 140000:
        return None
    row = conn.execute(
        "SELECT c.relkind, pg_relation_size(c.oid) / current_setting('block_size')::int "
        "FROM pg_class c WHERE c.oid = %s",
        (_relation_oid(conn, config, table),),
    ).fetchone()
    if row is None or row[0] != "r" or int(row[1]) < SPLIT_MIN_PAGES:
        return None
    starts = [int(row[1]) * i // streams for i in range(streams)]
    return list(zip(starts, [*starts[1:], None], strict=True))


def export_snapshot(conn: psycopg.Connection[Any]) -> str | None:
    """Open a read-only repeatable-read transaction on `conn` and export its snapshot.

    COPYs run by other sessions that import it (psql_copy_command(snapshot=…)) read the same
    committed state, as one COPY would; the snapshot lives as long as this transaction, so `conn`
    stays open until they have finished. None where the server refuses to export one (the caller
    then reads with one COPY).
    """
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    except psycopg.Error:
        conn.execute("ROLLBACK")
        return None
    return str(row[0]) if row else None


def relation_columns(
    conn: psycopg.Connection[Any], config: PostgresConfig, table: str | None, query: str | None
) -> list[ColumnInfo]:
    """Column names and ClickHouse types of what a source reads (a table's NOT NULL is kept)."""
    if table:
        return describe_columns_only(conn, config, table)
    cursor = conn.execute(
        sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(relation_sql(config, None, query))
    )
    out = []
    for column in cursor.description or []:
        row = conn.execute("SELECT format_type(%s, %s)", (column.type_code, _typmod(column))).fetchone()
        pg_type = str(row[0]) if row else "text"
        out.append(ColumnInfo(column.name, pg_type, nullable(pg_to_clickhouse(pg_type), True)))
    return out


def _typmod(column: Any) -> int:
    if column.precision is not None and column.scale is not None:
        return ((int(column.precision) << 16) | int(column.scale)) + 4
    return -1


def describe_columns_only(
    conn: psycopg.Connection[Any], config: PostgresConfig, table: str
) -> list[ColumnInfo]:
    oid = _relation_oid(conn, config, table)
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), NOT attnotnull FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,),
    ).fetchall()
    return [ColumnInfo(n, t, nullable(pg_to_clickhouse(t), bool(null))) for n, t, null in rows]


def _select_expression(column: ColumnInfo) -> sql.Composable:
    """How a column is written by COPY so that ClickHouse's TSV reader takes it as is."""
    ident = sql.Identifier(column.name)
    base = strip_nullable(column.clickhouse_type)
    if base == "Bool":
        return sql.SQL("{}::int").format(ident)
    if base.startswith("DateTime64") and "UTC" in base:
        return sql.SQL("({} AT TIME ZONE 'UTC')").format(ident)
    return ident


# PostgreSQL's text output in the shape the warehouse's TabSeparated reader expects
COPY_SESSION_SETTINGS = {"datestyle": "ISO, YMD", "timezone": "UTC", "extra_float_digits": "3"}


def copy_statement(
    config: PostgresConfig,
    table: str | None,
    query: str | None,
    columns: list[ColumnInfo],
    cursor_column: str | None = None,
    cursor_after: Any = None,
    pages: PageRange | None = None,
) -> sql.Composed:
    """`COPY (SELECT <columns as the warehouse reads them> …) TO STDOUT` of a source (or of its pages)."""
    select = sql.SQL("SELECT {} FROM ({}) AS source").format(
        sql.SQL(", ").join(_select_expression(c) for c in columns),
        relation_sql(config, table, query, pages),
    )
    if cursor_column is not None and cursor_after is not None:
        select = sql.SQL("{} WHERE {} > {}").format(
            select, sql.Identifier(cursor_column), sql.Literal(cursor_after)
        )
    return sql.SQL("COPY ({}) TO STDOUT").format(select)


def psql_copy_command(
    conn: psycopg.Connection[Any], statement: sql.Composed, snapshot: str | None = None
) -> tuple[list[str], dict[str, str]] | None:
    """psql running `statement` on the same server as `conn`: (argv, environment), or None without psql.

    psql (PostgreSQL's own client, in C) writes COPY's output without a Python step per row: about
    twice as fast as reading it through psycopg on this machine. The connection's parameters and
    password go through PG* variables of the child's environment, never its command line.
    `snapshot` (export_snapshot): the COPY reads in that snapshot (its own transaction imports it).
    """
    executable = psql_executable()
    if executable is None:
        return None
    info = conn.info
    params = info.get_parameters()
    env = {
        "PGHOST": params.get("host", info.host),
        "PGPORT": params.get("port", str(info.port)),
        "PGDATABASE": info.dbname,
        "PGUSER": info.user,
        "PGAPPNAME": "aetl",
        "PGCONNECT_TIMEOUT": params.get("connect_timeout", "10"),
        "PGOPTIONS": " ".join(
            f"-c {name}={value.replace(' ', '')}" for name, value in COPY_SESSION_SETTINGS.items()
        ),
    }
    if "sslmode" in params:
        env["PGSSLMODE"] = params["sslmode"]
    if info.password:
        env["PGPASSWORD"] = info.password
    for name in ("PATH", "LANG", "LC_ALL", "HOME"):
        if name in os.environ:
            env[name] = os.environ[name]
    commands = [statement.as_string(conn)]
    if snapshot is not None:
        imported = sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)).as_string(conn)
        commands = ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", imported, *commands, "COMMIT"]
    argv = [executable, "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1"]
    for command in commands:  # one session, each command on its own (--quiet: no command tags)
        argv += ["--command", command]
    return argv, env


def copy_stream(conn: psycopg.Connection[Any], statement: sql.Composed) -> Generator[bytes, None, None]:
    """The rows of a `copy_statement` as TabSeparated bytes, straight from COPY's text format."""
    for name, value in COPY_SESSION_SETTINGS.items():
        conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        # COPY hands out one row per message: send the warehouse large blocks instead
        buffer = bytearray()
        for row in copy:
            buffer += row
            if len(buffer) >= COPY_CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)
