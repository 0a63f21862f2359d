"""Pure parts of datamarts, without the stack: the query check, the generated model, the workbook."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import yaml  # type: ignore[import-untyped]

from api.datamarts.export import check_signature, pick_chart, sign, write_workbook
from orchestration.specs.datamart import (
    QueryRejected,
    TableRef,
    analyze_query,
    model_sql,
    render_model,
    render_properties,
    source_call,
)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t WHERE 1",
        "SELECT 1 FROM t; SELECT 2 FROM t",
        "INSERT INTO t SELECT * FROM u",
        "SELECT * FROM file('/etc/passwd', 'CSV')",
        "SELECT * FROM remote('h', db.t)",
        "SELECT '{{ env_var(\"X\") }}' FROM t",
        "SELECT 1",
        "DROP TABLE t",
        "SELECT * FROM t " + "x" * 100_001,
        "SELEC * FROM t",
    ],
)
def test_refused_queries(sql: str) -> None:
    with pytest.raises(QueryRejected):
        analyze_query(sql)


def test_tables_ctes_and_lineage_calls() -> None:
    analysis = analyze_query(
        "WITH recent AS (SELECT * FROM sales WHERE day > today() - 7) "
        "SELECT r.day, sum(r.amount) AS total FROM recent AS r JOIN shop.regions AS g ON r.region = g.id "
        "GROUP BY r.day"
    )
    assert set(analysis.tables) == {TableRef(None, "sales"), TableRef("shop", "regions")}
    sql = model_sql(
        analysis,
        {
            TableRef(None, "sales"): source_call("m", "default", "sales"),
            TableRef("shop", "regions"): "{{ ref('regions_mart') }}",
        },
        "default",
    )
    assert "FROM {{ source('datamart_m__default', 'sales') }}" in sql
    assert "JOIN {{ ref('regions_mart') }} AS g" in sql and "FROM recent AS r" in sql


def test_model_and_properties_files() -> None:
    model = render_model("daily", "SELECT 1 AS x FROM {{ source('s', 't') }}", materialized=False, version=3)
    assert "materialized='view'" in model and "'asset_key': ['datamarts', 'daily']" in model
    properties = yaml.safe_load(
        render_properties(
            "daily",
            description="Daily",
            columns=[("day", "Date"), ("total", "Float64")],
            inputs=[(TableRef("db", "sales"), "db", ("pipelines", "p_1", "db__sales"))],
            key_columns=["day"],
        )
    )
    assert properties["models"][0]["columns"][0]["data_tests"] == ["not_null"]
    source = properties["sources"][0]
    assert source["schema"] == "db" and source["name"] == "datamart_daily__db"
    assert source["tables"][0]["meta"]["dagster"]["asset_key"] == ["pipelines", "p_1", "db__sales"]


def test_workbook_typed_cells_summary_chart_and_split(tmp_path: Path) -> None:
    path = tmp_path / "out.xlsx"
    rows = [
        (dt.date(2026, 1, 1) + dt.timedelta(days=i), "north" if i % 2 else "south", i, Decimal(i) / 4, None)
        for i in range(25)
    ]
    facts = write_workbook(
        path,
        "daily",
        ["day", "region", "orders", "amount", "note"],
        ["Date", "LowCardinality(String)", "UInt64", "Decimal(12, 2)", "Nullable(String)"],
        [rows[:7], rows[7:]],
        include_summary=True,
        include_charts=True,
        rows_per_sheet=10,
    )
    assert (facts.rows, facts.sheets, facts.chart) == (25, 3, "line")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "Data", "Data 2", "Data 3"]
    data = book["Data"]
    assert [c.value for c in data[1]] == ["day", "region", "orders", "amount", "note"]
    assert data["A2"].value == dt.datetime(2026, 1, 1) and data["A2"].number_format == "yyyy-mm-dd"
    assert data["C3"].value == 1 and data["D3"].value == 0.25 and data["E3"].value is None
    assert book["Data 3"].max_row == 6  # header + rows 21..25
    summary = book["Summary"]
    assert summary["B2"].value == 25 and summary["B3"].value == 3
    assert "split across 3 sheets" in summary["A4"].value
    stats = {summary.cell(r, 1).value: [summary.cell(r, c).value for c in range(2, 7)] for r in range(7, 12)}
    assert stats["orders"] == ["UInt64", 0, 24, 12, 0]
    assert stats["note"][-1] == 25
    assert len(summary._charts) == 1


def test_chart_choice_and_signatures() -> None:
    assert pick_chart(["Date", "Float64"]) == ("line", 0, [1])
    assert pick_chart(["String", "UInt64"]) == ("column", 0, [1])
    assert pick_chart(["String", "String"]) is None
    signature = sign(b"k", "f", 100)
    assert check_signature(b"k", "f", 100, signature)
    assert not check_signature(b"k", "f", 101, signature)
    assert not check_signature(b"other", "f", 100, signature)
