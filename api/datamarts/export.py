"""Datamart -> .xlsx with xlsxwriter in constant-memory mode, and signed expiring download links.

Rows stream from the warehouse in blocks and are written in order (constant memory: one row in
memory per sheet), so a million-row datamart never sits in the API's memory. The summary is
computed on the way through. A sheet holds 1,048,576 rows; with the header that is 1,048,575 data
rows, more go on the next sheet.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import xlsxwriter  # type: ignore[import-untyped]

MAX_ROWS_PER_SHEET = 1_048_575
MAX_CELL_CHARS = 32_767
# a chart plots at most this many points (Excel stays responsive; the data sheet has them all)
MAX_CHART_POINTS = 5_000
_NUMERIC = ("Int", "UInt", "Float", "Decimal")
_TEMPORAL = ("Date", "DateTime")


def base_type(clickhouse_type: str) -> str:
    for wrapper in ("Nullable(", "LowCardinality("):
        while clickhouse_type.startswith(wrapper):
            clickhouse_type = clickhouse_type[len(wrapper) : -1]
    return clickhouse_type


def is_numeric(clickhouse_type: str) -> bool:
    return base_type(clickhouse_type).startswith(_NUMERIC)


def is_temporal(clickhouse_type: str) -> bool:
    return base_type(clickhouse_type).startswith(_TEMPORAL)


@dataclass
class ColumnStats:
    name: str
    type: str
    nulls: int = 0
    count: int = 0
    total: float = 0.0
    minimum: Any = None
    maximum: Any = None
    # decided once from the type, not per cell (a 1M-row export calls add() 8M times)
    numeric: bool = field(init=False)
    ordered: bool = field(init=False)

    def __post_init__(self) -> None:
        self.numeric = is_numeric(self.type)
        self.ordered = self.numeric or is_temporal(self.type)

    def add(self, value: Any) -> None:
        if value is None:
            self.nulls += 1
            return
        if not self.ordered:
            return
        if value != value:  # NaN
            self.nulls += 1
            return
        self.count += 1
        if self.numeric:
            self.total += float(value)
        if self.minimum is None or value < self.minimum:
            self.minimum = value
        if self.maximum is None or value > self.maximum:
            self.maximum = value

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.numeric and self.count else None


@dataclass
class WorkbookFacts:
    rows: int = 0
    sheets: int = 0
    stats: list[ColumnStats] = field(default_factory=list)
    chart: str | None = None


def pick_chart(types: Sequence[str]) -> tuple[str, int, list[int]] | None:
    """(kind, category column, value columns): time series -> line, category x measure -> bar."""
    measures = [i for i, t in enumerate(types) if is_numeric(t)]
    for i, column_type in enumerate(types):
        if is_temporal(column_type) and measures:
            return "line", i, [m for m in measures if m != i][:4]
    for i, column_type in enumerate(types):
        if base_type(column_type).startswith(("String", "FixedString", "Enum")) and measures:
            return "column", i, measures[:4]
    return None


def _cell_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)  # Excel has no time zones: UTC
    return value


def write_workbook(
    path: Path,
    title: str,
    columns: Sequence[str],
    types: Sequence[str],
    blocks: Iterable[Sequence[Sequence[Any]]],
    *,
    include_summary: bool,
    include_charts: bool,
    rows_per_sheet: int = MAX_ROWS_PER_SHEET,
) -> WorkbookFacts:
    """Write the .xlsx; every data sheet has the header row, typed cells and formats."""
    facts = WorkbookFacts(stats=[ColumnStats(c, t) for c, t in zip(columns, types, strict=True)])
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_urls": False})
    try:
        bold = workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
        date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
        datetime_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        decimal_format = workbook.add_format({"num_format": "#,##0.00"})
        integer_format = workbook.add_format({"num_format": "0"})
        formats = []
        for column_type in types:
            base = base_type(column_type)
            if base.startswith("DateTime"):
                formats.append(datetime_format)
            elif base.startswith("Date"):
                formats.append(date_format)
            elif base.startswith(("Float", "Decimal")):
                formats.append(decimal_format)
            elif base.startswith(("Int", "UInt")):
                formats.append(integer_format)
            else:
                formats.append(None)
        # the summary comes first in the workbook; constant memory only orders rows within a sheet
        summary = workbook.add_worksheet("Summary") if include_summary or include_charts else None

        def new_sheet() -> Any:
            facts.sheets += 1
            sheet = workbook.add_worksheet("Data" if facts.sheets == 1 else f"Data {facts.sheets}")
            sheet.freeze_panes(1, 0)
            for c, name in enumerate(columns):
                sheet.write_string(0, c, name, bold)
                sheet.set_column(c, c, max(10, min(40, len(name) + 2)), formats[c])
            return sheet

        sheet = new_sheet()
        row_in_sheet = 0
        for block in blocks:
            for row in block:
                if row_in_sheet == rows_per_sheet:
                    sheet, row_in_sheet = new_sheet(), 0
                row_in_sheet += 1
                facts.rows += 1
                for c, value in enumerate(row):
                    facts.stats[c].add(value)
                    value = _cell_value(value)
                    if value is None:
                        continue
                    if isinstance(value, bool):
                        sheet.write_boolean(row_in_sheet, c, value)
                    elif isinstance(value, int | float):
                        if isinstance(value, float) and not math.isfinite(value):
                            sheet.write_string(row_in_sheet, c, str(value))
                        else:
                            sheet.write_number(row_in_sheet, c, value, formats[c])
                    elif isinstance(value, dt.datetime | dt.date):
                        sheet.write_datetime(row_in_sheet, c, value, formats[c])
                    else:
                        sheet.write_string(row_in_sheet, c, str(value)[:MAX_CELL_CHARS])
        if summary is not None:
            _write_summary(workbook, summary, title, facts, bold, include_summary)
            if include_charts:
                chosen = pick_chart(types)
                if chosen is not None and facts.rows:
                    kind, category, values = chosen
                    points = min(facts.rows, rows_per_sheet, MAX_CHART_POINTS)
                    chart = workbook.add_chart({"type": kind})
                    for v in values:
                        chart.add_series({
                            "name": ["Data", 0, v],
                            "categories": ["Data", 1, category, points, category],
                            "values": ["Data", 1, v, points, v],
                        })  # fmt: skip
                    chart.set_title({"name": title})
                    chart.set_x_axis({"name": columns[category]})
                    chart.set_size({"width": 720, "height": 400})
                    summary.insert_chart(len(columns) + 9, 0, chart)
                    facts.chart = kind
    finally:
        workbook.close()
    return facts


def _write_summary(
    workbook: Any, sheet: Any, title: str, facts: WorkbookFacts, bold: Any, with_stats: bool
) -> None:
    number = workbook.add_format({"num_format": "#,##0.####"})
    when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.set_column(0, 0, 24)
    sheet.set_column(1, 5, 18)
    sheet.write_string(0, 0, title, bold)
    sheet.write_string(1, 0, "Rows")
    sheet.write_number(1, 1, facts.rows)
    sheet.write_string(2, 0, "Data sheets")
    sheet.write_number(2, 1, facts.sheets)
    if facts.sheets > 1:
        sheet.write_string(
            3, 0, f"More rows than one sheet holds: split across {facts.sheets} sheets (Data, Data 2, ...)"
        )
    if not with_stats:
        return
    for c, heading in enumerate(("Column", "Type", "Min", "Max", "Mean", "Nulls")):
        sheet.write_string(5, c, heading, bold)
    for r, stats in enumerate(facts.stats, start=6):
        sheet.write_string(r, 0, stats.name)
        sheet.write_string(r, 1, stats.type)
        for c, value in ((2, stats.minimum), (3, stats.maximum), (4, stats.mean)):
            value = _cell_value(value)
            if isinstance(value, dt.datetime | dt.date):
                sheet.write_datetime(r, c, value, when)
            elif isinstance(value, int | float) and math.isfinite(value):
                sheet.write_number(r, c, value, number)
        sheet.write_number(r, 5, stats.nulls)


# -- signed links ---------------------------------------------------------------------------------


def new_file_id(name: str) -> str:
    return f"{name}_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}_{secrets.token_hex(8)}"


def sign(key: bytes, file_id: str, expires: int) -> str:
    return hmac.new(key, f"export:{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def check_signature(key: bytes, file_id: str, expires: int, signature: str) -> bool:
    return hmac.compare_digest(sign(key, file_id, expires), signature)


def expired(expires: int, now: float | None = None) -> bool:
    return (now if now is not None else time.time()) >= expires
