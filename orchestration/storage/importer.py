"""Import one file of a mount into a warehouse table: all its rows or none, each file's rows exactly once.

Every row carries the file it came from (`_source_file`) and its line (`_source_line`). A table this
module creates is partitioned by `_source_file`, so a file is published by one
`ALTER TABLE … REPLACE PARTITION … FROM <staging>`: readers see the file's previous rows or its new
ones, never half of them, and loading the same file again (a retried run, a changed file) replaces
its rows instead of adding duplicates. Rows that do not fit go to `<table>__rejected` with the file,
the line, the raw text and the reason, replaced per file the same way.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from orchestration.lib.sql import qualified_name, quote_identifier
from orchestration.storage import warehouse_csv
from orchestration.storage.inference import (
    SAMPLE_BYTES,
    Column,
    InferenceError,
    Inferred,
    compare_schema,
    converter,
    detect_format,
    infer_delimited,
    kind_of_clickhouse,
    read_records,
)
from orchestration.storage.mounts import Storage
from orchestration.warehouse import publish

BATCH_ROWS = 50_000
SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
DEDUP_WINDOW = 1000
# an empty file (or one whose rows were all quarantined) replaces the file's rows with none
EMPTY_OK = "SETTINGS allow_replace_partition_from_empty_source = 1"


class ImportFailed(RuntimeError):
    """The file cannot be imported as asked; the message is for the API and the run's log."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        self.details = details or {}
        super().__init__(message)


@dataclass
class ImportResult:
    table: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    replaced_by_file: bool = True
    seconds: float = 0.0
    content_hash: str = ""
    # how the rows were parsed: "warehouse_file" (the warehouse's file(), warehouse_csv.py), "python"
    # (the Python csv reader and converters) or "arrow" (JSON lines, Parquet, Excel)
    path: str = "arrow"

    def as_metadata(self) -> dict[str, Any]:
        return {
            "dagster/row_count": self.rows_loaded,
            "rows_read": self.rows_read,
            "rows_written": self.rows_loaded,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_quarantined,
            "rows_quarantined": self.rows_quarantined,
            "rejected_reasons": dict(self.reasons),
            "table": self.table,
            "replaced_by_file": self.replaced_by_file,
            "content_hash": self.content_hash,
            "loading_time_ms": round(self.seconds * 1000, 1),
            "path": self.path,
        }


def content_hash(storage: Storage, path: str) -> str:
    digest = hashlib.sha256()
    with storage.open(path) as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def local_copy(storage: Storage, path: str) -> Iterator[tuple[Path, str]]:
    """A local path of the file and its sha256: the file itself on a local mount, else a temporary copy."""
    local = storage.local_path(path)
    if local is not None:
        yield local, content_hash(storage, path)
        return
    digest = hashlib.sha256()
    fd, name = tempfile.mkstemp(prefix="aetl_import_", suffix="_" + path.rsplit("/", 1)[-1][-60:])
    try:
        with os.fdopen(fd, "wb") as out, storage.open(path) as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
                out.write(chunk)
        yield Path(name), digest.hexdigest()
    finally:
        os.unlink(name)


def _decompressed(raw: BinaryIO, compression: str, local: Path | None = None) -> Any:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if compression == "zip":
        archive = zipfile.ZipFile(local if local is not None else raw)
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            raise ImportFailed(f"a zip file must hold exactly one file, this one holds {len(members)}")
        return archive.open(members[0])
    return raw


def infer_file(storage: Storage, path: str, sheet: str | None = None) -> Inferred:
    """The schema of a file from a sample (CSV/TSV: the first MiB; other formats: their own metadata)."""
    entry = storage.stat(path)
    fmt, compression = detect_format(path)
    if fmt == "csv" and compression != "zip":
        with storage.open(path) as raw:
            stream = _decompressed(raw, compression)
            sample = stream.read(SAMPLE_BYTES + 1)
        whole = len(sample) <= SAMPLE_BYTES
        try:
            inferred = infer_delimited(
                sample[:SAMPLE_BYTES], entry.size if compression == "none" else None, whole
            )
        except InferenceError as error:
            raise ImportFailed(f"{path}: {error}") from None
        if compression != "none" and not whole:
            # compressed: the size on disk says little; scale by the compression ratio of the sample
            inferred.estimated_rows = max(inferred.estimated_rows, int(inferred.sample_rows * 4))
            inferred.estimate_method = "lower bound from a sample of a compressed file"
        inferred.compression = compression
        return inferred
    with local_copy(storage, path) as (local, _):
        return _infer_typed(local, fmt, compression, sheet)


def _arrow_kind(arrow_type: Any) -> tuple[str, int]:
    import pyarrow as pa  # type: ignore[import-untyped]

    if pa.types.is_boolean(arrow_type):
        return "bool", 0
    if pa.types.is_integer(arrow_type):
        return "integer", 0
    if pa.types.is_decimal(arrow_type):
        return "decimal", int(arrow_type.scale)
    if pa.types.is_floating(arrow_type):
        return "float", 0
    if pa.types.is_date(arrow_type):
        return "date", 0
    if pa.types.is_timestamp(arrow_type):
        return "datetime", 0
    return "string", 0


def _typed_batches(local: Path, fmt: str, compression: str, sheet: str | None) -> Iterator[Any]:
    from orchestration.connectors import files
    from orchestration.connectors.config import FileConfig

    if compression == "zip":
        with zipfile.ZipFile(local) as archive, tempfile.TemporaryDirectory() as folder:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise ImportFailed(f"a zip file must hold exactly one file, this one holds {len(members)}")
            inner = Path(archive.extract(members[0], folder))
            yield from _typed_batches(inner, fmt, "none", sheet)
        return
    config = FileConfig(
        type=fmt,  # type: ignore[arg-type]
        compression="gzip" if compression == "gzip" else "none",
        sheet=sheet,
    )
    if fmt == "excel" and sheet is None:
        # no sheet named: every sheet, in the workbook's order, into the one table
        for name in files.excel_sheet_names(config, local):
            yield from files.record_batches(config.model_copy(update={"sheet": name}), local)
        return
    yield from files.record_batches(config, local)


def _infer_typed(local: Path, fmt: str, compression: str, sheet: str | None) -> Inferred:
    batches = _typed_batches(local, fmt, compression, sheet)
    try:
        first = next(batches, None)
    except Exception as error:  # noqa: BLE001 - a file that is not what its name says
        raise ImportFailed(f"the file cannot be read as {fmt}: {str(error)[:300]}") from None
    finally:
        with contextlib.suppress(Exception):
            batches.close()  # type: ignore[attr-defined]
    if first is None:
        raise ImportFailed("the file has no rows")
    columns = []
    for arrow_field in first.schema:
        kind, scale = _arrow_kind(arrow_field.type)
        columns.append(Column(arrow_field.name, kind, True, scale))
    inferred = Inferred(fmt, columns, encoding="binary", header=True, compression=compression, sheet=sheet)
    if fmt == "parquet" and compression == "none":
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        inferred.estimated_rows = int(pq.ParquetFile(str(local)).metadata.num_rows)
        inferred.estimate_exact, inferred.estimate_method = True, "parquet footer"
    else:
        from orchestration.connectors.files import BATCH_ROWS as ARROW_BATCH

        sheets = 1
        if fmt == "excel" and sheet is None and compression != "zip":
            from orchestration.connectors import files
            from orchestration.connectors.config import FileConfig

            excel = FileConfig(type="excel", compression="gzip" if compression == "gzip" else "none")
            sheets = len(files.excel_sheet_names(excel, local))
        inferred.estimated_rows = first.num_rows
        inferred.estimate_exact = (
            first.num_rows < ARROW_BATCH and fmt == "excel" and sheets == 1 and compression != "zip"
        )
        inferred.estimate_method = "rows of the first block" + (
            "" if inferred.estimate_exact else f" (lower bound{f'; {sheets} sheets' if sheets > 1 else ''})"
        )
    inferred.sample_rows = first.num_rows
    return inferred


# -- warehouse side -----------------------------------------------------------------------------


def table_columns(client: Any, table: str, database: str | None) -> dict[str, str] | None:
    """name -> type of an existing table, or None when it does not exist."""
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "ORDER BY position",
        parameters={"db": database or client.database or "default", "t": table},
    ).result_rows
    return {str(n): str(t) for n, t in rows} if rows else None


def partition_key(client: Any, table: str, database: str | None) -> str:
    rows = client.query(
        "SELECT partition_key FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": database or client.database or "default", "t": table},
    ).result_rows
    return str(rows[0][0]) if rows else ""


def check_target(
    client: Any, inferred: Inferred, table: str, database: str | None, create: bool
) -> dict[str, str] | None:
    """The existing table's columns (after checking the file fits), or None when it will be created."""
    existing = table_columns(client, table, database)
    name = qualified_name(table, database)
    if existing is None:
        if not create:
            raise ImportFailed(
                f"table {name} does not exist and create_table_if_not_exists is false", {"table": table}
            )
        return None
    mismatch = compare_schema(inferred.columns, existing)
    if mismatch:
        raise ImportFailed(
            f"the file does not fit {name}: {mismatch.message(name)}",
            {
                "table": table,
                "missing_columns": mismatch.missing,
                "incompatible_columns": mismatch.incompatible,
            },
        )
    return existing


def _order_key(columns: list[Column]) -> str:
    for column in columns[:3]:
        if not column.nullable and column.type in ("date", "datetime", "integer"):
            return f"({quote_identifier(column.name)}, {SOURCE_LINE})"
    return f"({SOURCE_LINE})"


def create_statement(name: str, columns: list[Column]) -> str:
    body = ", ".join(f"{quote_identifier(c.name)} {c.clickhouse_type()}" for c in columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ({body}, {SOURCE_FILE} String, {SOURCE_LINE} UInt64, "
        f"_loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree "
        f"PARTITION BY {SOURCE_FILE} ORDER BY {_order_key(columns)} "
        f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
    )


def quarantine_statement(name: str) -> str:
    # the same columns as the pipelines' quarantine (movement/engine.py), partitioned by file here
    return (
        f"CREATE TABLE IF NOT EXISTS {name} (load_id String, run_id String, source String, "
        f"row_number UInt64, reason String, raw_row String, rejected_at DateTime DEFAULT now()) "
        f"ENGINE = MergeTree PARTITION BY source ORDER BY (row_number)"
    )


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class _Sink:
    client: Any
    staging: str
    database: str | None
    names: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    written: int = 0

    def add(self, row: list[Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.client.insert(self.staging, self.rows, column_names=self.names, database=self.database)
            self.written += len(self.rows)
            self.rows = []


def import_file(
    storage: Storage,
    path: str,
    client: Any,
    *,
    table: str,
    database: str | None = None,
    create_table: bool = True,
    inferred: Inferred | None = None,
    source_name: str | None = None,
    load_id: str = "",
    run_id: str = "",
    log: Any = None,
) -> ImportResult:
    """Load `path` of the mount into `table`, replacing the rows an earlier load of that file left.

    `source_name` is what `_source_file` holds (default: the path in the mount). Raises ImportFailed;
    the table then has exactly the rows it had.
    """
    started = time.perf_counter()
    source = source_name or path
    name = qualified_name(table, database)
    result = ImportResult(table=name)
    with local_copy(storage, path) as (local, digest):
        result.content_hash = digest
        inferred = inferred or infer_file(storage, path)
        if database:
            client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
        existing = check_target(client, inferred, table, database, create_table)
        if existing is None:
            client.command(create_statement(name, inferred.columns))
            existing = table_columns(client, table, database) or {}
        by_file = partition_key(client, table, database) == SOURCE_FILE and SOURCE_FILE in existing
        result.replaced_by_file = by_file
        engine = "" if by_file else publish.table_engine(client, name)
        if not by_file and load_id:
            # a table without the per-file partition: each load id is published once (publish.py)
            earlier = publish.finish_earlier_attempt(client, name, _import_key(load_id, source), engine)
            if earlier is not None:
                result.rows_loaded, result.path = earlier, "already_published"
                result.seconds = time.perf_counter() - started
                return result
        # load with the table's own types (an existing table may be wider than the sample said)
        load_columns = []
        for column in inferred.columns:
            kind, nullable, scale = kind_of_clickhouse(existing[column.name])
            load_columns.append(Column(column.name, kind, nullable, scale))
        staging_table = f"{table}__import_{uuid.uuid4().hex[:10]}"
        staging = qualified_name(staging_table, database)
        rejected_table = f"{table}__rejected"
        rejected = qualified_name(rejected_table, database)
        rejected_staging_table = f"{rejected_table}__import_{uuid.uuid4().hex[:10]}"
        rejected_staging = qualified_name(rejected_staging_table, database)
        mark = publish.load_table_comment(f"import {staging_table}")
        client.command(f"CREATE TABLE {staging} AS {name} {mark}")
        kept: set[str] = set()  # a load's table once its intent is in the ledger: only publishing removes it
        try:
            client.command(quarantine_statement(rejected))
            client.command(f"CREATE TABLE {rejected_staging} AS {rejected} {mark}")
            names = [c.name for c in load_columns]
            extra = [SOURCE_FILE, SOURCE_LINE] if SOURCE_FILE in existing else []
            sink = _Sink(client, staging_table, database, names + extra)
            quarantine = _Sink(
                client,
                rejected_staging_table,
                database,
                ["load_id", "run_id", "source", "row_number", "reason", "raw_row"],
            )
            # a zipped CSV was inferred from its Arrow reading (infer_file): it loads the same way
            delimited = inferred.format == "csv" and inferred.compression != "zip"
            if delimited:
                rows = _Rows(load_columns, source, sink, quarantine, result, load_id, run_id, bool(extra))
                fast = bool(extra) and _load_delimited_fast(
                    client, local, inferred, existing, staging, rows, log
                )
                result.path = "warehouse_file" if fast else "python"
                if not fast:
                    _load_delimited(local, inferred, rows)
            else:
                _load_typed(
                    local,
                    inferred,
                    load_columns,
                    source,
                    staging_table,
                    database,
                    client,
                    result,
                    bool(extra),
                )
            sink.flush()
            quarantine.flush()
            result.rows_loaded = sink.written if delimited else result.rows_loaded
            result.rows_quarantined = quarantine.written
            # the quarantine first: a failure between the two leaves the file's old rows, never lost ones
            _publish_quarantine(
                client, rejected, rejected_staging, source, partition_key(client, rejected_table, database)
            )
            _publish(client, name, staging, source, by_file, load_id, engine, result, kept)
        finally:
            for leftover in {staging, rejected_staging} - kept:
                with contextlib.suppress(Exception):
                    client.command(f"DROP TABLE IF EXISTS {leftover} SYNC")
    result.seconds = time.perf_counter() - started
    if log is not None:
        log.info(
            f"{source}: {result.rows_loaded} rows into {name}, {result.rows_quarantined} quarantined "
            f"in {rejected} ({result.seconds:.2f} s)"
        )
    return result


def _publish(
    client: Any,
    name: str,
    staging: str,
    source: str,
    by_file: bool,
    load_id: str,
    engine: str,
    result: ImportResult,
    kept: set[str],
) -> None:
    if by_file:
        client.command(f"ALTER TABLE {name} REPLACE PARTITION {_literal(source)} FROM {staging} {EMPTY_OK}")
        return
    # a table without the per-file partition: the rows are moved in, and with a load id (a run) its
    # intent goes to the ledger first, so a retry of the run publishes them once (publish.py)
    if load_id:
        publish.write_intent(client, name, _import_key(load_id, source), staging, result.rows_loaded)
        kept.add(staging)
    publish.move_rows(client, staging, name, engine)


def _import_key(load_id: str, source: str) -> str:
    return "import_" + hashlib.sha256(f"{load_id}:{source}".encode()).hexdigest()[:16]


def _publish_quarantine(client: Any, rejected: str, staging: str, source: str, key: str) -> None:
    if key == "source":
        partition = _literal(source)
        client.command(f"ALTER TABLE {rejected} REPLACE PARTITION {partition} FROM {staging} {EMPTY_OK}")
    else:
        client.command(
            f"ALTER TABLE {rejected} DELETE WHERE source = {_literal(source)} SETTINGS mutations_sync = 2"
        )
        client.command(f"INSERT INTO {rejected} SELECT * FROM {staging}")


@dataclass
class _Rows:
    """Where the records of a delimited file go: converted into staging, or quarantined with the reason."""

    columns: list[Column]
    source: str
    sink: _Sink
    quarantine: _Sink
    result: ImportResult
    load_id: str
    run_id: str
    # the table has the _source_file/_source_line columns (a table of the user's own may not)
    lineage: bool = True

    def __post_init__(self) -> None:
        self.converters = [converter(c) for c in self.columns]

    def take(self, line: int, raw_text: str, fields: list[str]) -> None:
        self.result.rows_read += 1
        width = len(self.columns)
        reason = None
        if fields and fields[0].startswith("\x00"):
            reason = fields[0][1:]
        elif len(fields) != width:
            reason = f"expected {width} fields, found {len(fields)}"
        else:
            try:
                values = [convert(value) for convert, value in zip(self.converters, fields, strict=True)]
            except ValueError as error:
                reason = str(error)
        if reason is None:
            self.sink.add([*values, self.source, line] if self.lineage else values)
            return
        short = reason.split(":", 1)[-1].strip() if reason.startswith("column") else reason
        key = (
            (reason.split(":", 1)[0] + ": " + _generic(short))[:200]
            if reason.startswith("column")
            else reason[:200]
        )
        self.result.reasons[key] = self.result.reasons.get(key, 0) + 1
        self.quarantine.add([self.load_id, self.run_id, self.source, line, reason[:1000], raw_text[:100_000]])


def _load_delimited(local: Path, inferred: Inferred, rows: _Rows) -> None:
    with local.open("rb") as raw:
        stream = _decompressed(raw, inferred.compression, local)
        text = io.TextIOWrapper(stream, encoding=inferred.encoding, errors="strict", newline="")
        records = read_records(_lines_or_reason(text), inferred.delimiter, inferred.quotechar)
        first = True
        for line, raw_text, fields in records:
            if first and inferred.header:
                first = False
                continue
            first = False
            rows.take(line, raw_text, fields)


def _load_delimited_fast(
    client: Any,
    local: Path,
    inferred: Inferred,
    existing: dict[str, str],
    staging: str,
    rows: _Rows,
    log: Any,
) -> bool:
    """The warehouse parses the file (warehouse_csv); False (nothing written) when the Python path must."""
    try:
        warehouse_csv.eligible(local, inferred, rows.columns, existing)
        with ThreadPoolExecutor(1) as pool:
            lines = pool.submit(warehouse_csv.scan, local, inferred)
            loaded = warehouse_csv.load(
                client, local, inferred, rows.columns, rows.source, staging, lines.result
            )
    except warehouse_csv.Fallback as reason:
        if log is not None:
            log.info(f"{rows.source}: parsed in Python ({reason})")
        return False
    # the values SQL left undecided: the Python converters load or quarantine them, as on the Python path
    before = rows.result.rows_read
    for line, raw_text, fields in warehouse_csv.lines_of(local, inferred, loaded.python_lines):
        rows.take(line, raw_text, fields)
    decided_in_python = rows.result.rows_read - before
    rows.result.rows_read = before + loaded.rows_read - len(loaded.python_lines) + decided_in_python
    rows.sink.written += loaded.loaded_in_sql
    if log is not None:
        log.info(
            f"{rows.source}: parsed by the warehouse ({loaded.loaded_in_sql} rows in SQL, "
            f"{len(loaded.python_lines)} decided by the Python converters)"
        )
    return True


def _generic(reason: str) -> str:
    if "not nullable" in reason:
        return "empty value in a non-nullable column"
    if "decimal places" in reason:
        return "too many decimal places"
    return "value does not parse as the column's type"


def _lines_or_reason(text: io.TextIOWrapper) -> Iterator[str]:
    try:
        yield from text
    except UnicodeDecodeError as error:
        raise ImportFailed(
            f"the file is not valid {text.encoding} past its sample (byte {error.start}); nothing was loaded"
        ) from None


def _load_typed(
    local: Path,
    inferred: Inferred,
    columns: list[Column],
    source: str,
    staging_table: str,
    database: str | None,
    client: Any,
    result: ImportResult,
    with_source: bool,
) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]

    from orchestration.connectors.files import ingestable

    wanted = [c.name for c in columns]
    line = 0
    for batch in _typed_batches(local, inferred.format, inferred.compression, inferred.sheet):
        if not batch.num_rows:
            continue
        missing = [n for n in wanted if n not in batch.schema.names]
        if missing:
            raise ImportFailed(
                f"columns missing from a later block or sheet of the file: {', '.join(missing)}"
            )
        table = pa.Table.from_batches([ingestable(batch.select(wanted))])
        if with_source:
            table = table.append_column(SOURCE_FILE, pa.array([source] * batch.num_rows, pa.string()))
            table = table.append_column(
                SOURCE_LINE, pa.array(range(line + 1, line + 1 + batch.num_rows), pa.uint64())
            )
        client.insert_arrow(staging_table, table, database=database)
        line += batch.num_rows
        result.rows_read += batch.num_rows
        result.rows_loaded += batch.num_rows
