"""The calendar dimension: a pure Arrow builder and its ClickHouse DDL (tested without Dagster)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa  # type: ignore[import-untyped]

from orchestration.lib.sql import quote_identifier

CALENDAR_SCHEMA = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("year", pa.uint16(), nullable=False),
        pa.field("quarter", pa.uint8(), nullable=False),
        pa.field("month", pa.uint8(), nullable=False),
        pa.field("day", pa.uint8(), nullable=False),
        pa.field("iso_week", pa.uint8(), nullable=False),
        pa.field("day_of_week", pa.uint8(), nullable=False),
        pa.field("is_weekend", pa.bool_(), nullable=False),
    ]
)


def build_calendar_days(start: dt.date, end: dt.date) -> pa.Table:
    """One row per day in [start, end] (ISO weeks, Monday = 1)."""
    if end < start:
        raise ValueError(f"calendar end {end} is before start {start}")
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    columns = {
        "date": days,
        "year": [d.year for d in days],
        "quarter": [(d.month - 1) // 3 + 1 for d in days],
        "month": [d.month for d in days],
        "day": [d.day for d in days],
        "iso_week": [d.isocalendar().week for d in days],
        "day_of_week": [d.isoweekday() for d in days],
        "is_weekend": [d.isoweekday() >= 6 for d in days],
    }
    return pa.Table.from_pydict(columns, schema=CALENDAR_SCHEMA)


def calendar_days_ddl(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(table)} (\n"
        "    date Date,\n"
        "    year UInt16,\n"
        "    quarter UInt8,\n"
        "    month UInt8,\n"
        "    day UInt8,\n"
        "    iso_week UInt8,\n"
        "    day_of_week UInt8,\n"
        "    is_weekend Bool\n"
        ") ENGINE = MergeTree ORDER BY date"
    )
