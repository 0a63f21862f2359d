"""File connectors (CSV, TSV, JSON lines, Parquet, Excel; each optionally gzip-compressed).

Files live under the configured roots (AETL_FILE_ROOTS). Two ways to read them:
- the warehouse reads the file itself (`file()` table function): the fastest, used for CSV, TSV,
  JSON lines and Parquet when the warehouse runs on this machine and may read that folder;
- pyarrow streaming (CSV/TSV/JSON lines by blocks, Parquet by row groups) and openpyxl's read-only
  mode for Excel: record batches of bounded size, inserted batch by batch.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.json as pa_json  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from orchestration.connectors.base import (
    FILE_NAME_PATTERN,
    ColumnInfo,
    ConnectorFailure,
    InvalidTableName,
    TableRef,
    TableSchema,
    TestReport,
)
from orchestration.connectors.config import (
    ConnectorConfigError,
    FileConfig,
    expand_files,
    resolve_file_path,
    warehouse_file_roots,
)
from orchestration.connectors.types import arrow_ingest_type, arrow_to_clickhouse, nullable

BLOCK_BYTES = 16 * 1024 * 1024
BATCH_ROWS = 65_536
EXTENSIONS = {
    "csv": (".csv",),
    "tsv": (".tsv", ".tab", ".txt"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "parquet": (".parquet", ".pq"),
    "excel": (".xlsx", ".xlsm"),
}
WAREHOUSE_FORMATS = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSONEachRow", "parquet": "Parquet"}


def is_gzip(config: FileConfig, path: Path) -> bool:
    if config.compression == "auto":
        return path.name.lower().endswith(".gz")
    return config.compression == "gzip"


def _check_name(name: str) -> None:
    if not FILE_NAME_PATTERN.match(name or "") or ".." in name.split("/"):
        raise InvalidTableName("file name may use letters, digits, _ . - / and glob characters, and no '..'")


def _paths(config: FileConfig, name: str) -> list[Path]:
    _check_name(name)
    try:
        files = expand_files(config, name)
    except ConnectorConfigError as error:
        raise ConnectorFailure("path", error.message, step="path") from None
    if not files:
        raise ConnectorFailure(
            "table_missing", f"no file matches {name!r} under the connector's folder", step="path"
        )
    return files


def test_connection(config: FileConfig) -> TestReport:
    started = time.monotonic()
    try:
        folder = resolve_file_path(config)
    except ConnectorConfigError as error:
        raise ConnectorFailure("path", error.message, step="path") from None
    if not folder.exists():
        raise ConnectorFailure(
            "path", f"{config.path or 'the root folder'} does not exist under the file roots", step="path"
        )
    readable = os.access(folder, os.R_OK)
    if not readable:
        raise ConnectorFailure("path", f"{config.path or 'the root folder'} is not readable", step="path")
    count = len(list_tables(config)) if folder.is_dir() else 1
    details = {
        "path_inside_roots": True,
        "path_exists": True,
        "readable": True,
        "files_found": count,
        "query_execution_successful": True,
    }
    return TestReport((time.monotonic() - started) * 1000, details, None)


def list_tables(config: FileConfig) -> list[TableRef]:
    try:
        folder = resolve_file_path(config)
    except ConnectorConfigError as error:
        raise ConnectorFailure("path", error.message, step="path") from None
    if folder.is_file():
        return [TableRef(folder.name, None, "file")]
    suffixes = EXTENSIONS[config.type]
    out = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        name = path.name.lower().removesuffix(".gz")
        if path.is_file() and name.endswith(suffixes):
            out.append(TableRef(str(path.relative_to(folder)), None, "file"))
        if len(out) >= 1000:
            break
    return out


@contextmanager
def _seekable(config: FileConfig, path: Path) -> Iterator[Path]:
    """Parquet and xlsx need random access: a gzip-compressed one is unpacked to a temporary file."""
    if not is_gzip(config, path):
        yield path
        return
    with tempfile.NamedTemporaryFile(suffix=path.suffix, delete=False) as tmp, gzip.open(path, "rb") as src:
        shutil.copyfileobj(src, tmp, 1024 * 1024)
    try:
        yield Path(tmp.name)
    finally:
        os.unlink(tmp.name)


def _stream(config: FileConfig, path: Path) -> Any:
    return pa.input_stream(str(path), compression="gzip" if is_gzip(config, path) else None)


def record_batches(config: FileConfig, path: Path) -> Iterator[pa.RecordBatch]:
    """The file's rows as Arrow batches of bounded size (types fixed by the first block)."""
    kind = config.type
    if kind in ("csv", "tsv"):
        delimiter = config.delimiter or ("\t" if kind == "tsv" else ",")
        reader = pa_csv.open_csv(
            _stream(config, path),
            read_options=pa_csv.ReadOptions(
                block_size=BLOCK_BYTES, autogenerate_column_names=not config.header
            ),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
        )
        yield from reader
    elif kind == "jsonl":
        yield from pa_json.open_json(
            _stream(config, path), read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES)
        )
    elif kind == "parquet":
        with _seekable(config, path) as local:
            yield from pq.ParquetFile(str(local)).iter_batches(batch_size=BATCH_ROWS)
    else:
        yield from _excel_batches(config, path)


def excel_sheet_names(config: FileConfig, path: Path) -> list[str]:
    """The workbook's sheets, in order."""
    import openpyxl

    with _seekable(config, path) as local:
        book = openpyxl.load_workbook(str(local), read_only=True)
        try:
            return list(book.sheetnames)
        finally:
            book.close()


def _excel_batches(config: FileConfig, path: Path) -> Iterator[pa.RecordBatch]:
    import openpyxl

    with _seekable(config, path) as local:
        book = openpyxl.load_workbook(str(local), read_only=True, data_only=True)
        try:
            sheet = book[config.sheet] if config.sheet else book.worksheets[0]
            rows = sheet.iter_rows(values_only=True)
            first = next(rows, None)
            if first is None:
                return
            if config.header:
                names = [str(v) if v is not None else f"column_{i + 1}" for i, v in enumerate(first)]
                pending: list[tuple[Any, ...]] = []
            else:
                names = [f"column_{i + 1}" for i in range(len(first))]
                pending = [tuple(first)]
            schema: pa.Schema | None = None
            for row in rows:
                pending.append(tuple(row))
                if len(pending) >= BATCH_ROWS:
                    batch, schema = _excel_batch(pending, names, schema)
                    yield batch
                    pending = []
            if pending or schema is None:
                batch, schema = _excel_batch(pending, names, schema)
                yield batch
        finally:
            book.close()


def _excel_batch(
    rows: list[tuple[Any, ...]], names: list[str], schema: pa.Schema | None
) -> tuple[pa.RecordBatch, pa.Schema]:
    width = len(names)
    columns = [[(r[i] if i < len(r) else None) for r in rows] for i in range(width)]
    arrays = []
    for index, values in enumerate(columns):
        wanted = schema.field(index).type if schema is not None else None
        try:
            array = pa.array(values, type=wanted) if wanted is not None else pa.array(values)
            if pa.types.is_null(array.type):
                array = array.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # a column of mixed cell types: keep what the cells say, as text
            array = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        if wanted is not None and array.type != wanted:
            array = pa.array([None if v is None else str(v) for v in values], type=pa.string())
            if wanted != pa.string():
                raise ConnectorFailure(
                    "query",
                    f"column {names[index]!r} changes type after the first {BATCH_ROWS} rows",
                    step="query",
                )
        arrays.append(array)
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    return batch, schema or batch.schema


def ingestable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch with the column types the warehouse takes (see types.arrow_ingest_type)."""
    schema = pa.schema([(f.name, arrow_ingest_type(f.type)) for f in batch.schema])
    if schema == batch.schema:
        return batch
    return pa.RecordBatch.from_arrays(
        [col.cast(f.type) if not pa.types.is_dictionary(col.type) else col.dictionary_decode().cast(f.type)
         for col, f in zip(batch.columns, schema, strict=True)],
        schema=schema,
    )  # fmt: skip


def describe_table(config: FileConfig, name: str) -> TableSchema:
    paths = _paths(config, name)
    first = paths[0]
    batches = record_batches(config, first)
    try:
        sample = next(batches)
    except StopIteration:
        raise ConnectorFailure("query", f"{name} has no rows", step="query") from None
    except (pa.ArrowInvalid, OSError) as error:
        raise ConnectorFailure(
            "query", f"{name} cannot be read as {config.type}: {str(error)[:300]}", step="query"
        ) from None
    finally:
        close = getattr(batches, "close", None)
        if close:
            close()
    columns = [
        ColumnInfo(f.name, str(f.type), nullable(arrow_to_clickhouse(f.type), True)) for f in sample.schema
    ]
    if config.type == "parquet" and not is_gzip(config, first):
        rows, exact, method = (
            sum(pq.ParquetFile(str(p)).metadata.num_rows for p in paths),
            True,
            "parquet footer",
        )
    elif sample.num_rows and sample.nbytes:
        size = sum(p.stat().st_size for p in paths)
        sampled = sample.num_rows
        # bytes per row of the sampled block, scaled to the files' sizes (compressed files: a lower bound)
        share = min(1.0, BLOCK_BYTES / max(first.stat().st_size, 1))
        per_row = first.stat().st_size * share / max(sampled, 1)
        rows = sampled if share >= 1.0 and len(paths) == 1 else int(size / max(per_row, 1))
        exact = share >= 1.0 and len(paths) == 1 and config.type != "excel"
        method = "counted (whole file read)" if exact else "estimated from file size and a sampled block"
        if config.type == "excel":
            rows, exact, method = (
                sampled,
                share >= 1.0 and len(paths) == 1 and sampled < BATCH_ROWS,
                "rows of the sheet",
            )
    else:
        rows, exact, method = 0, True, "empty"
    return TableSchema(name, columns, [], [], rows, exact, method)


def warehouse_is_local(url: str) -> bool:
    """A warehouse on this machine's loopback (the embedded one) can read the folders it is allowed."""
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def warehouse_file_relation(
    config: FileConfig, paths: list[Path], structure: str | None = None, *, warehouse_url: str
) -> str | None:
    """`file(...)` for the warehouse to read these files itself, or None when it cannot.

    The one place that decides (and writes) how the warehouse reads a file: it must run on this
    machine and the files must be under the roots its file() guard allows.
    """
    fmt = WAREHOUSE_FORMATS.get(config.type)
    if fmt is None or not warehouse_is_local(warehouse_url):
        return None
    if config.type in ("csv", "tsv"):
        fmt += "WithNames" if config.header else ""
        if config.type == "csv" and config.delimiter not in (None, ","):
            return None
        if config.type == "tsv" and config.delimiter not in (None, "\t"):
            return None
    roots = warehouse_file_roots()
    if not all(any(r == p or r in p.parents for r in roots) for p in paths):
        return None
    compression = "gzip" if is_gzip(config, paths[0]) else "none"
    if len({is_gzip(config, p) for p in paths}) > 1:
        return None
    if any(c in str(p) for p in paths for c in "{}*?[]'\\"):
        return None  # the warehouse's guard takes literal paths only, no globs
    columns = (structure or "auto").replace("\\", "\\\\").replace("'", "\\'")
    calls = [f"file('{p}', '{fmt}', '{columns}', '{compression}')" for p in paths]
    if len(calls) == 1:
        return calls[0]
    # one statement reads them all (the guard refuses path globs, so no {a,b} alternatives)
    return "(" + " UNION ALL ".join(f"SELECT * FROM {call}" for call in calls) + ")"


def resolve_source_files(config: FileConfig, name: str) -> list[Path]:
    return _paths(config, name)
