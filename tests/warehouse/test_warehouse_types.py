"""clickhouse-connect round trips of the common column types through the embedded warehouse."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
from clickhouse_connect.driver.client import Client

COLUMNS: list[tuple[str, str, list[object]]] = [
    ("i8", "Int8", [-128, 0, 127]),
    ("i16", "Int16", [-32768, 1, 32767]),
    ("i32", "Int32", [-(2**31), 2, 2**31 - 1]),
    ("i64", "Int64", [-(2**63), 3, 2**63 - 1]),
    ("u8", "UInt8", [0, 1, 255]),
    ("u16", "UInt16", [0, 2, 65535]),
    ("u32", "UInt32", [0, 3, 2**32 - 1]),
    ("u64", "UInt64", [0, 4, 2**64 - 1]),
    ("f32", "Float32", [0.5, -1.25, 3.0]),
    ("f64", "Float64", [0.1, -2.5e300, 1e-300]),
    ("dec", "Decimal(18, 4)", [Decimal("1.2345"), Decimal("-99999.0001"), Decimal("0.0000")]),
    ("s", "String", ["", "héllo", "tab\tnew\nline'quote\\"]),
    ("fs", "FixedString(4)", [b"abcd", b"\x00\x01\x02\x03", b"zz\x00\x00"]),
    ("d", "Date", [date(1970, 1, 1), date(2024, 2, 29), date(2149, 6, 6)]),
    ("d32", "Date32", [date(1900, 1, 1), date(2024, 2, 29), date(2299, 12, 31)]),
    (
        "dt",
        "DateTime",
        [datetime(1970, 1, 1, 0, 0, 1), datetime(2024, 2, 29, 12, 34, 56), datetime(2106, 2, 7)],
    ),
    (
        "dt64",
        "DateTime64(3)",
        [datetime(2024, 1, 1, 0, 0, 0, 123000), datetime(1999, 12, 31, 23, 59, 59), datetime(2030, 5, 6)],
    ),
    ("uid", "UUID", [uuid.UUID(int=0), uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.uuid4()]),
    ("b", "Bool", [True, False, True]),
    ("ni", "Nullable(Int32)", [None, 5, -5]),
    ("ns", "Nullable(String)", ["x", None, ""]),
    ("lc", "LowCardinality(String)", ["a", "b", "a"]),
    ("arr", "Array(Int32)", [[], [1, 2, 3], [-1]]),
    ("arrs", "Array(Nullable(String))", [["a", None], [], ["c"]]),
    ("m", "Map(String, Int64)", [{}, {"a": 1, "b": 2}, {"z": -1}]),
    ("tup", "Tuple(Int32, String)", [(1, "a"), (2, "b"), (3, "")]),
    ("e8", "Enum8('red' = 1, 'green' = 2)", ["red", "green", "red"]),
    (
        "ip4",
        "IPv4",
        [
            ipaddress.IPv4Address("127.0.0.1"),
            ipaddress.IPv4Address("10.1.2.3"),
            ipaddress.IPv4Address("0.0.0.0"),
        ],
    ),
    (
        "ip6",
        "IPv6",
        [
            ipaddress.IPv6Address("::1"),
            ipaddress.IPv6Address("2001:db8::8a2e:370:7334"),
            ipaddress.IPv6Address("::"),
        ],
    ),
]


def test_every_common_type_round_trips(client: Client, database: str) -> None:
    ddl = ", ".join(f"{name} {ch_type}" for name, ch_type, _ in COLUMNS)
    client.command(f"CREATE TABLE {database}.types (row UInt8, {ddl}) ENGINE = MergeTree ORDER BY row")
    names = ["row"] + [name for name, _, _ in COLUMNS]
    rows = [[i] + [values[i] for _, _, values in COLUMNS] for i in range(3)]
    client.insert(f"{database}.types", rows, column_names=names)  # Native, no pandas

    result = client.query(f"SELECT * FROM {database}.types ORDER BY row")
    assert result.column_names == tuple(names)
    types = dict(zip(result.column_names, (t.name for t in result.column_types), strict=True))
    for name, ch_type, _ in COLUMNS:
        assert types[name] == ch_type, name
    for i, got in enumerate(result.result_rows):
        expected = rows[i]
        for col, (want, have) in enumerate(zip(expected, got, strict=True)):
            if names[col] == "f32":
                assert abs(have - want) < 1e-6
            elif names[col] == "tup":
                assert tuple(have) == want
            else:
                assert have == want, f"{names[col]} row {i}: {have!r} != {want!r}"


def test_json_type_round_trips(client: Client, database: str) -> None:
    client.command(f"CREATE TABLE {database}.j (id UInt8, doc JSON) ENGINE = MergeTree ORDER BY id")
    client.insert(
        f"{database}.j", [[1, {"a": 1, "b": {"c": "x"}}], [2, {"a": 2}]], column_names=["id", "doc"]
    )
    rows = client.query(f"SELECT id, doc.a, doc.b.c FROM {database}.j ORDER BY id").result_rows
    assert rows == [(1, 1, "x"), (2, 2, None)]


def test_arrow_insert_100k_and_read_back(client: Client, database: str) -> None:
    n = 100_000
    client.command(
        f"CREATE TABLE {database}.events (id UInt64, name String, score Float64, day Date) "
        "ENGINE = MergeTree ORDER BY id"
    )
    table = pa.table(
        {
            "id": pa.array(range(n), pa.uint64()),
            "name": pa.array([f"name-{i % 1000}" for i in range(n)]),
            "score": pa.array([i / 7 for i in range(n)], pa.float64()),
            "day": pa.array([date(2024, 1, 1 + i % 28) for i in range(n)], pa.date32()),
        }
    )
    client.insert_arrow(f"{database}.events", table)
    assert client.command(f"SELECT count() FROM {database}.events") == n
    assert client.command(f"SELECT sum(id) FROM {database}.events") == n * (n - 1) // 2

    back = client.query_arrow(f"SELECT * FROM {database}.events ORDER BY id")
    assert back.num_rows == n
    assert back.column("id").to_pylist()[:3] == [0, 1, 2]
    assert back.column("name").to_pylist()[-1] == f"name-{(n - 1) % 1000}"


def test_large_arrow_results_stream_completely(client: Client) -> None:
    n = 1_000_000
    query = f"SELECT number AS n, toString(number) AS s FROM numbers({n})"
    table = client.query_arrow(query)
    assert table.num_rows == n
    seen = 0
    total = 0
    batches = 0
    with client.query_arrow_stream(query) as stream:
        for batch in stream:
            batches += 1
            seen += batch.num_rows
            total += pa.compute.sum(batch.column("n")).as_py()
    assert seen == n  # every re-framed chunk arrives, not just the first
    assert total == n * (n - 1) // 2
    assert batches > 1


def test_native_insert_of_many_rows_without_pandas(client: Client, database: str) -> None:
    client.command(
        f"CREATE TABLE {database}.t (id UInt32, v Nullable(String)) ENGINE = MergeTree ORDER BY id"
    )
    rows = [[i, None if i % 3 == 0 else str(i)] for i in range(50_000)]
    summary = client.insert(f"{database}.t", rows, column_names=["id", "v"])
    assert summary.written_rows == 50_000
    assert client.command(f"SELECT countIf(v IS NULL) FROM {database}.t") == len(range(0, 50_000, 3))
