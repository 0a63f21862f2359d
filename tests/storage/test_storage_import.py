"""POST /mvp/storage/mount and /import against the session stack: inference, 202, one run that loads the
whole file (bad rows quarantined with file, line, raw text and reason), a re-import replaces the file's
rows, a schema mismatch names the columns, and paths never leave the mount."""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from storage_helpers import Caller, mount_local

from api.dagster_client import DagsterClient, RunStatus
from tests.api.api_helpers import assert_error_shape

# the session stack starts inside the first test's time; runs share 2 cores with everything else
pytestmark = pytest.mark.timeout(900)
RUN_TIMEOUT = 240

CP1251_CSV = (
    "id;amount;day;note\n"
    "1;10,50;2025-10-02;Привет\n"  # a decimal comma is not our decimal: quarantined
    '2;20.25;2025-10-03;"a;b"\n'
    "3;30.00;2025-10-04;Ёлка\n"
    "oops;1.00;2025-10-05;x\n"
    "5;50.10;2025-10-06\n"
)


def _import(api: httpx.Client, caller: Caller, mount_point: str, name: str, database: str, **extra: object):
    return api.post(
        "/mvp/storage/import",
        headers=caller.headers,
        json={
            "file_path": f"{mount_point}/{name}",
            "target_table": "sales",
            "target_database": database,
            "create_table_if_not_exists": True,
            **extra,
        },
    )


def test_import_infers_loads_quarantines_and_replaces(
    api: httpx.Client,
    engineer: Caller,
    folder: Path,
    dagster: DagsterClient,
    warehouse: Client,
    database: str,
) -> None:
    (folder / "daily").mkdir()
    (folder / "daily" / "sales.csv").write_bytes(CP1251_CSV.encode("cp1251"))
    mount = mount_local(api, engineer, str(folder), mount_point=f"/mnt/{folder.name}")
    assert mount["status"] == "mounted" and mount["available_space_gb"] > 0

    response = _import(api, engineer, mount["mount_point"], "daily/sales.csv", database)
    assert response.status_code == 202, response.text
    body = response.json()
    schema = body["inferred_schema"]
    assert (schema["encoding"], schema["delimiter"], schema["header"]) == ("cp1251", ";", True)
    columns = {c["name"]: (c["type"], c["nullable"]) for c in schema["columns"]}
    # the sample's rules: '10,50' and 'oops' make the columns text; a short row makes `note` nullable
    assert columns == {
        "id": ("string", False),
        "amount": ("string", False),
        "day": ("date", False),
        "note": ("string", True),
    }
    assert body["estimated_rows"] == 5 and body["estimated_rows_exact"] is True
    run = dagster.wait_for_run(body["run_id"], timeout=RUN_TIMEOUT)
    assert run.status is RunStatus.SUCCESS
    status = api.get(f"/mvp/storage/imports/{body['import_id']}", headers=engineer.headers).json()
    assert status["status"] == "completed" and status["rows_loaded"] == 4 and status["rows_quarantined"] == 1

    # an existing, typed table: rows that do not fit its types are quarantined with line and reason
    warehouse.command(f"DROP TABLE {database}.sales SYNC")
    warehouse.command(
        f"CREATE TABLE {database}.sales (id Int64, amount Decimal(18, 2), day Date, note Nullable(String), "
        "_source_file String, _source_line UInt64) ENGINE = MergeTree PARTITION BY _source_file ORDER BY id"
    )
    response = _import(api, engineer, mount["mount_point"], "daily/sales.csv", database)
    assert response.status_code == 202, response.text
    assert dagster.wait_for_run(response.json()["run_id"], timeout=RUN_TIMEOUT).status is RunStatus.SUCCESS
    rows = warehouse.query(
        f"SELECT id, amount, note, _source_line FROM {database}.sales ORDER BY id"
    ).result_rows
    assert [(r[0], str(r[1]), r[2], r[3]) for r in rows] == [(2, "20.25", "a;b", 3), (3, "30.00", "Ёлка", 4)]
    rejected = warehouse.query(
        f"SELECT source, row_number, raw_row, reason FROM {database}.sales__rejected ORDER BY row_number"
    ).result_rows
    assert [(r[0], r[1]) for r in rejected] == [
        ("daily/sales.csv", 2),
        ("daily/sales.csv", 5),
        ("daily/sales.csv", 6),
    ]
    assert rejected[0][2] == "1;10,50;2025-10-02;Привет" and "amount" in rejected[0][3]
    assert "id" in rejected[1][3] and "expected 4 fields, found 3" in rejected[2][3]

    # the same file again: its rows replace themselves (no duplicates); a changed file replaces them
    response = _import(api, engineer, mount["mount_point"], "daily/sales.csv", database)
    assert dagster.wait_for_run(response.json()["run_id"], timeout=RUN_TIMEOUT).status is RunStatus.SUCCESS
    assert warehouse.command(f"SELECT count() FROM {database}.sales") == 2
    assert warehouse.command(f"SELECT count() FROM {database}.sales__rejected") == 3
    (folder / "daily" / "sales.csv").write_bytes(
        "id;amount;day;note\n7;1.00;2025-11-01;new\n".encode("cp1251")
    )
    response = _import(api, engineer, mount["mount_point"], "daily/sales.csv", database)
    assert dagster.wait_for_run(response.json()["run_id"], timeout=RUN_TIMEOUT).status is RunStatus.SUCCESS
    assert warehouse.query(f"SELECT id FROM {database}.sales").result_rows == [(7,)]
    assert warehouse.command(f"SELECT count() FROM {database}.sales__rejected") == 0

    # the table's types do not take the file's: the error names the columns, nothing runs
    (folder / "daily" / "other.csv").write_text("id,amount,day,extra\n1,1.5,3.5,1\n")
    error = assert_error_shape(
        _import(api, engineer, mount["mount_point"], "daily/other.csv", database), 422, "VALIDATION_ERROR"
    )
    assert "extra" in error["message"] and "day (decimal into Date)" in error["message"]
    assert error["error"]["details"]["missing_columns"] == ["extra"]


def test_excel_every_sheet_or_a_named_one_parquet_jsonl_gz_and_zip(
    api: httpx.Client,
    engineer: Caller,
    folder: Path,
    dagster: DagsterClient,
    warehouse: Client,
    database: str,
) -> None:
    import datetime as dt

    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]
    import xlsxwriter  # type: ignore[import-untyped]

    book = xlsxwriter.Workbook(str(folder / "regions.xlsx"))
    for name, rows in (("North", [(1, "Oslo", 10.5), (2, "Bergen", 7.25)]), ("South", [(3, "Rome", 3.0)])):
        sheet = book.add_worksheet(name)
        sheet.write_row(0, 0, ["id", "city", "amount"])
        for i, row in enumerate(rows, start=1):
            sheet.write_row(i, 0, row)
    book.close()
    pq.write_table(
        pa.table({"id": [7, 8], "day": [dt.date(2025, 1, 1), dt.date(2025, 1, 2)], "city": ["Riga", None]}),
        folder / "days.parquet",
    )
    mount = mount_local(api, engineer, str(folder), mount_point=f"/mnt/{folder.name}")

    def load(name: str, table: str, **extra: object) -> dict[str, object]:
        response = _import(api, engineer, mount["mount_point"], name, database, target_table=table, **extra)
        assert response.status_code == 202, response.text
        body: dict[str, object] = response.json()
        assert dagster.wait_for_run(str(body["run_id"]), timeout=RUN_TIMEOUT).status is RunStatus.SUCCESS
        return body

    # no sheet named: every sheet, in order, into one table (the estimate says it is a lower bound)
    every = load("regions.xlsx", "regions")
    assert every["estimated_rows_exact"] is False
    rows = warehouse.query(
        f"SELECT id, city, amount, _source_line FROM {database}.regions ORDER BY id"
    ).result_rows
    assert rows == [(1, "Oslo", 10.5, 1), (2, "Bergen", 7.25, 2), (3, "Rome", 3.0, 3)]
    # a named sheet: only its rows
    load("regions.xlsx", "south", sheet="South")
    assert warehouse.query(f"SELECT id, city FROM {database}.south").result_rows == [(3, "Rome")]

    parquet = load("days.parquet", "days")
    assert parquet["estimated_rows"] == 2 and parquet["estimated_rows_exact"] is True
    got = warehouse.query(f"SELECT id, day, city FROM {database}.days ORDER BY id").result_rows
    assert got == [(7, dt.date(2025, 1, 1), "Riga"), (8, dt.date(2025, 1, 2), None)]

    # JSON lines, gzip-compressed; a CSV inside a single-file zip
    lines = b'{"id": 1, "kind": "click"}\n{"id": 2, "kind": "view"}\n{"id": 3, "kind": null}\n'
    (folder / "events.jsonl.gz").write_bytes(gzip.compress(lines))
    load("events.jsonl.gz", "events")
    events = warehouse.query(f"SELECT id, kind FROM {database}.events ORDER BY id").result_rows
    assert events == [(1, "click"), (2, "view"), (3, None)]
    with zipfile.ZipFile(folder / "orders.zip", "w") as archive:
        archive.writestr("orders.csv", "id,total\n1,9.5\n2,11.25\n")
    load("orders.zip", "orders")
    orders = warehouse.query(f"SELECT id, total FROM {database}.orders ORDER BY id").result_rows
    assert orders == [(1, 9.5), (2, 11.25)]


def test_import_refuses_paths_outside_the_mount(
    api: httpx.Client, engineer: Caller, folder: Path, tmp_path: Path, database: str
) -> None:
    inside = folder / "in"
    inside.mkdir()
    (tmp_path / "secret.csv").write_text("a\n1\n")
    os.symlink(tmp_path / "secret.csv", inside / "link.csv")
    mount = mount_local(api, engineer, str(inside))
    point = mount["mount_point"]
    for path in (f"{point}/../x.csv", "/etc/passwd", f"{point}/link.csv"):
        response = api.post(
            "/mvp/storage/import",
            headers=engineer.headers,
            json={"file_path": path, "target_table": "t", "target_database": database},
        )
        assert_error_shape(response, 422, "VALIDATION_ERROR")
    missing = api.post(
        "/mvp/storage/import",
        headers=engineer.headers,
        json={"file_path": f"{point}/nope.csv", "target_table": "t", "target_database": database},
    )
    assert_error_shape(missing, 404, "RESOURCE_NOT_FOUND")
    bad_table = api.post(
        "/mvp/storage/import",
        headers=engineer.headers,
        json={"file_path": f"{point}/a.csv", "target_table": "x;y"},
    )
    assert_error_shape(bad_table, 422, "VALIDATION_ERROR")


def test_mount_refuses_bad_and_unreachable_storage(api: httpx.Client, engineer: Caller, folder: Path) -> None:
    def mount(body: dict[str, object]) -> httpx.Response:
        return api.post("/mvp/storage/mount", headers=engineer.headers, json=body)

    assert_error_shape(mount({"storage_type": "local", "path": "relative/dir"}), 422, "VALIDATION_ERROR")
    outside = assert_error_shape(mount({"storage_type": "local", "path": "/etc"}), 422, "VALIDATION_ERROR")
    assert "file roots" in outside["message"]
    assert_error_shape(mount({"storage_type": "nfs", "path": "/x"}), 422, "VALIDATION_ERROR")
    assert_error_shape(mount({"storage_type": "smb", "host": "127.0.0.1"}), 422, "VALIDATION_ERROR")
    refused = mount(
        {
            "storage_type": "sftp",
            "host": "127.0.0.1",
            "port": 9,
            "credentials": {"username": "u", "password": "Very-Secret-1"},
        }
    )
    error = assert_error_shape(refused, 502, "CONNECTOR_ERROR")
    assert error["error"]["details"]["reason"] == "unreachable" and "Very-Secret-1" not in refused.text
    first = mount_local(api, engineer, str(folder))
    assert_error_shape(mount({"storage_type": "local", "path": str(folder)}), 409, "DUPLICATE_RESOURCE")
    listed = api.get("/mvp/storage/mounts", headers=engineer.headers).json()
    assert first["storage_id"] in {m["storage_id"] for m in listed["items"]}
    gone = api.delete(f"/mvp/storage/mounts/{first['storage_id']}", headers=engineer.headers)
    assert gone.status_code == 204
    assert_error_shape(api.get(f"/mvp/storage/mounts/{first['storage_id']}", headers=engineer.headers), 404)


def test_a_table_without_the_file_partition_gets_each_run_of_a_file_once(
    folder: Path, warehouse: Client, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table of the user's own (no `_source_file` partition): the file's rows are moved in, and a
    retry of the same run (its load id) adds nothing, also when the worker died before or after
    the move; another run adds the rows again (that table keeps no per-file state)."""
    from orchestration.storage.importer import import_file
    from orchestration.storage.mounts import LocalStorage, MountConfig
    from orchestration.warehouse import publish

    rows = 150_000  # several insert blocks
    (folder / "big.csv").write_text("id,part\n" + "".join(f"{i},{i % 7}\n" for i in range(rows)))
    warehouse.command(f"CREATE TABLE {database}.own (id Int64, part Int64) ENGINE = MergeTree ORDER BY id")
    storage = LocalStorage(MountConfig(storage_type="local", path=str(folder)))

    def load(load_id: str) -> Any:
        return import_file(storage, "big.csv", warehouse, table="own", database=database, create_table=False,
                           load_id=load_id, run_id=load_id)  # fmt: skip

    def count() -> int:
        return int(warehouse.command(f"SELECT count() FROM {database}.own"))

    leftovers = (
        f"SELECT count() FROM system.tables WHERE database = '{database}' "
        "AND name LIKE 'own\\\\_\\\\_import%'"
    )
    first = load("run-1")
    assert not first.replaced_by_file and first.rows_loaded == rows and count() == rows
    again = load("run-1")
    assert again.path == "already_published" and again.rows_loaded == 0 and count() == rows

    real_move = publish.move_rows

    def dies_before_moving(*args: Any) -> None:
        raise RuntimeError("the run worker died")

    monkeypatch.setattr(publish, "move_rows", dies_before_moving)
    with pytest.raises(RuntimeError):
        load("run-2")
    assert count() == rows and warehouse.command(leftovers) == 1  # the load's table waits for its retry
    # the importer marks its tables: the clean-up recognises this one, and keeps it for the retry
    _, pending = publish.abandoned_load_tables(warehouse, 0)
    assert len([p for p in pending if p.startswith(f"{database}.own__import_")]) == 1, pending
    monkeypatch.setattr(publish, "move_rows", real_move)
    resumed = load("run-2")
    assert resumed.path == "already_published" and resumed.rows_loaded == rows and count() == 2 * rows
    assert load("run-2").rows_loaded == 0 and count() == 2 * rows and warehouse.command(leftovers) == 0
