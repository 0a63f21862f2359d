"""The fast path of a CSV/TSV import: the warehouse parses a local file itself with file().

The Python path (importer._load_delimited) parses and converts every row in Python; for a large
local file the warehouse does the same work ~50× faster. The semantics stay those of the Python
path, exactly:

- the warehouse reads every column as String (CSV format with the file's delimiter and `"` quotes,
  no whitespace trimming, no NULL marker, the header record skipped);
- a row goes to staging in SQL only when every value passes a strict check whose SQL cast is known
  to give what `inference.converter` gives (plain integers, fixed-point decimals within the scale,
  plain decimal floats, ISO / DD.MM.YYYY dates, whole-second datetimes, the boolean words, the NULL
  markers of nullable columns); anything else — an odd but valid value, or a bad one — is handed to
  the Python converters by its line number, which load it or quarantine it with their reason;
- `_source_line` is the line the record starts on: the path is only taken when every record is one
  physical line (checked by counting the file's lines against the warehouse's records), so it is the
  record's `_row_number` + 1 (the file is read as headerless CSV, the header being record 0);
- anything the two parsers might read differently (a lone CR, NUL bytes, a quote followed by
  blanks, bytes that are not UTF-8, multi-line records, a ragged row, blank lines) sends the whole
  file to the Python path instead (`Fallback`), with the reason in the run's log.
"""

from __future__ import annotations

import codecs
import gzip
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.lib.sql import quote_identifier, string_literal
from orchestration.storage.inference import NULLS, Column, Inferred, read_records

CHUNK = 4 * 1024 * 1024
# a field longer than this may hit the csv module's field size limit (131072): those rows go to Python
MAX_FIELD = 100_000
# the warehouse column types this path writes (those create_statement makes), by kind
CANONICAL = {
    "integer": ("Int64",),
    "decimal": ("Decimal(38, {scale})",),
    "float": ("Float64",),
    "date": ("Date32",),
    "datetime": ("DateTime64(3, 'UTC')",),
    "bool": ("Bool",),
    "string": ("String",),
}
# never a value in a file: the warehouse must not turn `\N` (or anything else) into NULL
NO_NULL_MARKER = "\\x01aetl-no-null\\x01"


class Fallback(Exception):
    """The file goes through the Python path; the message says why (for the run's log)."""


@dataclass
class FastLoad:
    rows_read: int  # records in the file (without the header)
    loaded_in_sql: int
    python_lines: list[int]  # lines whose values the Python converters decide


def eligible(local: Path, inferred: Inferred, columns: list[Column], existing: dict[str, str]) -> None:
    """Raise Fallback unless this file and table can take the fast path."""
    from orchestration.connectors.config import warehouse_file_roots

    if inferred.format != "csv" or inferred.compression not in ("none", "gzip"):
        raise Fallback(f"format {inferred.format}/{inferred.compression}")
    if inferred.encoding not in ("utf-8", "utf-8-sig"):
        raise Fallback(f"encoding {inferred.encoding}")
    if inferred.quotechar != '"' or inferred.delimiter not in (",", ";", "\t", "|"):
        raise Fallback(f"dialect {inferred.delimiter!r} / {inferred.quotechar!r}")
    if inferred.encoding == "utf-8-sig" and not inferred.header:
        raise Fallback("a byte-order mark before the first data row")  # the warehouse keeps it in the value
    if len(columns) < 2:
        # one column: the csv module skips blank lines as records, the warehouse reads them as ''
        raise Fallback("a single column")
    if "_source_file" not in existing or "_source_line" not in existing:
        raise Fallback("the table has no _source_file/_source_line")
    for column in columns:
        wanted = CANONICAL[column.type][0].format(scale=column.scale)
        actual = existing[column.name]
        if actual not in (wanted, f"Nullable({wanted})"):
            raise Fallback(f"column {column.name} is {actual}")
    real = local.resolve()
    if any(c in str(real) for c in "{}*?[]'\\"):
        raise Fallback("the path has characters the warehouse's file() refuses")
    if not any(real == root or root in real.parents for root in warehouse_file_roots()):
        raise Fallback("the file is outside the folders the warehouse may read")


def _open_bytes(local: Path, compression: str) -> Any:
    raw = local.open("rb")
    return gzip.GzipFile(fileobj=raw) if compression == "gzip" else raw


def scan(local: Path, inferred: Inferred) -> int:
    """The number of lines of the (decompressed) file; Fallback when the parsers could read it apart."""
    delimiter = re.escape(inferred.delimiter.encode())
    # a closing quote followed by blanks: the csv module keeps the blanks, the warehouse drops them
    blanks_after_quote = re.compile(
        rb'" +(?=[\t\r\n]|\Z)' if inferred.delimiter == "\t" else rb'"[ \t]+(?=[' + delimiter + rb"\r\n]|\Z)"
    )
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    last = b""
    carry = b""
    with _open_bytes(local, inferred.compression) as stream:
        while True:
            chunk = stream.read(CHUNK)
            data = carry + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            if data:
                try:
                    decoder.decode(data, final=not chunk)
                except UnicodeDecodeError:
                    raise Fallback("bytes that are not UTF-8") from None
                if b"\x00" in data:
                    raise Fallback("NUL bytes")
                if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
                    raise Fallback("a CR that does not end a line")
                if b'"' in data and blanks_after_quote.search(data):
                    raise Fallback("a closing quote followed by blanks")
                lines += data.count(b"\n")
                last = data[-1:]
            if not chunk:
                break
    if last and last != b"\n":
        lines += 1
    return lines


def _text(local: Path, inferred: Inferred) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        _open_bytes(local, inferred.compression), encoding=inferred.encoding, errors="strict", newline=""
    )


def _is_null(value: str) -> str:
    return f"{value} IN ({', '.join(string_literal(n) for n in sorted(NULLS))})"


def _parse(column: Column, v: str) -> tuple[str, str]:
    """(SQL: the value passes the strict check, SQL: its value) for a non-null value `v` of a typed column."""
    kind = column.type
    if kind == "integer":
        return f"match({v}, '^-?[0-9]{{1,18}}$')", f"toInt64OrZero({v})"
    if kind == "decimal":
        scale = column.scale
        whole = min(27, 38 - scale)
        fraction = f"(\\\\.[0-9]{{1,{scale}}})?" if scale else ""
        return (
            f"match({v}, '^-?[0-9]{{1,{whole}}}{fraction}$')",
            f"toDecimal128OrZero({v}, {scale})",
        )
    if kind == "float":
        # plain decimal notation only; the warehouse is told to parse floats exactly (precise_float_parsing)
        return f"match({v}, '^-?[0-9]{{1,17}}(\\\\.[0-9]{{1,17}})?$')", f"toFloat64OrZero({v})"
    if kind == "date":
        iso = (
            f"if(match({v}, '^[0-9]{{2}}\\\\.[0-9]{{2}}\\\\.[0-9]{{4}}$'), "
            f"concat(substring({v}, 7, 4), '-', substring({v}, 4, 2), '-', substring({v}, 1, 2)), {v})"
        )
        value = f"toDate32OrZero({iso})"
        # a day that does not exist, or one outside Date32, comes back different: Python decides
        return f"(match({iso}, '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$') AND toString({value}) = {iso})", value
    if kind == "datetime":
        plain = (
            f"multiIf(match({v}, '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}$'), "
            f"replaceOne({v}, 'T', ' '), match({v}, '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$'), "
            f"concat({v}, ' 00:00:00'), '')"
        )
        value = f"toDateTime64OrZero({plain}, 3, 'UTC')"
        return (
            f"({plain} != '' AND toYear({value}) BETWEEN 1900 AND 2261 "
            f"AND formatDateTime({value}, '%Y-%m-%d %H:%i:%S', 'UTC') = {plain})",
            value,
        )
    if kind == "bool":
        true = "('true', 'yes', 'y', 't', '1')"
        false = "('false', 'no', 'n', 'f', '0')"
        return f"(lower({v}) IN {true} OR lower({v}) IN {false})", f"toBool(lower({v}) IN {true})"
    raise ValueError(kind)


def column_sql(column: Column, v: str) -> tuple[str, str]:
    """(SQL: the row's value for this column is decided in SQL, SQL: the value) for field `v`."""
    if column.type == "string":
        if column.nullable:
            return "1", f"if({v} = '', NULL, {v})"
        return "1", v
    ok, value = _parse(column, v)
    if column.nullable:
        return f"({_is_null(v)} OR {ok})", f"if({_is_null(v)}, NULL, {value})"
    return f"(NOT {_is_null(v)} AND {ok})", value


def _relation(local: Path, inferred: Inferred, width: int) -> str:
    structure = ", ".join(f"c{i} String" for i in range(width))
    compression = "gzip" if inferred.compression == "gzip" else "none"
    return (
        f"file({string_literal(str(local.resolve()))}, 'CSV', {string_literal(structure)}, '{compression}')"
    )


def _settings(delimiter: str) -> str:
    return (
        f"SETTINGS format_csv_delimiter = {string_literal(delimiter)}, "
        "format_csv_allow_double_quotes = 1, format_csv_allow_single_quotes = 0, "
        "input_format_csv_trim_whitespaces = 0, input_format_csv_empty_as_default = 0, "
        f"format_csv_null_representation = '{NO_NULL_MARKER}', "
        "input_format_with_names_use_header = 0, input_format_csv_detect_header = 0, "
        "input_format_csv_skip_first_lines = 0, input_format_csv_allow_variable_number_of_columns = 0, "
        "input_format_csv_skip_trailing_empty_lines = 0, input_format_csv_allow_cr_end_of_line = 0, "
        "input_format_csv_use_default_on_bad_values = 0, input_format_allow_errors_num = 0, "
        "input_format_allow_errors_ratio = 0, precise_float_parsing = 1, "
        # read with pread, not mmap (chDB's default): a mapped file of gigabytes counts in the RSS
        "storage_file_read_method = 'pread'"
    )


def load(
    client: Any,
    local: Path,
    inferred: Inferred,
    columns: list[Column],
    source: str,
    staging: str,
    count_lines: Callable[[], int],
) -> FastLoad:
    """Rows whose values are decided in SQL go into `staging`; the lines left for Python are returned.

    The file is read as headerless CSV: record n (from 0, the header included) is `_row_number` n, so
    when the file has as many records as lines, record n starts on line n + 1. (With a header format,
    chDB 26.9's `_row_number` is off by one after the first chunk of its parallel parser.)
    `count_lines` gives the file's lines (`scan`, run meanwhile in a thread: it reads the file while the
    warehouse parses it). Raises Fallback (staging emptied) when the warehouse cannot read the file as
    the Python path would.
    """
    width = len(columns)
    checks, values = [], []
    for index, column in enumerate(columns):
        ok, value = column_sql(column, f"c{index}")
        checks.append(ok)
        values.append(value)
    short = " AND ".join(f"length(c{i}) <= {MAX_FIELD}" for i in range(width))
    decided = f"({short} AND {' AND '.join(checks)})"
    relation = _relation(local, inferred, width)
    settings = _settings(inferred.delimiter)
    skip = 1 if inferred.header else 0
    names = ", ".join(quote_identifier(c.name) for c in columns)
    try:
        client.command(
            f"INSERT INTO {staging} ({names}, _source_file, _source_line) "
            f"SELECT {', '.join(values)}, {string_literal(source)}, _row_number + 1 "
            f"FROM {relation} WHERE _row_number >= {skip} AND {decided} {settings}"
        )
        loaded = int(client.command(f"SELECT count() FROM {staging}"))
        lines = count_lines()
        if loaded == lines - skip:
            return FastLoad(loaded, loaded, [])
        multiline = " OR ".join(f"position(c{i}, '\\n') > 0" for i in range(width))
        rows = client.query(
            f"SELECT count(), countIf({multiline}), "
            f"groupArrayIf(_row_number, _row_number >= {skip} AND NOT {decided}) "
            f"FROM {relation} {settings}"
        ).result_rows
    except Fallback:
        _empty(client, staging)
        raise
    except Exception as error:  # noqa: BLE001 - a file the warehouse cannot read goes through Python
        _empty(client, staging)
        text = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise Fallback(f"the warehouse could not read it: {text}") from None
    total, multiline_rows, left = int(rows[0][0]), int(rows[0][1]), sorted(int(n) for n in rows[0][2])
    if multiline_rows or total != lines:
        _empty(client, staging)
        raise Fallback(f"records over several lines or blank lines ({total} records, {lines} lines)")
    return FastLoad(total - skip, loaded, [n + 1 for n in left])


def _empty(client: Any, staging: str) -> None:
    client.command(f"TRUNCATE TABLE {staging}")


def lines_of(local: Path, inferred: Inferred, wanted: list[int]) -> Iterator[tuple[int, str, list[str]]]:
    """(line, raw text, fields) of the given physical lines, parsed by the Python path's reader."""
    targets = iter(wanted)
    target = next(targets, None)
    if target is None:
        return
    with _text(local, inferred) as text:
        for number, line in enumerate(text, start=1):
            if number != target:
                continue
            for _, raw, fields in read_records([line], inferred.delimiter, inferred.quotechar):
                yield number, raw, fields
            target = next(targets, None)
            if target is None:
                return
