"""POST /mvp/storage/watch against the session stack: a real Dagster sensor that imports each complete
file once, ignores temporary names, replaces a changed file's rows, counts files and pauses/resumes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from storage_helpers import Caller, mount_local, wait_for_runs

from api.dagster_client import DagsterClient, InstigationStatus, RunStatus
from orchestration.defs.watches import TAG_FILE, TAG_WATCH
from tests.api.api_helpers import assert_error_shape

# the session stack starts inside the first test's time; runs share 2 cores with everything else
pytestmark = pytest.mark.timeout(900)
RUN_TIMEOUT = 240


def _drop(folder: Path, name: str, text: str) -> None:
    """Written under a temporary name, then renamed: as a careful writer would."""
    partial = folder / f"{name}.part"
    partial.write_text(text)
    os.replace(partial, folder / name)


def test_watch_imports_each_complete_file_once(
    api: httpx.Client,
    engineer: Caller,
    folder: Path,
    dagster: DagsterClient,
    warehouse: Client,
    database: str,
) -> None:
    mount = mount_local(api, engineer, str(folder))
    (folder / "in").mkdir()
    created = api.post(
        "/mvp/storage/watch",
        headers=engineer.headers,
        json={
            "storage_id": mount["storage_id"],
            "watch_path": "/in",
            "file_pattern": "*.csv",
            "poll_interval_seconds": 1,
            "import_config": {"target_table": "events", "target_database": database},
        },
    )
    assert created.status_code == 201, created.text
    watch = created.json()
    assert (watch["status"], watch["files_detected"], watch["watch_path"]) == ("active", 0, "/in")
    sensor = dagster.get_sensor(watch["sensor_name"])
    assert sensor.status is InstigationStatus.RUNNING and sensor.job_names == ["storage_import"]

    # a file still being written (temporary name) and files of another pattern are never imported
    (folder / "in" / "b.csv.part").write_text("id,kind\n99,partial\n")
    (folder / "in" / "notes.txt").write_text("not a csv\n")
    _drop(folder / "in", "a.csv", "id,kind\n1,open\n2,close\n")
    tags = {TAG_WATCH: watch["watch_id"]}
    runs = wait_for_runs(dagster, tags, 1)
    assert [r.status for r in runs] == [RunStatus.SUCCESS] and runs[0].tags[TAG_FILE] == "in/a.csv"
    rows = warehouse.query(f"SELECT id, kind, _source_file FROM {database}.events ORDER BY id").result_rows
    assert rows == [(1, "open", "in/a.csv"), (2, "close", "in/a.csv")]

    # a changed file is imported again and replaces its rows; an unchanged one is not imported again
    time.sleep(1.1)  # a new mtime even on coarse clocks
    _drop(folder / "in", "a.csv", "id,kind\n1,open\n2,close\n3,reopen\n")
    runs = wait_for_runs(dagster, tags, 2)
    assert all(r.status is RunStatus.SUCCESS for r in runs)
    assert warehouse.query(f"SELECT id FROM {database}.events ORDER BY id").result_rows == [(1,), (2,), (3,)]
    time.sleep(3)  # a few more sensor ticks: nothing new
    assert len(dagster.list_runs(job_name="storage_import", tags=tags).items) == 2
    listed = api.get(f"/mvp/storage/watches/{watch['watch_id']}", headers=engineer.headers).json()
    assert listed["files_detected"] == 2 and listed["last_checked_at"] is not None

    paused = api.post(f"/mvp/storage/watches/{watch['watch_id']}/pause", headers=engineer.headers)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert dagster.get_sensor(watch["sensor_name"]).status is InstigationStatus.STOPPED
    resumed = api.post(f"/mvp/storage/watches/{watch['watch_id']}/resume", headers=engineer.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    assert dagster.get_sensor(watch["sensor_name"]).status is InstigationStatus.RUNNING

    assert (
        api.delete(f"/mvp/storage/watches/{watch['watch_id']}", headers=engineer.headers).status_code == 204
    )
    assert watch["sensor_name"] not in {s.name for s in dagster.list_sensors()}


def test_watch_bad_input(api: httpx.Client, engineer: Caller, folder: Path) -> None:
    mount = mount_local(api, engineer, str(folder))

    def watch(body: dict[str, object]) -> httpx.Response:
        return api.post("/mvp/storage/watch", headers=engineer.headers, json=body)

    target = {"target_table": "t"}
    assert_error_shape(
        watch({"storage_id": "storage_missing", "import_config": target}), 404, "RESOURCE_NOT_FOUND"
    )
    sid = mount["storage_id"]
    assert_error_shape(watch({"storage_id": sid, "watch_path": "/../etc", "import_config": target}), 422)
    assert_error_shape(watch({"storage_id": sid, "auto_import": True}), 422, "VALIDATION_ERROR")
    assert_error_shape(watch({"storage_id": sid, "file_pattern": "a/b", "import_config": target}), 422)
    assert_error_shape(watch({"storage_id": sid, "poll_interval_seconds": 0, "import_config": target}), 422)
    assert_error_shape(api.post("/mvp/storage/watches/watch_missing/pause", headers=engineer.headers), 404)
