"""Moving rows for one target: extract → transform → load, always ending in one INSERT … SELECT.

Every source becomes a relation the warehouse can read (extract.py: in place for the warehouse's own
tables and for files the warehouse reads itself, else a staging table filled by streaming), SQL steps
are CTEs over those relations, a Python step runs in a limited child process and its output is
staged like a source. The load is then written by one `INSERT … SELECT` with the sources and steps as
CTEs into a table of its own, which is published whole in the target's mode: replace by EXCHANGE
TABLES; append, incremental and merge exactly once per load id (RENAME for a first load, else a
ledger intent + MOVE PARTITION, see _publish_once), so a retried run never doubles rows.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clickhouse_connect.driver.exceptions import ClickHouseError

from orchestration.connectors.config import ConnectorConfig
from orchestration.connectors.store import load_connector
from orchestration.connectors.types import arrow_to_clickhouse, nullable
from orchestration.lib.sql import (
    qualified_name,
    quote_identifier,
    settings_sql,
    string_literal,
    table_swap_statements,
)
from orchestration.movement.extract import (
    STAGING_DATABASE,
    ExtractError,
    PipeFeed,
    StagedSource,
    create_staging,
    insert_batches,
    stage_source,
    staging_name,
)
from orchestration.movement.python_step import PythonStepError, StepLimits, run_python_step
from orchestration.specs.pipeline import (
    LoadMode,
    PipelineDocument,
    Source,
    SourceType,
    Target,
    Transformation,
    TransformationType,
)
from orchestration.warehouse import publish
from orchestration.warehouse.resource import ClickHouseResource

# how many recent insert blocks a created table remembers (the quarantine's inserts carry a token)
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
            # reason -> count; the rows themselves are in `<table>__rejected`
            "rejected_reasons": dict(self.rejected_reasons),
            "extraction_time_ms": round(self.extraction_time_ms, 1),
            "transformation_time_ms": round(self.transformation_time_ms, 1),
            "loading_time_ms": round(self.loading_time_ms, 1),
            "movement_path": self.path,
            "table": self.table,
        }


ConnectorLookup = Callable[[str], ConnectorConfig]


def move_target(
    document: PipelineDocument,
    target: Target,
    context: MoveContext,
    warehouse: ClickHouseResource,
    *,
    connectors: ConnectorLookup | None = None,
    python_limits: StepLimits | None = None,
) -> MoveResult:
    """Extract, transform and load what `target` needs; returns the figures of the load.

    `connectors` finds a connector's configuration by id (default: the metadata DB, decrypted here,
    in the run worker). Raises MoveError with a message for the run's log; the target then keeps
    the rows it had.
    """
    if target.connector_id is not None:
        raise MoveError(
            f"target {target.id}: loading into another ClickHouse (connector) is not supported yet"
        )
    lookup = connectors or load_connector
    relation = document.input_of(target)
    steps = _needed_steps(document, relation)
    load_key = hashlib.sha256(f"{context.load_id}:{target.id}".encode()).hexdigest()[:12]
    client = warehouse.get_client()
    staged: list[StagedSource] = []
    result = MoveResult(table=qualified_name(target.table, target.database))
    try:
        info = _target_info(client, target)
        columns = info.columns
        if (
            columns
            and target.mode is not LoadMode.REPLACE
            and _already_loaded(client, target, load_key, info, result)
        ):
            context.log.info(
                f"{target.id}: load {context.load_id} was already published to {result.table}: "
                f"{result.rows_written} rows written now"
            )
            return result
        bodies: dict[str, str] = {}
        for step_id in steps:
            source = next((s for s in document.sources if s.id == step_id), None)
            if source is not None:
                # every load fills a table of its own that is published whole: a streamed source that
                # is the target's only input may feed that insert itself
                direct = steps == [step_id]
                piece = _extract(
                    client, document, target, source, lookup, load_key, context, warehouse.url, info, direct
                )
                staged.append(piece)
                bodies[step_id] = piece.body
                result.extraction_time_ms += piece.seconds * 1000
                continue
            step = next(t for t in document.transformations if t.id == step_id)
            if step.type is TransformationType.SQL:
                assert step.sql is not None
                bodies[step_id] = step.sql.strip().rstrip(";")
                continue
            started = time.perf_counter()
            piece = _python_step(client, document, step, bodies, load_key, target, python_limits, context)
            staged.append(piece)
            bodies[step_id] = piece.body
            result.transformation_time_ms += (time.perf_counter() - started) * 1000
        select = _with_ctes(bodies, steps, relation)
        settings: dict[str, Any] = {}
        for piece in staged:
            settings.update(piece.insert_settings)
        feeds = [feed for piece in staged for feed in piece.feeds]
        _load_select(select, target, load_key, client, result, settings, feeds, info, context.log)
        result.rows_read = _rows_read(staged, result)
        result.bytes_read = sum(p.bytes_read for p in staged) or result.bytes_read
        for piece in staged:
            if piece.rejects_file:
                _quarantine(client, target, context, piece, result)
        result.path = "+".join(dict.fromkeys(p.path for p in staged)) or "warehouse_sql"
    except (ExtractError, PythonStepError) as error:
        raise MoveError(str(error)) from None
    except publish.IncompleteMove as error:
        raise MoveError(f"target {target.id}: {error}") from None
    except ClickHouseError as error:
        raise MoveError(f"target {target.id}: warehouse error: {_first_line(error)}") from None
    finally:
        for piece in staged:
            piece.close()
        _drop_staging(client, staged)
        client.close()
    context.log.info(
        f"{target.id}: {result.rows_written} rows written to {result.table} ({target.mode.value}, "
        f"{result.rows_read} read, {result.rows_rejected} rejected, path {result.path}, "
        f"extract {result.extraction_time_ms:.0f} ms, transform {result.transformation_time_ms:.0f} ms, "
        f"load {result.loading_time_ms:.0f} ms)"
    )
    return result


def _needed_steps(document: PipelineDocument, relation: str) -> list[str]:
    """The sources and the steps up to `relation`, in document order (unused CTEs cost nothing)."""
    last = next((i for i, t in enumerate(document.transformations) if t.id == relation), -1)
    return [s.id for s in document.sources] + [t.id for t in document.transformations[: last + 1]]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:500]


def _rows_read(staged: list[StagedSource], result: MoveResult) -> int:
    counted = [p.rows_read for p in staged if p.rows_read is not None]
    in_place = any(p.rows_read is None for p in staged)
    if in_place or not staged:
        # the warehouse read (part of) the sources itself: its figure covers what the insert read
        return max(result.rows_read, sum(counted))
    return sum(counted)


def _extract(
    client: Any,
    document: PipelineDocument,
    target: Target,
    source: Source,
    lookup: ConnectorLookup,
    load_key: str,
    context: MoveContext,
    warehouse_url: str,
    info: TargetInfo,
    direct: bool = False,
) -> StagedSource:
    config: ConnectorConfig | None = None
    if source.connector_id is not None:
        try:
            config = lookup(source.connector_id)
        except (LookupError, ValueError) as error:
            raise ExtractError(f"source {source.id}: {error}") from None
    elif source.type is not SourceType.CLICKHOUSE:
        raise ExtractError(f"source {source.id}: a {source.type} source needs a connector_id")

    def cursor() -> Any:
        # incremental: only rows past the largest cursor value the target already has
        return info.cursor_bound[0] if info.cursor_bound is not None else None

    def structure() -> str | None:
        # a file loaded straight into an existing table is read with that table's types
        if document.input_of(target) != source.id or target.mode is LoadMode.REPLACE:
            return None
        return ", ".join(f"{quote_identifier(n)} {t}" for n, t in info.columns) or None

    def rejects_path() -> str:
        folder = _rejects_folder()
        return str(folder / f"{load_key}_{source.id}_{uuid.uuid4().hex[:6]}.csv")

    staging = staging_name(load_key, target.id, source.id)
    piece = stage_source(
        client,
        source,
        config,
        staging=staging,
        cursor=cursor,
        structure=structure,
        rejects_path=rejects_path,
        warehouse_url=warehouse_url,
        direct=direct,
    )
    context.log.info(
        f"{target.id}: source {source.id} via {piece.path}"
        + (f", {piece.rows_read} rows staged in {piece.seconds:.2f} s" if piece.rows_read is not None else "")
    )
    return piece


def _rejects_folder() -> Path:
    from api.core.config import get_settings

    folder = get_settings().data_dir.resolve() / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _python_step(
    client: Any,
    document: PipelineDocument,
    step: Transformation,
    bodies: dict[str, str],
    load_key: str,
    target: Target,
    limits: StepLimits | None,
    context: MoveContext,
) -> StagedSource:
    """Run `transform(df)` on its input relation in a limited child; its output is staged like a source."""
    index = next(i for i, t in enumerate(document.transformations) if t.id == step.id)
    relation = step.input or (document.transformations[index - 1].id if index else document.sources[0].id)
    select = _with_ctes(bodies, list(bodies), relation)
    assert step.code is not None
    try:
        stream_context = client.query_arrow_stream(select)
    except ClickHouseError as error:
        raise ExtractError(
            f"transformation {step.id}: reading its input failed: {_first_line(error)}"
        ) from None
    with stream_context as stream:
        batches = iter(stream)
        first = next(batches, None)
        if first is None:
            raise ExtractError(f"transformation {step.id}: its input {relation} has no columns")
        schema = first.schema
        out_schema, output, rows = run_python_step(
            step.id, step.code, _prepend(first, batches), schema, limits or StepLimits.from_environment()
        )
    staging = staging_name(load_key, target.id, step.id)
    columns = [(f.name, nullable(arrow_to_clickhouse(f.type), True)) for f in out_schema]
    table = create_staging(client, staging, columns)
    written, size = insert_batches(client, staging, output)
    context.log.info(f"{target.id}: python transformation {step.id} returned {written} rows")
    return StagedSource(f"SELECT * FROM {table}", "python_step", None, 0, staging_table=staging)


def _prepend(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def _with_ctes(bodies: dict[str, str], order: list[str], relation: str) -> str:
    """`WITH source_1 AS (…), transform_1 AS (…) SELECT * FROM <relation>`."""
    ctes = [f"{quote_identifier(step_id)} AS ({bodies[step_id]})" for step_id in order if step_id in bodies]
    return f"WITH {', '.join(ctes)} SELECT * FROM {quote_identifier(relation)}"


def _drop_staging(client: Any, staged: list[StagedSource]) -> None:
    for piece in staged:
        if piece.staging_table:
            name = qualified_name(piece.staging_table, STAGING_DATABASE)
            with contextlib.suppress(ClickHouseError):
                client.command(f"DROP TABLE IF EXISTS {name} SYNC")
        if piece.rejects_file:
            Path(piece.rejects_file).unlink(missing_ok=True)


def _quarantine(
    client: Any, target: Target, context: MoveContext, piece: StagedSource, result: MoveResult
) -> None:
    """Rows the warehouse could not parse into the target's types: kept with the reason, counted."""
    assert piece.rejects_file is not None
    path = Path(piece.rejects_file)
    if not path.exists() or path.stat().st_size == 0:
        return
    rejected_table = f"{target.table}__rejected"
    name = qualified_name(rejected_table, target.database)
    client.command(
        f"CREATE TABLE IF NOT EXISTS {name} (load_id String, run_id String, source String, "
        f"row_number UInt64, reason String, raw_row String, rejected_at DateTime DEFAULT now()) "
        f"ENGINE = MergeTree "
        f"ORDER BY (load_id, row_number) SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
    )
    rows = []
    reasons: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        for record in csv.reader(handle):
            if len(record) < 6:
                continue
            offset, reason, raw = record[3], record[4], record[5]
            short = reason.splitlines()[-1].strip() if reason.strip() else "row does not parse"
            reasons[short[:200]] = reasons.get(short[:200], 0) + 1
            rows.append([context.load_id, context.run_id, piece.path, int(offset or 0), reason, raw])
    if not rows:
        return
    client.insert(
        rejected_table,
        rows,
        column_names=["load_id", "run_id", "source", "row_number", "reason", "raw_row"],
        database=target.database,
        settings={
            "insert_deduplicate": 1,
            "insert_deduplication_token": f"{context.load_id}:{target.id}:rejected",
        },
    )
    result.rows_rejected += len(rows)
    for reason, count in reasons.items():
        result.rejected_reasons[reason] = result.rejected_reasons.get(reason, 0) + count
    context.log.warning(f"{target.id}: {len(rows)} rows did not fit and are kept in {name} with the reason")


@dataclass(frozen=True)
class TargetInfo:
    """The target as the load found it; no columns when the table does not exist yet."""

    columns: list[tuple[str, str]]
    engine: str = ""
    comment: str = ""
    partition_key: str = ""
    # incremental into an existing table: (value, text, type) of the largest cursor value it holds
    cursor_bound: tuple[Any, str, str] | None = None


def _target_info(client: Any, target: Target) -> TargetInfo:
    """Columns (name, type) in order, engine, comment and partition key of the target, in one query."""
    rows = client.query(
        "SELECT name, type, (SELECT (any(engine), any(comment), any(partition_key)) FROM system.tables "
        "WHERE database = {db:String} AND name = {t:String}) "
        "FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position",
        parameters={"db": target.database or client.database or "default", "t": target.table},
    ).result_rows
    if not rows:
        return TargetInfo([])
    engine, comment, partition_key = rows[0][2]
    bound = None
    if target.mode is LoadMode.INCREMENTAL and target.cursor_column:
        # read once: the source's pushed-down predicate and the load's own filter both use it
        cursor = quote_identifier(target.cursor_column)
        name = qualified_name(target.table, target.database)
        count, value, text, type_name = client.query(
            f"SELECT count(), max({cursor}), toString(max({cursor})), toTypeName(max({cursor})) FROM {name}"
        ).result_rows[0]
        bound = (value, str(text), str(type_name)) if count and text is not None else None
    columns = [(str(r[0]), str(r[1])) for r in rows]
    return TargetInfo(columns, str(engine), str(comment), str(partition_key), bound)


def _create_statement(
    name: str,
    target: Target,
    select: str,
    *,
    replace: bool = False,
    comment: str | None = None,
    fill: str | None = None,
) -> str:
    """The target's table (its engine and sort key, the columns of `select`); `replace`: CREATE OR
    REPLACE instead of IF NOT EXISTS. Empty, or with `fill` (the insert's settings, maybe "") filled by
    `select` in the same statement."""
    order = target.order_by or target.merge_keys
    order_sql = f"({', '.join(quote_identifier(c) for c in order)})" if order else "tuple()"
    engine = "ReplacingMergeTree" if target.mode is LoadMode.MERGE else "MergeTree"
    create = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
    body = f"EMPTY AS {select}" if fill is None else f"AS {select}" + (f" SETTINGS {fill}" if fill else "")
    return (
        f"{create} {name} ENGINE = {engine} ORDER BY {order_sql} "
        f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}, allow_nullable_key = 1 "
        + (f"COMMENT {string_literal(comment)} " if comment else "")
        + body
    )


def _summary_int(summary: Any, key: str) -> int:
    values = getattr(summary, "summary", None) or {}
    try:
        return int(values.get(key, 0))
    except (TypeError, ValueError):
        return 0


def _load_select(
    select: str,
    target: Target,
    load_key: str,
    client: Any,
    result: MoveResult,
    settings: dict[str, Any] | None,
    feeds: list[PipeFeed] | None,
    info: TargetInfo,
    log: Log,
) -> None:
    """Load `select` into the target in its mode; `info`: the target as the move found it.

    Every load first fills a table of its own (`feeds`, streamed sources, are fed while that insert
    runs), so the rows are written once and readers never see a half-written load. A replace then
    swaps it in (EXCHANGE TABLES); any other mode publishes it exactly once (see _publish_once).
    """
    name = qualified_name(target.table, target.database)
    extra = settings_sql(settings or {})
    started = time.perf_counter()
    if target.database:
        client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(target.database)}")
    if not info.columns and not target.create_table:
        raise MoveError(f"target table {target.table} does not exist and create_table is false")
    if target.mode is LoadMode.REPLACE:
        staging_table = f"{target.table}__staging_{uuid.uuid4().hex[:8]}"
        staging = qualified_name(staging_table, target.database)
        client.command(_create_statement(name, target, select))
        try:
            # OR REPLACE fills a table of its own and renames it: the staging table appears whole
            summary = _fed(
                client,
                # marked for the sweep, but not as this load's first load: the mark becomes the target's
                _create_statement(
                    staging,
                    target,
                    select,
                    replace=True,
                    comment=f"{_load_marker(load_key)} replace",
                    fill=extra,
                ),
                feeds,
            )
            for statement in table_swap_statements(target.table, staging_table, target.database):
                client.command(statement)
        except BaseException:
            client.command(f"DROP TABLE IF EXISTS {staging} SYNC")
            raise
        result.rows_written = _summary_int(summary, "written_rows")
    else:
        summary = _publish_once(client, select, target, load_key, extra, feeds, result, info, log)
    result.rows_read = _summary_int(summary, "read_rows")
    result.bytes_read = _summary_int(summary, "read_bytes")
    result.loading_time_ms = (time.perf_counter() - started) * 1000


# Append, incremental and merge loads publish each load id once. The load fills a table of its own,
# `<table>__load_<load key>`, named by the load so that a retry finds what an earlier attempt left.
# - A first load creates that table with the comment `aetl load <load key>` and renames it into place
#   (atomic): a later attempt that finds the target carrying its comment writes nothing. After the
#   rename it also writes an intent whose table is gone (read as published), for a retry that comes
#   after a rebuild of the table lost the comment.
# - A load into an existing table is published through the ledger (orchestration.warehouse.publish:
#   an intent, then ALTER TABLE … MOVE PARTITION); a later attempt finishes or skips it.
# Renames and moves run inside the warehouse, whatever happens to the run worker meanwhile.


def _load_marker(load_key: str) -> str:
    return f"{publish.LOAD_TABLE_MARK} {load_key}"


def _already_loaded(client: Any, target: Target, load_key: str, info: TargetInfo, result: MoveResult) -> bool:
    """True when this load id was published before (result: 0 rows written) or is published now from
    what an earlier attempt left (result: its rows); False when the load has to run."""
    if info.comment == _load_marker(load_key):
        result.path = "already_published"  # the target is this load's own first load
        return True
    name = qualified_name(target.table, target.database)
    rows = publish.finish_earlier_attempt(client, name, load_key, info.engine)
    if rows is None:
        return False
    result.path = "already_published"
    result.rows_written = rows
    if rows and target.mode is LoadMode.MERGE:
        client.command(f"OPTIMIZE TABLE {name} FINAL")
    return True


def _publish_once(
    client: Any,
    select: str,
    target: Target,
    load_key: str,
    extra: str,
    feeds: list[PipeFeed] | None,
    result: MoveResult,
    info: TargetInfo,
    log: Log,
) -> Any:
    name = qualified_name(target.table, target.database)
    stage = _load_table(target, load_key)
    if info.cursor_bound is not None:
        select = _past_the_cursor(select, target, info.cursor_bound)
    published = False
    try:
        if info.columns:
            # OR REPLACE: an earlier attempt's table, never published, is replaced
            client.command(
                f"CREATE OR REPLACE TABLE {stage} AS {name} {publish.load_table_comment(load_key)}"
            )
            summary = _fed(
                client, f"INSERT INTO {stage} {select}" + (f" SETTINGS {extra}" if extra else ""), feeds
            )
        else:
            # a first load: its table is created filled (and carries the load's mark)
            create = _create_statement(
                stage, target, select, replace=True, comment=_load_marker(load_key), fill=extra
            )
            summary = _fed(client, create, feeds)
        if target.mode is LoadMode.MERGE:
            # one row per key within the load, the last loaded winning
            client.command(f"OPTIMIZE TABLE {stage} FINAL")
        rows = _summary_int(summary, "written_rows")
        if info.columns:
            publish.write_intent(client, name, load_key, stage, rows)
            published = True  # from here on the table is the intent's: only publishing removes it
            publish.move_rows(client, stage, name, info.engine, info.partition_key)
        else:
            try:
                client.command(f"RENAME TABLE {stage} TO {name}")
                published = True
            except ClickHouseError:
                now = _target_info(client, target)
                if not now.columns:
                    raise
                # another load created the target meanwhile: this load goes in like any append
                published = True
                _republish_into_existing(client, target, load_key, stage, rows, now.engine)
            else:
                _record_first_load(client, name, load_key, stage, rows, log)
        if target.mode is LoadMode.MERGE:
            client.command(f"OPTIMIZE TABLE {name} FINAL")
        result.rows_written = rows
        return summary
    finally:
        if not published:
            with contextlib.suppress(ClickHouseError):
                client.command(f"DROP TABLE IF EXISTS {stage} SYNC")


def _record_first_load(client: Any, name: str, load_key: str, stage: str, rows: int, log: Log) -> None:
    """A first load's second record, besides the target's comment (which a rebuild of the table loses):
    an intent whose table is gone, which a retry reads as published. The rows are in already: failing
    to write it costs only that second record."""
    try:
        publish.write_intent(client, name, load_key, stage, rows)
    except ClickHouseError as error:
        log.warning(f"{name}: load {load_key} published; its ledger record failed: {_first_line(error)}")


def _load_table(target: Target, load_key: str, suffix: str = "") -> str:
    return qualified_name(f"{target.table}__load_{load_key}{suffix}", target.database)


def _past_the_cursor(select: str, target: Target, bound: tuple[Any, str, str]) -> str:
    """Incremental: the state is the target itself, rows past the largest cursor value already loaded
    (a literal, so that the insert reads nothing but the source)."""
    assert target.cursor_column is not None
    _, last, last_type = bound
    cursor = quote_identifier(target.cursor_column)
    return f"SELECT * FROM ({select}) WHERE {cursor} > CAST({string_literal(last)} AS {last_type})"


def _republish_into_existing(
    client: Any, target: Target, load_key: str, fresh: str, rows: int, engine: str
) -> None:
    """A first load whose target appeared meanwhile: its rows into a copy of the target's structure,
    the intent for that copy, then the move (the fresh table goes once the copy holds the rows)."""
    name = qualified_name(target.table, target.database)
    copy = _load_table(target, load_key, "_2")
    client.command(f"CREATE OR REPLACE TABLE {copy} AS {name} {publish.load_table_comment(load_key)}")
    client.command(f"INSERT INTO {copy} SELECT * FROM {fresh}")
    publish.write_intent(client, name, load_key, copy, rows)
    client.command(f"DROP TABLE IF EXISTS {fresh} SYNC")
    publish.move_rows(client, copy, name, engine)


def _fed(client: Any, statement: str, feeds: list[PipeFeed] | None) -> Any:
    """Run `statement` (an insert, or a create filled by a select), with the streamed sources' writers
    feeding their pipes meanwhile."""
    with contextlib.ExitStack() as feeding:
        for feed in feeds or []:
            feeding.enter_context(feed.feeding())
        return client.command(statement)
