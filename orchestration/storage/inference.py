"""Schema inference from a sample of a file: format, encoding, delimiter, quoting, header, column types.

Pure functions over bytes and strings (no storage, no warehouse), so each rule is tested alone. The
same parsers that decide a column's type convert its values at load time: a value the sample's rules
cannot read is a quarantined row with the reason, never a silently changed one.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

SAMPLE_BYTES = 1024 * 1024
SAMPLE_ROWS = 2000
KINDS = ("integer", "decimal", "float", "date", "datetime", "bool", "string")
TRUE = frozenset({"true", "yes", "y", "t"})
FALSE = frozenset({"false", "no", "n", "f"})
NULLS = frozenset({"", "null", "NULL", "\\N", "NA", "N/A"})

_INT = re.compile(r"^[+-]?(0|[1-9]\d{0,18})$")
_DEC = re.compile(r"^[+-]?\d{1,29}\.(\d{1,9})$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DOT_DATE = re.compile(r"^\d{2}\.\d{2}\.\d{4}$")
_ISO_DT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$")
_DOT_DT = re.compile(r"^\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}(:\d{2})?$")


class InferenceError(ValueError):
    pass


@dataclass
class Column:
    name: str
    type: str  # one of KINDS
    nullable: bool = False
    scale: int = 0  # decimal places (decimal only)

    def clickhouse_type(self) -> str:
        base = {
            "integer": "Int64",
            "decimal": f"Decimal(38, {self.scale})",
            "float": "Float64",
            "date": "Date32",
            "datetime": "DateTime64(3, 'UTC')",
            "bool": "Bool",
            "string": "String",
        }[self.type]
        return f"Nullable({base})" if self.nullable else base


@dataclass
class Inferred:
    """What a sample says about a file; `as_public` is the API's `inferred_schema`."""

    format: str  # csv | jsonl | parquet | excel
    columns: list[Column]
    encoding: str = "utf-8"
    delimiter: str = ","
    quotechar: str = '"'
    header: bool = True
    estimated_rows: int = 0
    estimate_exact: bool = False
    estimate_method: str = ""
    compression: str = "none"
    sheet: str | None = None
    sample_rows: int = 0

    def as_public(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "encoding": self.encoding,
            "delimiter": self.delimiter if self.format == "csv" else None,
            "quotechar": self.quotechar if self.format == "csv" else None,
            "header": self.header,
            "compression": self.compression,
            "sheet": self.sheet,
            "columns": [
                {
                    "name": c.name,
                    "type": c.type,
                    "nullable": c.nullable,
                    "clickhouse_type": c.clickhouse_type(),
                }
                for c in self.columns
            ],
        }

    def to_config(self) -> dict[str, Any]:
        """Plain data for the run config (the run loads with exactly the schema the API answered)."""
        out = asdict(self)
        out["columns"] = [asdict(c) for c in self.columns]
        return out

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> Inferred:
        values = dict(data)
        values["columns"] = [Column(**c) for c in values.get("columns", [])]
        return cls(**values)


def detect_format(name: str) -> tuple[str, str]:
    """(format, compression) from the file name."""
    lower = name.lower()
    compression = "none"
    for suffix, kind in ((".gz", "gzip"), (".gzip", "gzip"), (".zip", "zip")):
        if lower.endswith(suffix):
            lower, compression = lower[: -len(suffix)], kind
            break
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl", compression
    if lower.endswith((".parquet", ".pq")):
        return "parquet", compression
    if lower.endswith((".xlsx", ".xlsm")):
        return "excel", compression
    return "csv", compression  # .csv, .tsv, .txt and anything delimited


def detect_encoding(sample: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 (BOM, or the zero bytes of ASCII text), else cp1251."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = sample[:4096]
    if len(head) >= 4:
        even_zeros = head[0::2].count(0)
        odd_zeros = head[1::2].count(0)
        half = len(head) // 2
        if odd_zeros > half * 0.3 and even_zeros < half * 0.05:
            return "utf-16-le"
        if even_zeros > half * 0.3 and odd_zeros < half * 0.05:
            return "utf-16-be"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)  # a character cut at the sample's end is not an error
        return "utf-8"
    except UnicodeDecodeError:
        return "cp1251"


def sniff_dialect(text: str) -> tuple[str, str]:
    """(delimiter, quotechar) of delimited text."""
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    if not lines:
        return ",", '"'
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
        return dialect.delimiter, dialect.quotechar or '"'
    except csv.Error:
        # the most frequent candidate that every line has the same number of times
        best, best_count = ",", 0
        for candidate in (",", ";", "\t", "|"):
            counts = {line.count(candidate) for line in lines}
            if len(counts) == 1 and (count := counts.pop()) > best_count:
                best, best_count = candidate, count
        return best, '"'


def value_kind(value: str) -> str:
    """The narrowest kind a single non-null value fits."""
    text = value.strip()
    lower = text.lower()
    if lower in TRUE or lower in FALSE:
        return "bool"
    if _INT.match(text):
        return "integer"
    if _DEC.match(text):
        return "decimal"
    if _FLOAT.match(text):
        return "float"
    if _ISO_DATE.match(text) or _DOT_DATE.match(text):
        try:
            parse_date(text)
            return "date"
        except ValueError:
            return "string"
    if _ISO_DT.match(text) or _DOT_DT.match(text):
        try:
            parse_datetime(text)
            return "datetime"
        except ValueError:
            return "string"
    return "string"


def merge_kinds(a: str | None, b: str) -> str:
    if a is None or a == b:
        return b
    numeric = ("integer", "decimal", "float")
    if a in numeric and b in numeric:
        return numeric[max(numeric.index(a), numeric.index(b))]
    if {a, b} == {"date", "datetime"}:
        return "datetime"
    return "string"


def infer_columns(names: list[str], rows: Iterable[list[str]]) -> list[Column]:
    kinds: list[str | None] = [None] * len(names)
    nullable = [False] * len(names)
    scales = [0] * len(names)
    for row in rows:
        for index in range(len(names)):
            value = row[index] if index < len(row) else ""
            if value.strip() in NULLS:
                nullable[index] = True
                continue
            kind = value_kind(value)
            kinds[index] = merge_kinds(kinds[index], kind)
            if kind == "decimal":
                scales[index] = max(scales[index], len(value.strip().split(".")[1]))
    return [
        Column(
            name,
            kinds[i] or "string",
            nullable[i] or kinds[i] is None,
            scales[i] if kinds[i] == "decimal" else 0,
        )
        for i, name in enumerate(names)
    ]


def clean_names(raw: list[str]) -> list[str]:
    """Header cells as column names: trimmed, control characters gone, empty and repeated ones numbered."""
    out: list[str] = []
    seen: set[str] = set()
    for index, cell in enumerate(raw):
        name = re.sub(r"[\x00-\x1f`]", "", cell).strip()[:128] or f"column_{index + 1}"
        if name.startswith("_source_"):
            name = "src" + name
        base, suffix = name, 2
        while name.lower() in seen:
            name, suffix = f"{base}_{suffix}", suffix + 1
        seen.add(name.lower())
        out.append(name)
    return out


def looks_like_header(first: list[str], rest: list[list[str]]) -> bool:
    """A first row of text cells over data whose columns are not all text, or of distinct names."""
    if not first or any(c.strip() == "" for c in first):
        return False
    if any(value_kind(c) != "string" for c in first):
        return False
    if rest:
        data_kinds = infer_columns([str(i) for i in range(len(first))], rest)
        if any(c.type != "string" for c in data_kinds):
            return True
    return len({c.strip().lower() for c in first}) == len(first)


def infer_delimited(sample: bytes, total_size: int | None, whole: bool) -> Inferred:
    """Inference for CSV/TSV text from its first bytes; `whole` when the sample is the entire file."""
    encoding = detect_encoding(sample)
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=whole)
    if not whole:
        text = text[: text.rfind("\n") + 1] or text  # the last, probably cut, line is left out
    delimiter, quotechar = sniff_dialect(text)
    records = list(_records(text, delimiter, quotechar, limit=SAMPLE_ROWS + 1))
    if not records:
        raise InferenceError("the file has no rows")
    rows = [fields for _, _, fields in records]
    header = looks_like_header(rows[0], rows[1:])
    width = max(len(r) for r in rows[:50])
    names = (
        clean_names(rows[0] + [""] * (width - len(rows[0])))
        if header
        else [f"column_{i + 1}" for i in range(width)]
    )
    data = rows[1:] if header else rows
    columns = infer_columns(names, data)
    inferred = Inferred(
        "csv", columns, encoding=encoding, delimiter=delimiter, quotechar=quotechar, header=header
    )
    inferred.sample_rows = len(data)
    if whole and len(records) <= SAMPLE_ROWS:
        inferred.estimated_rows, inferred.estimate_exact, inferred.estimate_method = (
            len(data),
            True,
            "counted",
        )
    else:
        sampled_bytes = len(text.encode(encoding.replace("-sig", ""), errors="replace"))
        per_row = sampled_bytes / max(len(records), 1)
        estimate = int((total_size or sampled_bytes) / max(per_row, 1)) - (1 if header else 0)
        inferred.estimated_rows = max(estimate, len(data))
        inferred.estimate_method = "file size / average row size of the sample"
    return inferred


def _records(
    text: str, delimiter: str, quotechar: str, limit: int | None = None
) -> Iterator[tuple[int, str, list[str]]]:
    yield from read_records(io.StringIO(text, newline=""), delimiter, quotechar, limit)


def read_records(
    handle: Iterable[str], delimiter: str, quotechar: str, limit: int | None = None
) -> Iterator[tuple[int, str, list[str]]]:
    """(line where the record starts, its raw text, its fields) per record; blank lines skipped."""
    captured: list[str] = []
    state = {"line": 0}

    def lines() -> Iterator[str]:
        for line in handle:
            state["line"] += 1
            captured.append(line)
            yield line

    reader = csv.reader(lines(), delimiter=delimiter, quotechar=quotechar, strict=False)
    count = 0
    while True:
        start = state["line"] + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raw = "".join(captured)
            captured.clear()
            yield start, raw, [f"\x00csv error: {error}"]
            continue
        raw = "".join(captured).rstrip("\r\n")
        captured.clear()
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        yield start, raw, fields
        count += 1
        if limit is not None and count >= limit:
            return


# -- value parsers (also used at load time) ---------------------------------------------------------


def parse_date(text: str) -> date:
    text = text.strip()
    if _DOT_DATE.match(text):
        return datetime.strptime(text, "%d.%m.%Y").date()
    return date.fromisoformat(text)


def parse_datetime(text: str) -> datetime:
    from datetime import UTC

    text = text.strip()
    if _DOT_DT.match(text):
        fmt = "%d.%m.%Y %H:%M:%S" if text.count(":") == 2 else "%d.%m.%Y %H:%M"
        return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    if _DOT_DATE.match(text) or _ISO_DATE.match(text):
        day = parse_date(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_bool(text: str) -> bool:
    lower = text.strip().lower()
    if lower in TRUE or lower == "1":
        return True
    if lower in FALSE or lower == "0":
        return False
    raise ValueError(f"{text!r} is not a boolean")


def _parse_int(text: str) -> int:
    value = int(text.strip())
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{text!r} does not fit a 64-bit integer")
    return value


def _parse_decimal(scale: int) -> Callable[[str], Decimal]:
    def parse(text: str) -> Decimal:
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            raise ValueError(f"{text!r} is not a decimal number") from None
        if not value.is_finite() or value != value.quantize(Decimal(1).scaleb(-scale)):
            raise ValueError(f"{text!r} has more than {scale} decimal places")
        return value

    return parse


def _parse_float(text: str) -> float:
    return float(text.strip())


def converter(column: Column) -> Callable[[str], Any]:
    """str -> the column's Python value; ValueError with the reason for a value that does not fit."""
    parse: Callable[[str], Any] = {
        "integer": _parse_int,
        "decimal": _parse_decimal(column.scale),
        "float": _parse_float,
        "date": parse_date,
        "datetime": parse_datetime,
        "bool": _parse_bool,
        "string": lambda text: text,
    }[column.type]

    def convert(text: str) -> Any:
        if column.type != "string" and text.strip() in NULLS or column.type == "string" and text == "":
            if column.nullable:
                return None
            if column.type == "string":
                return ""
            raise ValueError(f"column {column.name!r}: empty value, the column is not nullable")
        try:
            return parse(text)
        except ValueError as error:
            reason = str(error) if str(error).startswith("'") else f"{text[:100]!r} is not {column.type}"
            raise ValueError(f"column {column.name!r}: {reason}") from None

    return convert


def kind_of_clickhouse(ch_type: str) -> tuple[str, bool, int]:
    """(kind, nullable, scale) of a warehouse column type, for loading into an existing table."""
    nullable = ch_type.startswith("Nullable(")
    inner = ch_type[len("Nullable(") : -1] if nullable else ch_type
    if inner.startswith("LowCardinality("):
        inner = inner[len("LowCardinality(") : -1]
        if inner.startswith("Nullable("):
            nullable, inner = True, inner[len("Nullable(") : -1]
    if re.match(r"^U?Int\d+$", inner):
        return "integer", nullable, 0
    if inner.startswith("Decimal"):
        numbers = re.findall(r"\d+", inner)
        return "decimal", nullable, int(numbers[-1]) if len(numbers) >= 2 else 0
    if inner.startswith("Float"):
        return "float", nullable, 0
    if inner in ("Date", "Date32"):
        return "date", nullable, 0
    if inner.startswith("DateTime"):
        return "datetime", nullable, 0
    if inner == "Bool":
        return "bool", nullable, 0
    return "string", nullable, 0


# what an existing column of kind K accepts from a file column of kind F
COMPATIBLE: dict[str, frozenset[str]] = {
    "integer": frozenset({"integer", "bool"}),
    "decimal": frozenset({"integer", "decimal"}),
    "float": frozenset({"integer", "decimal", "float"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date", "datetime"}),
    "bool": frozenset({"bool"}),
    "string": frozenset(KINDS),
}


@dataclass
class SchemaMismatch:
    missing: list[str] = field(default_factory=list)  # in the file, not in the table
    incompatible: list[dict[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.incompatible)

    def message(self, table: str) -> str:
        parts = []
        if self.missing:
            parts.append(f"columns not in {table}: {', '.join(self.missing)}")
        if self.incompatible:
            parts.append(
                "types that do not fit: "
                + ", ".join(
                    f"{c['column']} ({c['file_type']} into {c['table_type']})" for c in self.incompatible
                )
            )
        return "; ".join(parts)


def compare_schema(columns: list[Column], table_columns: dict[str, str]) -> SchemaMismatch:
    mismatch = SchemaMismatch()
    for column in columns:
        existing = table_columns.get(column.name)
        if existing is None:
            mismatch.missing.append(column.name)
            continue
        kind, _, _ = kind_of_clickhouse(existing)
        # text in the sample may be a few bad values: those rows are quarantined, not the file refused
        if column.type != "string" and column.type not in COMPATIBLE[kind]:
            mismatch.incompatible.append(
                {"column": column.name, "file_type": column.type, "table_type": existing}
            )
    return mismatch
