"""Moving rows for one target. First path: everything already in the platform's warehouse.

When every source the target depends on is a table of the platform's own warehouse and every step is
SQL, the whole pipeline is one `INSERT … SELECT` with the sources and steps as CTEs: the rows never
leave the warehouse, which is as fast as ClickHouse itself. Other sources (databases, files) and
Python steps are the connectors' paths; they extend `move_target` with the same result.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestration.lib.sql import qualified_name, quote_identifier, table_swap_statements
from orchestration.specs.pipeline import (
    LoadMode,
    PipelineDocument,
    Source,
    SourceType,
    Target,
    TransformationType,
)
from orchestration.warehouse.resource import ClickHouseResource

# how many recent insert blocks a created table remembers, so a repeated load id inserts nothing
DEDUP_WINDOW = 1000


class MoveError(RuntimeError):
    """A load that cannot run as described; the message is for the run's log and the API."""


class Log(Protocol):
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class MoveContext:
    log: Log
    run_id: str
    # runs that retry or re-execute one another share a load id: their rows are written once
    load_id: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class MoveResult:
    rows_read: int = 0
    rows_written: int = 0
    bytes_read: int = 0
    rows_rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    extraction_time_ms: float = 0.0
    transformation_time_ms: float = 0.0
    loading_time_ms: float = 0.0
    path: str = ""
    table: str = ""

    def as_metadata(self) -> dict[str, Any]:
        """Materialization metadata; the API reads run figures back from exactly these keys."""
        return {
            "dagster/row_count": self.rows_written,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "bytes_read": self.bytes_read,
            "rows_rejected": self.rows_rejected,
            "extraction_time_ms": round(self.extraction_time_ms, 1),
            "transformation_time_ms": round(self.transformation_time_ms, 1),
            "loading_time_ms": round(self.loading_time_ms, 1),
            "movement_path": self.path,
            "table": self.table,
        }


def move_target(
    document: PipelineDocument, target: Target, context: MoveContext, warehouse: ClickHouseResource
) -> MoveResult:
    """Extract, transform and load what `target` needs; returns the figures of the load."""
    if target.connector_id is not None:
        raise MoveError(
            f"target {target.id}: loading into another ClickHouse (connector) is not supported yet"
        )
    select = _warehouse_select(document, document.input_of(target))
    return _load_select(select, target, context, warehouse)


def _needed_steps(document: PipelineDocument, relation: str) -> list[str]:
    """The sources and the steps up to `relation`, in document order (unused CTEs cost nothing)."""
    last = next((i for i, t in enumerate(document.transformations) if t.id == relation), -1)
    return [s.id for s in document.sources] + [t.id for t in document.transformations[: last + 1]]


def _source_relation(source: Source) -> str:
    if source.type is not SourceType.CLICKHOUSE or source.connector_id is not None:
        raise MoveError(
            f"source {source.id}: {source.type or 'connector'} sources are not on the warehouse path"
        )
    if source.query:
        return source.query
    assert source.table is not None  # the document guarantees table or query
    database, _, table = source.table.rpartition(".")
    return f"SELECT * FROM {qualified_name(table, database or source.database)}"


def _warehouse_select(document: PipelineDocument, relation: str) -> str:
    """`WITH source_1 AS (…), transform_1 AS (…) SELECT * FROM <relation>`."""
    ctes = []
    for step_id in _needed_steps(document, relation):
        source = next((s for s in document.sources if s.id == step_id), None)
        if source is not None:
            body = _source_relation(source)
        else:
            step = next(t for t in document.transformations if t.id == step_id)
            if step.type is not TransformationType.SQL:
                raise MoveError(
                    f"transformation {step.id}: python steps are not supported by the warehouse path"
                )
            assert step.sql is not None
            body = step.sql.strip().rstrip(";")
        ctes.append(f"{quote_identifier(step_id)} AS ({body})")
    return f"WITH {', '.join(ctes)} SELECT * FROM {quote_identifier(relation)}"


def _table_exists(client: Any, table: str, database: str | None) -> bool:
    row = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": database or client.database or "default", "t": table},
    ).result_rows[0]
    return bool(row[0])


def _create_statement(name: str, target: Target, select: str) -> str:
    order = target.order_by or target.merge_keys
    order_sql = f"({', '.join(quote_identifier(c) for c in order)})" if order else "tuple()"
    engine = "ReplacingMergeTree" if target.mode is LoadMode.MERGE else "MergeTree"
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ENGINE = {engine} ORDER BY {order_sql} "
        f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW} EMPTY AS {select}"
    )


def _row_count(client: Any, name: str) -> int:
    return int(client.command(f"SELECT count() FROM {name}"))


def _summary_int(summary: Any, key: str) -> int:
    values = getattr(summary, "summary", None) or {}
    try:
        return int(values.get(key, 0))
    except (TypeError, ValueError):
        return 0


def _load_select(
    select: str, target: Target, context: MoveContext, warehouse: ClickHouseResource
) -> MoveResult:
    result = MoveResult(path="warehouse_sql", table=qualified_name(target.table, target.database))
    name = qualified_name(target.table, target.database)
    client = warehouse.get_client()
    started = time.perf_counter()
    try:
        if target.database:
            client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(target.database)}")
        exists = _table_exists(client, target.table, target.database)
        if not exists and not target.create_table:
            raise MoveError(f"target table {target.table} does not exist and create_table is false")
        if target.mode is LoadMode.REPLACE:
            staging_table = f"{target.table}__staging_{uuid.uuid4().hex[:8]}"
            staging = qualified_name(staging_table, target.database)
            client.command(_create_statement(name, target, select))
            client.command(_create_statement(staging, target, select))
            try:
                summary = client.command(f"INSERT INTO {staging} {select}")
                for statement in table_swap_statements(target.table, staging_table, target.database):
                    client.command(statement)
            except BaseException:
                client.command(f"DROP TABLE IF EXISTS {staging} SYNC")
                raise
        else:
            client.command(_create_statement(name, target, select))
            source_select = select
            if target.mode is LoadMode.INCREMENTAL:
                assert target.cursor_column is not None
                cursor = quote_identifier(target.cursor_column)
                # the state is the target itself: rows past the largest cursor value already loaded
                source_select = (
                    f"SELECT * FROM ({select}) WHERE (SELECT count() FROM {name}) = 0 "
                    f"OR {cursor} > (SELECT max({cursor}) FROM {name})"
                )
            token = f"{context.load_id}:{target.id}"
            before = _row_count(client, name)
            summary = client.command(
                f"INSERT INTO {name} SETTINGS insert_deduplicate = 1, "
                f"insert_deduplication_token = {_string_literal(token)} {source_select}"
            )
            if target.mode is LoadMode.MERGE:
                # one row per key, the last loaded winning, before anyone reads the published load
                client.command(f"OPTIMIZE TABLE {name} FINAL")
        result.rows_read = _summary_int(summary, "read_rows")
        result.bytes_read = _summary_int(summary, "read_bytes")
        result.rows_written = _summary_int(summary, "written_rows")
        if target.mode in (LoadMode.APPEND, LoadMode.INCREMENTAL):
            # a block the warehouse dropped as a repeat of this load id was not written
            result.rows_written = max(0, _row_count(client, name) - before)
    finally:
        client.close()
    result.loading_time_ms = (time.perf_counter() - started) * 1000
    context.log.info(
        f"{target.id}: {result.rows_written} rows written to {result.table} ({target.mode.value}, "
        f"{result.rows_read} read, warehouse SQL path, {result.loading_time_ms:.0f} ms)"
    )
    return result


def _string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
