"""The server process: clean shutdown releases the data folder; data survives a restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from api.core.config import REPO_ROOT
from tests.support import WarehouseProcess, free_port, warehouse_auth


def test_sigterm_releases_data_folder_and_data_survives(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = WarehouseProcess(data, tmp_path / "first.log")
    try:
        for q in (
            "CREATE DATABASE keep",
            "CREATE TABLE keep.t (a UInt32) ENGINE = MergeTree ORDER BY a",
            "INSERT INTO keep.t VALUES (1), (2), (3)",
        ):
            assert httpx.post(first.url, auth=warehouse_auth(), content=q.encode()).status_code == 200
    finally:
        assert first.stop() == 0, first.log_tail()
    assert "data folder released" in first.log_tail()
    second = WarehouseProcess(data, tmp_path / "second.log")
    try:
        assert (
            httpx.post(second.url, auth=warehouse_auth(), content=b"SELECT sum(a) FROM keep.t").text == "6\n"
        )
    finally:
        assert second.stop() == 0, second.log_tail()


def test_second_server_on_the_same_folder_refuses_to_start(warehouse_process: WarehouseProcess) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration.warehouse.server",
            "--port",
            str(free_port()),
            "--data-dir",
            str(warehouse_process.data_dir),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot open the data folder" in proc.stderr
    assert httpx.get(f"{warehouse_process.url}/ping").text == "Ok.\n"  # the owner is unaffected


def test_port_in_use_is_a_clean_error(warehouse_process: WarehouseProcess, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration.warehouse.server",
            "--port",
            str(warehouse_process.port),
            "--data-dir",
            str(tmp_path / "other"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr
