"""Source types → ClickHouse types, one function per source family.

The mapping keeps values exact where ClickHouse can (decimals, microsecond timestamps, UUIDs) and
falls back to String for what it cannot represent one-to-one (intervals, arrays as text, JSON).
"""

from __future__ import annotations

import re

import pyarrow as pa  # type: ignore[import-untyped]

_PG_SIMPLE = {
    "smallint": "Int16",
    "integer": "Int32",
    "bigint": "Int64",
    "real": "Float32",
    "double precision": "Float64",
    # unconstrained numeric has no fixed scale: Float64 is the honest fit
    "numeric": "Float64",
    "boolean": "Bool",
    "text": "String",
    "uuid": "UUID",
    "date": "Date32",
    "json": "String",
    "jsonb": "String",
    "bytea": "String",
    "money": "String",
    "oid": "UInt32",
}


def nullable(ch_type: str, is_nullable: bool) -> str:
    return f"Nullable({ch_type})" if is_nullable and not ch_type.startswith("Nullable(") else ch_type


def strip_nullable(ch_type: str) -> str:
    return ch_type[9:-1] if ch_type.startswith("Nullable(") else ch_type


def pg_to_clickhouse(pg_type: str) -> str:
    """`format_type()` text (e.g. `numeric(10,2)`, `timestamp(3) with time zone`) → ClickHouse type."""
    t = pg_type.lower().strip()
    if t.endswith("[]"):
        return "String"
    if t in _PG_SIMPLE:
        return _PG_SIMPLE[t]
    if m := re.match(r"numeric\((\d+),(\d+)\)", t):
        precision, scale = int(m[1]), int(m[2])
        return f"Decimal({precision}, {scale})" if precision <= 76 else "Float64"
    if m := re.match(r"timestamp(?:\((\d)\))? with time zone", t):
        return f"DateTime64({m[1] or 6}, 'UTC')"
    if m := re.match(r"timestamp(?:\((\d)\))?( without time zone)?$", t):
        return f"DateTime64({m[1] or 6})"
    if t.startswith(("character", "varchar", "char", "name", "citext", "inet", "cidr", "xml")):
        return "String"
    return "String"


_MYSQL_INTS = {"tinyint": 8, "smallint": 16, "mediumint": 32, "int": 32, "integer": 32, "bigint": 64}


def mysql_to_clickhouse(column_type: str) -> str:
    """information_schema COLUMN_TYPE (e.g. `int(10) unsigned`, `decimal(12,2)`) → ClickHouse type."""
    t = column_type.lower().strip()
    base = re.match(r"[a-z]+", t)
    name = base[0] if base else t
    if name in _MYSQL_INTS:
        bits = _MYSQL_INTS[name]
        return f"UInt{bits}" if "unsigned" in t else f"Int{bits}"
    if name in ("decimal", "numeric"):
        m = re.match(r"\w+\((\d+)(?:,(\d+))?\)", t)
        precision, scale = (int(m[1]), int(m[2] or 0)) if m else (10, 0)
        return f"Decimal({precision}, {scale})"
    if name == "float":
        return "Float32"
    if name in ("double", "real"):
        return "Float64"
    if name == "date":
        return "Date32"
    if name in ("datetime", "timestamp"):
        m = re.match(r"\w+\((\d)\)", t)
        return f"DateTime64({m[1] if m else 0})"
    if name == "year":
        return "Int16"
    if name == "bit":
        return "UInt64"
    return "String"


def arrow_to_clickhouse(data_type: pa.DataType) -> str:
    """An Arrow type (files, MySQL batches, Python steps) → ClickHouse type, without Nullable."""
    t = data_type
    if pa.types.is_dictionary(t):
        return arrow_to_clickhouse(t.value_type)
    checks: list[tuple[object, str]] = [
        (pa.types.is_boolean, "Bool"),
        (pa.types.is_int8, "Int8"),
        (pa.types.is_int16, "Int16"),
        (pa.types.is_int32, "Int32"),
        (pa.types.is_int64, "Int64"),
        (pa.types.is_uint8, "UInt8"),
        (pa.types.is_uint16, "UInt16"),
        (pa.types.is_uint32, "UInt32"),
        (pa.types.is_uint64, "UInt64"),
        (pa.types.is_float16, "Float32"),
        (pa.types.is_float32, "Float32"),
        (pa.types.is_float64, "Float64"),
        (pa.types.is_date, "Date32"),
    ]
    for check, name in checks:
        if check(t):  # type: ignore[operator]
            return name
    if pa.types.is_decimal(t):
        return f"Decimal({t.precision}, {t.scale})"
    if pa.types.is_timestamp(t):
        digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[t.unit]
        return f"DateTime64({digits}, 'UTC')" if t.tz else f"DateTime64({digits})"
    return "String"


def arrow_ingest_type(data_type: pa.DataType) -> pa.DataType:
    """The Arrow type a column is sent as, matching `arrow_to_clickhouse` (dictionaries decoded, text as
    strings, other exotic types as their string form)."""
    if pa.types.is_dictionary(data_type):
        return arrow_ingest_type(data_type.value_type)
    if arrow_to_clickhouse(data_type) == "String" and not (
        pa.types.is_string(data_type) or pa.types.is_large_string(data_type) or pa.types.is_binary(data_type)
    ):
        return pa.string()
    if pa.types.is_float16(data_type):
        return pa.float32()
    return data_type
