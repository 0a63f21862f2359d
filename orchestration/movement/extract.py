"""Extract: how each source becomes a relation the warehouse can read in the final INSERT … SELECT.

The fastest real path per source type:
- the platform's warehouse tables: read in place (a CTE), nothing moves;
- CSV/TSV/JSON lines/Parquet files the warehouse may read: `file(...)` in place, the warehouse
  parses them itself (no Python in the row path);
- PostgreSQL: `COPY (…) TO STDOUT` in text format streamed as TabSeparated through a named pipe
  that the local warehouse reads with file() (PostgreSQL's text format is ClickHouse's TSV; the run
  worker only forwards byte blocks): straight into the load when the target is replaced from this
  source alone (the load writes a fresh table swapped in at the end, so a failed stream publishes
  nothing), else into a staging table first. A large table is read by several COPYs side by side
  (page ranges, one exported snapshot), one pipe each;
- MySQL/MariaDB, other ClickHouse servers, Excel and files the warehouse cannot read: Arrow record
  batches of bounded size inserted into a staging table one by one.
Staging tables live in the `aetl_staging` database and are dropped after the load.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
from clickhouse_connect.driver.exceptions import ClickHouseError

from orchestration.connectors import clickhouse as ch_connector
from orchestration.connectors import files, mysql, postgres
from orchestration.connectors.base import ColumnInfo, ConnectorFailure, InvalidTableName
from orchestration.connectors.config import (
    ClickHouseConfig,
    ConnectorConfig,
    FileConfig,
    MySQLConfig,
    PostgresConfig,
)
from orchestration.connectors.types import arrow_to_clickhouse, nullable
from orchestration.lib.sql import qualified_name, quote_identifier, settings_sql, string_literal
from orchestration.specs.pipeline import Source
from orchestration.warehouse.credentials import PIPE_FOLDER, data_root

STAGING_DATABASE = "aetl_staging"
PIPE_OPEN_TIMEOUT_S = 60.0


class ExtractError(RuntimeError):
    pass


@dataclass
class StagedSource:
    """What a source contributes to the load: a SELECT body for its CTE, and what it cost."""

    body: str
    path: str
    rows_read: int | None = None  # None: counted by the final insert (the warehouse read it in place)
    bytes_read: int = 0
    seconds: float = 0.0
    staging_table: str | None = None
    # input-format settings of the final insert (e.g. quarantine of rows that do not parse)
    insert_settings: dict[str, Any] = field(default_factory=dict)
    rejects_file: str | None = None
    # a source the final insert reads straight from named pipes, fed while that insert runs
    feeds: list[PipeFeed] = field(default_factory=list)
    # what the feeds need until they are done (the source's connection, the pipes themselves)
    resources: contextlib.ExitStack | None = None

    def close(self) -> None:
        if self.resources is not None:
            self.resources.close()


# writes a source's rows into the named pipe's write end (the fd is its to close); `stop` is set when
# the reading statement ended first; raises what went wrong with the source
Producer = Callable[[int, threading.Event], None]


@dataclass
class PipeFeed:
    """A source for a named pipe that a statement of the warehouse reads (file(<fifo>)).

    `source_error` turns a failure of the source into the run's message.
    """

    fifo: Path
    produce: Producer
    source_error: Callable[[BaseException], BaseException]

    def feeding(self) -> contextlib.AbstractContextManager[None]:
        return feeding_pipe(self.fifo, self.produce, self.source_error)


def staging_name(load_key: str, target_id: str, step_id: str) -> str:
    return f"s_{load_key}_{target_id}_{step_id}"[:200]


def create_staging(client: Any, name: str, columns: list[tuple[str, str]]) -> str:
    client.command(f"CREATE DATABASE IF NOT EXISTS {STAGING_DATABASE}")
    table = qualified_name(name, STAGING_DATABASE)
    client.command(f"DROP TABLE IF EXISTS {table} SYNC")
    column_sql = ", ".join(f"{quote_identifier(n)} {t}" for n, t in columns)
    # StripeLog: one file per table, no sorting or granule marks to write; staged rows are written
    # once and read once (about 10 % faster than a MergeTree here for a 1M-row stream)
    client.command(f"CREATE TABLE {table} ({column_sql}) ENGINE = StripeLog")
    return table


def insert_batches(client: Any, name: str, batches: Iterator[pa.RecordBatch]) -> tuple[int, int]:
    """Insert Arrow batches into a staging table one at a time; returns (rows, bytes)."""
    rows = size = 0
    for batch in batches:
        if batch.num_rows:
            client.insert_arrow(
                name, pa.Table.from_batches([files.ingestable(batch)]), database=STAGING_DATABASE
            )
            rows += batch.num_rows
            size += batch.nbytes
    return rows, size


def _source_error(source: Source, error: BaseException) -> ExtractError:
    if isinstance(error, ConnectorFailure):
        return ExtractError(f"source {source.id}: {error.message}")
    if isinstance(error, InvalidTableName):
        return ExtractError(f"source {source.id}: {error}")
    if isinstance(error, psycopg.Error):
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return ExtractError(f"source {source.id}: PostgreSQL error: {text[:500]}")
    if isinstance(error, ClickHouseError):
        return ExtractError(f"source {source.id}: warehouse error: {str(error).splitlines()[0][:500]}")
    return ExtractError(f"source {source.id}: {type(error).__name__}: {str(error)[:500]}")


def stage_source(
    client: Any,
    source: Source,
    config: ConnectorConfig | None,
    *,
    staging: str,
    cursor: Callable[[], Any] | None,
    structure: Callable[[], str | None],
    rejects_path: Callable[[], str],
    warehouse_url: str = "",
    direct: bool = False,
) -> StagedSource:
    """Make `source` readable by the final insert; raises ExtractError with a message for the run log.

    `direct`: the final insert writes a fresh table that is published only if the insert and the
    source's stream both succeed (a replace), so a streamed source may be read by it in place
    (StagedSource.feed; the caller runs the insert inside `feed.feeding()` and closes the piece).
    """
    started = time.perf_counter()
    try:
        staged = _stage(
            client, source, config, staging, cursor, structure, rejects_path, warehouse_url, direct
        )
    except BaseException as error:
        # a stream that failed half-way leaves no half-filled staging table behind
        with contextlib.suppress(Exception):
            client.command(f"DROP TABLE IF EXISTS {qualified_name(staging, STAGING_DATABASE)} SYNC")
        if isinstance(error, ExtractError) or not isinstance(error, Exception):
            raise
        raise _source_error(source, error) from None  # every source failure becomes one clear message
    staged.seconds = time.perf_counter() - started
    return staged


def _stage(
    client: Any,
    source: Source,
    config: ConnectorConfig | None,
    staging: str,
    cursor: Callable[[], Any] | None,
    structure: Callable[[], str | None],
    rejects_path: Callable[[], str],
    warehouse_url: str,
    direct: bool,
) -> StagedSource:
    if config is None or (isinstance(config, ClickHouseConfig) and config.is_platform_warehouse):
        database = source.database or (config.database if isinstance(config, ClickHouseConfig) else None)
        return StagedSource(_warehouse_body(source, database), "warehouse_sql")
    if isinstance(config, FileConfig):
        return _stage_file(client, source, config, staging, structure, rejects_path, warehouse_url)
    cursor_after = cursor() if cursor is not None and source.cursor_column else None
    if isinstance(config, PostgresConfig):
        if direct and files.warehouse_is_local(warehouse_url):
            return _postgres_feed(client, source, config, staging, cursor_after)
        return _stage_postgres(client, source, config, staging, cursor_after, warehouse_url)
    if isinstance(config, MySQLConfig):
        columns, batches = mysql.stream_batches(
            config, source.table, source.query, source.cursor_column, cursor_after
        )
        table = create_staging(client, staging, [(c.name, c.clickhouse_type) for c in columns])
        rows, size = insert_batches(client, staging, batches)
        return StagedSource(f"SELECT * FROM {table}", "mysql_stream_arrow", rows, size, staging_table=staging)
    assert isinstance(config, ClickHouseConfig)
    return _stage_clickhouse(client, source, config, staging, cursor_after)


def _warehouse_body(source: Source, database: str | None) -> str:
    if source.query:
        return source.query.strip().rstrip(";")
    assert source.table is not None
    schema, _, table = source.table.rpartition(".")
    return f"SELECT * FROM {qualified_name(table, schema or database)}"


def _stage_postgres(
    client: Any, source: Source, config: PostgresConfig, staging: str, cursor_after: Any, warehouse_url: str
) -> StagedSource:
    with postgres.connect(config) as conn:
        columns: list[ColumnInfo] = postgres.relation_columns(conn, config, source.table, source.query)
        table = create_staging(client, staging, [(c.name, c.clickhouse_type) for c in columns])
        local = files.warehouse_is_local(warehouse_url)
        producers = _psql(conn, config, source, columns, cursor_after) if local else None
        structure = _structure(columns)
        if producers is not None:
            # psql's COPY → named pipe → file(): no Python step per row anywhere
            summary = pipe_into_staging(client, table, structure, "TabSeparated", producers)
            return _staged_postgres(client, table, staging, summary, _psql_path(producers), 0)
        counted = {"bytes": 0}
        stream = postgres.copy_stream(conn, _copy_statement(config, source, columns, cursor_after))
        first = next(stream, None)
        if first is None:
            # nothing to read (e.g. no new rows past the cursor): an empty insert is an error in ClickHouse
            return StagedSource(
                f"SELECT * FROM {table}", "postgres_copy_text_tsv", 0, 0, staging_table=staging
            )

        def blocks() -> Iterator[bytes]:
            for block in _chain(first, stream):
                counted["bytes"] += len(block)
                yield block

        if local:
            # the warehouse parses while PostgreSQL copies: COPY → named pipe → file() (both cores busy)
            summary = pipe_into_staging(client, table, structure, "TabSeparated", [write_blocks(blocks())])
            path = "postgres_copy_text_pipe"
        else:
            summary = client.raw_insert(
                qualified_name(staging, STAGING_DATABASE),
                [c.name for c in columns],
                insert_block=blocks(),
                fmt="TabSeparated",
                settings={"input_format_parallel_parsing": 1},
            )
            path = "postgres_copy_text_tsv"
    return _staged_postgres(client, table, staging, summary, path, counted["bytes"])


def _staged_postgres(
    client: Any, table: str, staging: str, summary: Any, path: str, size: int
) -> StagedSource:
    rows = _written_rows(summary)
    if rows is None:
        rows = int(client.command(f"SELECT count() FROM {table}"))
    return StagedSource(f"SELECT * FROM {table}", path, rows, size, staging_table=staging)


def _copy_statement(
    config: PostgresConfig, source: Source, columns: list[ColumnInfo], cursor_after: Any
) -> Any:
    return postgres.copy_statement(
        config, source.table, source.query, columns, source.cursor_column, cursor_after
    )


def _psql(
    conn: Any, config: PostgresConfig, source: Source, columns: list[ColumnInfo], cursor_after: Any
) -> list[Producer] | None:
    """psql COPYs of the source, one per pipe (several for a large table, see copy_ranges); None: no psql."""
    if postgres.psql_executable() is None:
        return None
    ranges = snapshot = None
    if source.table and not source.query:
        ranges = postgres.copy_ranges(conn, config, source.table, postgres.copy_streams())
    if ranges is not None:
        snapshot = postgres.export_snapshot(conn)  # the COPYs together read what one COPY would
    if ranges is None or snapshot is None:
        command = postgres.psql_copy_command(conn, _copy_statement(config, source, columns, cursor_after))
        return [run_into_pipe(*command)] if command is not None else None
    producers = []
    for pages in ranges:
        statement = postgres.copy_statement(
            config, source.table, None, columns, source.cursor_column, cursor_after, pages
        )
        command = postgres.psql_copy_command(conn, statement, snapshot)
        if command is None:
            return None
        producers.append(run_into_pipe(*command))
    return producers


def _psql_path(producers: list[Producer], direct: bool = False) -> str:
    streams = "pipe" if len(producers) == 1 else f"{len(producers)}_pipes"
    return f"postgres_psql_{streams}" + ("_direct" if direct else "")


def _postgres_feed(
    client: Any, source: Source, config: PostgresConfig, staging: str, cursor_after: Any
) -> StagedSource:
    """COPY → named pipe(s) → the final insert itself: the rows are written once, into the new table."""
    resources = contextlib.ExitStack()
    try:
        conn = resources.enter_context(postgres.connect(config))
        columns = postgres.relation_columns(conn, config, source.table, source.query)
        producers = _psql(conn, config, source, columns, cursor_after)
        if producers is None:
            stream = postgres.copy_stream(conn, _copy_statement(config, source, columns, cursor_after))
            resources.callback(stream.close)
            first = next(stream, None)  # the COPY has started: errors of the query show up here
            if first is None:
                resources.close()
                table = create_staging(client, staging, [(c.name, c.clickhouse_type) for c in columns])
                return StagedSource(
                    f"SELECT * FROM {table}", "postgres_copy_text_tsv", 0, 0, staging_table=staging
                )
            producers, path = [write_blocks(_chain(first, stream))], "postgres_copy_text_pipe_direct"
        else:
            path = _psql_path(producers, direct=True)
            if len(producers) == 1:
                resources.close()  # psql has a connection of its own (several keep the snapshot's open)
                resources = contextlib.ExitStack()
        fifos = [new_pipe() for _ in producers]
        for fifo in fifos:
            resources.callback(fifo.unlink, missing_ok=True)
    except BaseException:
        resources.close()
        raise
    body, settings = pipes_select(fifos, "TabSeparated", _structure(columns))
    feeds = [
        PipeFeed(fifo, produce, lambda error: _source_error(source, error))
        for fifo, produce in zip(fifos, producers, strict=True)
    ]
    return StagedSource(body, path, None, 0, insert_settings=settings, feeds=feeds, resources=resources)


def _structure(columns: list[ColumnInfo]) -> str:
    return ", ".join(f"{quote_identifier(c.name)} {c.clickhouse_type}" for c in columns)


def pipe_relation(fifo: Path, fmt: str, structure: str) -> str:
    """The table function that reads a named pipe (the warehouse's guard allows the pipes folder)."""
    return f"file({string_literal(str(fifo))}, '{fmt}', {string_literal(structure)})"


def new_pipe() -> Path:
    fifo = pipe_folder() / f"{uuid.uuid4().hex}.pipe"
    os.mkfifo(fifo, 0o600)
    return fifo


def pipe_folder() -> Path:
    """Where the named pipes between a run worker and the local warehouse live (its file() may read here)."""
    folder = data_root() / PIPE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pipes_select(fifos: list[Path], fmt: str, structure: str) -> tuple[str, dict[str, Any]]:
    """The SELECT reading every pipe (UNION ALL), and the settings of the statement that runs it.

    One pipe: parsed by several threads (parallel parsing). Several: one thread each, all at once
    (max_threads: a pipe opened late would hold its writer back).
    """
    select = " UNION ALL ".join(f"SELECT * FROM {pipe_relation(f, fmt, structure)}" for f in fifos)
    if len(fifos) == 1:
        return select, {"input_format_parallel_parsing": 1}
    return select, {"input_format_parallel_parsing": 0, "max_threads": len(fifos)}


def pipe_into_staging(client: Any, table: str, structure: str, fmt: str, producers: list[Producer]) -> Any:
    """`INSERT INTO table SELECT * FROM file(<named pipe>) [UNION ALL …]` while `producers` write the pipes.

    The local warehouse parses the data as it arrives, so reading the source and parsing overlap;
    nothing is spooled to disk. A failure on either side fails the whole insert: a source error
    mid-stream raises here after the insert (the staging table, partial, is dropped by the caller);
    a warehouse error stops the writers (their next write finds the pipe closed).
    """
    fifos = [new_pipe() for _ in producers]
    try:
        select, settings = pipes_select(fifos, fmt, structure)
        with contextlib.ExitStack() as feeding:
            for fifo, produce in zip(fifos, producers, strict=True):
                feeding.enter_context(feeding_pipe(fifo, produce))
            return client.command(f"INSERT INTO {table} {select} SETTINGS {settings_sql(settings)}")
    finally:
        for fifo in fifos:
            fifo.unlink(missing_ok=True)


def write_blocks(blocks: Iterator[bytes]) -> Producer:
    """A producer writing byte blocks (e.g. COPY read through psycopg) from this process."""

    def produce(fd: int, stop: threading.Event) -> None:
        with os.fdopen(fd, "wb", buffering=0) as pipe:
            for block in blocks:
                view = memoryview(block)
                while view:
                    if stop.is_set():
                        return
                    try:
                        view = view[os.write(pipe.fileno(), view) :]
                    except BlockingIOError:
                        select.select([], [pipe.fileno()], [], 0.05)

    return produce


def run_into_pipe(argv: list[str], env: dict[str, str]) -> Producer:
    """A producer that is a child process writing its standard output into the pipe (e.g. psql)."""

    def produce(fd: int, stop: threading.Event) -> None:
        os.set_blocking(fd, True)  # the child writes with plain blocking writes
        try:
            process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.PIPE
            )
        finally:
            os.close(fd)  # the child has its copy: the reader sees the end when the child exits
        while process.poll() is None:
            if stop.is_set():
                process.kill()
            stop.wait(0.05)
        assert process.stderr is not None
        errors = process.stderr.read().decode(errors="replace").strip()
        process.stderr.close()
        if process.returncode != 0 and not stop.is_set():  # stop: the statement failed, it says why
            raise ExtractError(_child_error(errors, process.returncode))

    return produce


def _child_error(stderr: str, code: int) -> str:
    """psql's `psql:<where>: ERROR:  division by zero` → `PostgreSQL error: division by zero`."""
    for line in stderr.splitlines():
        if "ERROR:" in line or "FATAL:" in line:
            message = line.split("ERROR:" if "ERROR:" in line else "FATAL:", 1)[1].strip()
            return f"PostgreSQL error: {message[:500]}"
    first = stderr.splitlines()[0][:500] if stderr else f"exit code {code}"
    return f"the PostgreSQL client failed: {first}"


@contextlib.contextmanager
def feeding_pipe(
    fifo: Path,
    produce: Producer,
    source_error: Callable[[BaseException], BaseException] | None = None,
) -> Iterator[None]:
    """A thread runs `produce` into `fifo` while the body runs a statement that reads it.

    The warehouse sees the end of the data when the writer closes the pipe, also when the source
    failed mid-stream, so the body's statement may succeed on part of the rows: the source's failure
    is raised after the body, and the caller must not publish what the statement wrote.
    """
    stop = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            fd = _open_writer(fifo, stop)
            if fd is not None:
                produce(fd, stop)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(error)

    writer = threading.Thread(target=write, name="pipe-writer", daemon=True)
    writer.start()
    try:
        yield
    except BaseException:
        stop.set()  # the statement failed: the producer stops (its next write finds the pipe closed)
        writer.join(30)
        raise
    # the statement read to the end, so the producer closed the pipe: wait for it to report how it ended
    writer.join(60)
    if writer.is_alive():
        stop.set()
        writer.join(10)
        raise ExtractError("the source did not finish after the warehouse read the end of its data")
    if failure:
        error = failure[0]
        if isinstance(error, BrokenPipeError):
            raise ExtractError("the warehouse stopped reading the stream before its end")
        if isinstance(error, ExtractError) or source_error is None:
            raise error
        raise source_error(error)


def _open_writer(fifo: Path, stop: threading.Event) -> int | None:
    """Open the pipe for writing once the warehouse has opened it for reading (None if told to stop)."""
    deadline = time.monotonic() + PIPE_OPEN_TIMEOUT_S
    while not stop.is_set():
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        if time.monotonic() > deadline:
            raise ExtractError(f"the warehouse did not open the stream within {PIPE_OPEN_TIMEOUT_S:.0f} s")
        time.sleep(0.005)
    return None


def _written_rows(summary: Any) -> int | None:
    values = getattr(summary, "summary", None) or {}
    try:
        return int(values["written_rows"])
    except (KeyError, TypeError, ValueError):
        return None


def _stage_clickhouse(
    client: Any, source: Source, config: ClickHouseConfig, staging: str, cursor_after: Any
) -> StagedSource:
    select = _warehouse_body(source, config.database)
    if source.cursor_column and cursor_after is not None:
        cursor = quote_identifier(source.cursor_column)
        select = f"SELECT * FROM ({select}) WHERE {cursor} > {{cursor_after:String}}"
    columns = ch_connector.column_infos(config, select.replace("{cursor_after:String}", "NULL"))
    table = create_staging(client, staging, [(c.name, c.clickhouse_type) for c in columns])
    remote = ch_connector.client_for(config)
    try:
        parameters = {"cursor_after": str(cursor_after)} if cursor_after is not None else None
        with remote.query_arrow_stream(select, parameters=parameters) as stream:
            rows, size = insert_batches(client, staging, iter(stream))
    finally:
        remote.close()
    return StagedSource(
        f"SELECT * FROM {table}", "clickhouse_arrow_stream", rows, size, staging_table=staging
    )


def _stage_file(
    client: Any,
    source: Source,
    config: FileConfig,
    staging: str,
    structure: Callable[[], str | None],
    rejects_path: Callable[[], str],
    warehouse_url: str,
) -> StagedSource:
    kind = source.type.value if source.type is not None else config.type
    if kind != config.type:
        config = config.model_copy(update={"type": kind})
    assert source.path is not None
    paths = files.resolve_source_files(config, source.path)
    size = sum(p.stat().st_size for p in paths)
    declared = source.options.get("columns")
    fixed = _declared_structure(declared) if isinstance(declared, dict) else structure()
    relation = files.warehouse_file_relation(config, paths, fixed, warehouse_url=warehouse_url)
    if relation is not None:
        settings: dict[str, Any] = {}
        rejects = None
        if fixed and config.type in ("csv", "tsv", "jsonl"):
            # rows that do not parse into the declared types go to the quarantine, not the target
            rejects = rejects_path()
            settings = {
                "input_format_allow_errors_num": 1_000_000_000,
                "input_format_allow_errors_ratio": 1,
                "input_format_record_errors_file_path": rejects,
            }
        return StagedSource(
            f"SELECT * FROM {relation}", f"warehouse_file_{config.type}", None, size,
            insert_settings=settings, rejects_file=rejects,
        )  # fmt: skip
    rows = 0
    table = None
    for path in paths:
        batches = files.record_batches(config, path)
        first = next(batches, None)
        if first is None:
            continue
        if table is None:
            columns = [(f.name, nullable(arrow_to_clickhouse(f.type), True)) for f in first.schema]
            table = create_staging(client, staging, columns)
        count, _ = insert_batches(client, staging, _chain(first, batches))
        rows += count
    if table is None:
        raise ExtractError(f"source {source.id}: {source.path} has no rows")
    return StagedSource(
        f"SELECT * FROM {table}", f"arrow_stream_{config.type}", rows, size, staging_table=staging
    )


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _declared_structure(columns: dict[str, Any]) -> str:
    import re

    parts = []
    for name, ch_type in columns.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", str(name)) or not re.match(
            r"^[A-Za-z][A-Za-z0-9_(), ]{0,120}$", str(ch_type)
        ):
            raise ExtractError(
                f"options.columns: {name!r} {ch_type!r} is not a column name and ClickHouse type"
            )
        parts.append(f"{name} {ch_type}")
    return ", ".join(parts)
