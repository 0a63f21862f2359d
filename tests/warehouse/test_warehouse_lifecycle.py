"""The server process: clean shutdown releases the data folder; data survives a restart."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.warehouse.conftest import WarehouseProcess


def test_sigterm_releases_data_folder_and_data_survives(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = WarehouseProcess(data, tmp_path / "first.log")
    try:
        for q in (
            "CREATE DATABASE keep",
            "CREATE TABLE keep.t (a UInt32) ENGINE = MergeTree ORDER BY a",
            "INSERT INTO keep.t VALUES (1), (2), (3)",
        ):
            assert httpx.post(first.url, content=q.encode()).status_code == 200
    finally:
        assert first.stop() == 0, first.log_tail()
    assert "data folder released" in first.log_tail()
    second = WarehouseProcess(data, tmp_path / "second.log")
    try:
        assert httpx.post(second.url, content=b"SELECT sum(a) FROM keep.t").text == "6\n"
    finally:
        assert second.stop() == 0, second.log_tail()
