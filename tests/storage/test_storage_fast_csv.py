"""The warehouse's file() fast path of a CSV import (orchestration/storage/warehouse_csv.py) against the
session stack's warehouse: it is taken for a local file, it gives exactly the table and the quarantine
the Python path gives (typed columns, bad and odd values), its SQL casts never accept a value the Python
converters reject or convert it differently, line numbers stay right over parallel parsing, and a file
the two parsers could read apart (ragged, multi-line records) goes through the Python path."""

from __future__ import annotations

import gzip
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from orchestration.lib.sql import string_literal
from orchestration.storage import importer, warehouse_csv
from orchestration.storage.inference import Column, Inferred, converter
from orchestration.storage.mounts import LocalStorage, MountConfig

pytestmark = pytest.mark.timeout(600)

COLUMNS = [
    Column("id", "integer", False),
    Column("amount", "decimal", True, 2),
    Column("ratio", "float", True),
    Column("day", "date", True),
    Column("ts", "datetime", True),
    Column("flag", "bool", True),
    Column("note", "string", True),
    Column("code", "string", False),
]
HEADER = "id,amount,ratio,day,ts,flag,note,code\n"
ROWS = [
    "1,10.50,0.25,2024-01-31,2024-01-31 10:11:12,true,plain,a",
    '2,-3.1,1e3,31.12.2024,2024-01-31T10:11:12,yes," lead","q""r"',
    "3,,nan,,,,,\\N",  # nulls; 'nan' is a float to Python
    "oops,1.00,1,2024-02-01,2024-02-01,0,x,b",  # not an integer: quarantined
    "5,1.234,2,2024-02-30,2024-02-01 00:00,N,y,c",  # 3 decimal places, no 30 February
    "6,NULL,inf,NA,2024-03-01T10:00:00.5,F,NULL,NULL",  # NULL markers; fractional seconds go to Python
    "7, 42 ,+5,2024-1-05,2024-03-01 25:00:00,maybe,z,",  # blanks around a number; bad hour; bad bool
    ",1,1,2024-01-01,2024-01-01,1,w,d",  # empty id: not nullable
    "9,00012.30,-0.0,2299-12-31,2024-01-01 00:00:00,T,v,e",
    "10,99999999999999999999.99,123456789012345678,1900-01-01,2024-01-01T00:00:00Z,t,u,f",
]


def _inferred(delimiter: str = ",", compression: str = "none") -> Inferred:
    return Inferred(
        "csv",
        [Column(c.name, c.type, c.nullable, c.scale) for c in COLUMNS],
        delimiter=delimiter,
        compression=compression,
    )


@pytest.fixture()
def storage(folder: Path) -> LocalStorage:
    return LocalStorage(MountConfig(storage_type="local", path=str(folder)), [folder.parent])


def _python_only(patch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> None:
        raise warehouse_csv.Fallback("forced by the test")

    patch.setattr(warehouse_csv, "eligible", refuse)


def _contents(warehouse: Client, database: str, table: str) -> tuple[list[Any], list[Any]]:
    rows = warehouse.query(
        f"SELECT * EXCEPT (_loaded_at) FROM {database}.{table} ORDER BY _source_line"
    ).result_rows
    rejected = warehouse.query(
        f"SELECT source, row_number, reason, raw_row FROM {database}.{table}__rejected ORDER BY row_number"
    ).result_rows
    return [repr(r) for r in rows], rejected  # repr: nan == nan


def _load(storage: LocalStorage, warehouse: Client, database: str, table: str, name: str, **kw: Any):
    return importer.import_file(
        storage,
        name,
        warehouse,
        table=table,
        database=database,
        inferred=kw.pop("inferred", None) or _inferred(),
        **kw,
    )


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_fast_path_gives_the_python_paths_table_and_quarantine(
    storage: LocalStorage,
    folder: Path,
    warehouse: Client,
    database: str,
    compression: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = ("\ufeff" + HEADER + "\r\n".join(ROWS) + "\r\n").encode()
    name = "typed.csv.gz" if compression == "gzip" else "typed.csv"
    (folder / name).write_bytes(gzip.compress(text) if compression == "gzip" else text)
    inferred = _inferred(compression=compression)
    inferred.encoding = "utf-8-sig"

    fast = _load(storage, warehouse, database, "fast", name, inferred=inferred)
    assert fast.as_metadata()["path"] == "warehouse_file"
    with monkeypatch.context() as patch:
        _python_only(patch)
        slow = _load(storage, warehouse, database, "slow", name, inferred=_inferred(compression=compression))
    assert slow.as_metadata()["path"] == "python"

    fast_rows, fast_rejected = _contents(warehouse, database, "fast")
    slow_rows, slow_rejected = _contents(warehouse, database, "slow")
    assert fast_rows == slow_rows
    assert fast_rejected == slow_rejected
    assert (fast.rows_read, fast.rows_loaded, fast.rows_quarantined, fast.reasons) == (
        slow.rows_read,
        slow.rows_loaded,
        slow.rows_quarantined,
        slow.reasons,
    )
    # the figures the file should give: lines 2..11, a few quarantined with the converters' reasons
    assert fast.rows_read == len(ROWS)
    assert [r[1] for r in fast_rejected] == [5, 6, 8, 9]
    assert "'oops' is not integer" in fast_rejected[0][2]
    assert fast_rejected[0][3] == ROWS[3]
    loaded = {r[0]: r for r in warehouse.query(f"SELECT * FROM {database}.fast").result_rows}
    assert loaded[2][6:8] == (" lead", 'q"r') and loaded[3][7] == "\\N" and loaded[6][6] == "NULL"
    assert sorted(r[9] for r in loaded.values()) == [2, 3, 4, 7, 10, 11]  # _source_line


def test_sql_casts_never_disagree_with_the_python_converters(warehouse: Client) -> None:
    """Every value SQL decides is one the Python converter accepts, with the same value."""
    values = [
        "",
        " ",
        "0",
        "-0",
        "+1",
        "1",
        "007",
        "-9223372036854775808",
        "9223372036854775807",
        "123456789012345678",
        "1234567890123456789",
        "1_000",
        "1.5",
        "1.50",
        "1.505",
        "-0.01",
        ".5",
        "5.",
        "1e3",
        "1E-2",
        "nan",
        "NaN",
        "inf",
        "-Infinity",
        "0.1",
        "0.30000000000000004",
        "12345678901234567.12345678901234567",
        "2.2250738585072014",
        "true",
        "True",
        "TRUE",
        "yes",
        "Y",
        "t",
        "f",
        "no",
        "false",
        "N",
        "2024-01-31",
        "2024-02-30",
        "2024-2-03",
        "31.12.2024",
        "31.02.2024",
        "1900-01-01",
        "1899-12-31",
        "2299-12-31",
        "2300-01-01",
        "0001-01-01",
        "20240131",
        "2024-01-31 10:11:12",
        "2024-01-31T10:11:12",
        "2024-01-31 24:00:00",
        "2024-01-31 10:11",
        "2024-01-31 10:11:12.5",
        "2024-01-31T10:11:12Z",
        "2024-01-31 10:11:60",
        "1850-01-01 00:00:00",
        "null",
        "NULL",
        "\\N",
        "NA",
        "N/A",
        "None",
        "Null",
        " 1",
        "1 ",
        "x",
        "١٢",
        "--1",
        "+",
        "-",
        "1-",
        "0x1A",
        "0x1p3",
        "1.0",
        "1,5",
        "\t1",
        "01.02.2024x",
        "2024-01-31 10:11:12 ",
        "2024-01-31T10:11:12+02:00",
    ]
    kinds = [
        Column("c", kind, nullable, scale)
        for kind, scale in (
            ("integer", 0),
            ("decimal", 2),
            ("decimal", 0),
            ("float", 0),
            ("date", 0),
            ("datetime", 0),
            ("bool", 0),
            ("string", 0),
        )
        for nullable in (False, True)
    ]
    array = "[" + ", ".join(string_literal(v) for v in values) + "]"
    checked = 0
    for column in kinds:
        ok, value = warehouse_csv.column_sql(column, "c")
        rows = warehouse.query(
            f"SELECT c, {ok}, toString({value}), isNull({value}) FROM (SELECT arrayJoin({array}) AS c) "
            "SETTINGS precise_float_parsing = 1"
        ).result_rows
        convert = converter(column)
        for raw, decided, text, is_null in rows:
            if not decided:
                continue
            checked += 1
            try:
                expected = convert(raw)
            except ValueError as error:
                raise AssertionError(f"{column}: SQL took {raw!r}, Python refuses it: {error}") from None
            got = None if is_null else text
            assert _same(column, expected, got), f"{column}: {raw!r} -> SQL {got!r}, Python {expected!r}"
    assert checked > 100


def _same(column: Column, expected: Any, got: str | None) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    kind = column.type
    if kind == "integer":
        return int(got) == expected
    if kind == "decimal":
        return Decimal(got) == expected
    if kind == "float":
        return float(got) == expected
    if kind == "date":
        return got == expected.isoformat()
    if kind == "datetime":
        return got == expected.astimezone(UTC).isoformat(sep=" ")[:19] + ".000"
    if kind == "bool":
        return got == ("true" if expected else "false")
    return got == expected


def test_line_numbers_over_parallel_parsing(
    storage: LocalStorage, folder: Path, warehouse: Client, database: str
) -> None:
    rows = 400_000  # ~20 MB: several chunks of the warehouse's parallel parser
    with (folder / "big.csv").open("w") as out:
        out.write("id,label\n")
        for start in range(0, rows, 50_000):
            out.write("".join(f"{n},row {n} {'x' * (n % 40)}\n" for n in range(start, start + 50_000)))
    inferred = Inferred("csv", [Column("id", "integer"), Column("label", "string")])
    result = _load(storage, warehouse, database, "big", "big.csv", inferred=inferred)
    assert result.path == "warehouse_file" and result.rows_loaded == rows
    off, total = warehouse.query(
        f"SELECT countIf(_source_line != id + 2), count() FROM {database}.big"
    ).result_rows[0]
    assert (off, total) == (0, rows)


@pytest.mark.parametrize(
    "body",
    [
        "id,amount\n1,2.5\n2\n3,4.5\n",
        'id,amount\n1,2.5\n"2\n",3.5\n4,4.5\n',
        "id,amount\n1,2.5\n\n4,4.5\n",
        'id,amount\n1,"2.5" \n',
    ],
    ids=["ragged", "multiline", "blank-line", "blank-after-quote"],
)
def test_fallback_keeps_the_python_paths_result(
    storage: LocalStorage,
    folder: Path,
    warehouse: Client,
    database: str,
    body: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (folder / "odd.csv").write_text(body)
    inferred = Inferred("csv", [Column("id", "string"), Column("amount", "string", False)])
    result = _load(storage, warehouse, database, "odd", "odd.csv", inferred=inferred)
    assert result.path == "python"
    with monkeypatch.context() as patch:
        _python_only(patch)
        _load(storage, warehouse, database, "slow", "odd.csv", inferred=inferred)
    assert _contents(warehouse, database, "odd") == _contents(warehouse, database, "slow")
