"""Administration of pipelines and runs through the real stack: soft delete -> listed -> restore ->
the pipeline runs again; a project's permanent deletion takes its pipelines' Dagster jobs (and, when
asked, their tables); cleanup of old Dagster runs, of orphaned tables, asset records and compute
logs; the cleanup schedule as a Dagster schedule, and its job run for real."""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from clickhouse_connect.driver.client import Client
from pipeline_helpers import Caller, wait_deployed, wait_for, wait_run_finished, warehouse_pipeline

from api.dagster_client import DagsterClient, DagsterClientError
from orchestration.stack import Stack

pytestmark = pytest.mark.timeout(900)
LOCATION = "aetl_pipelines"


def _project(api: httpx.Client, caller: Caller) -> str:
    created = api.post("/projects", headers=caller.headers, json={"name": f"Admin {secrets.token_hex(4)}"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _pipeline(api: httpx.Client, caller: Caller, body: dict[str, Any]) -> str:
    created = api.post("/pipelines", headers=caller.headers, json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _run_ok(api: httpx.Client, caller: Caller, dagster: DagsterClient, pipeline_id: str) -> None:
    started = api.post(f"/pipelines/{pipeline_id}/run", headers=caller.headers)
    assert started.status_code == 202, started.text
    body = started.json()
    assert wait_run_finished(dagster, body.get("data", body)["run_id"]) == "SUCCESS"


def _jobs(dagster: DagsterClient) -> set[str]:
    return set(dagster.repository_contents(LOCATION).jobs)


def _table_exists(warehouse: Client, database: str, table: str) -> bool:
    return bool(
        warehouse.query(
            "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}",
            parameters={"d": database, "t": table},
        ).result_rows[0][0]
    )


def test_soft_delete_restore_runs_again_and_permanent_deletion_removes_jobs_and_tables(
    api: httpx.Client,
    admin: Caller,
    engineer: Caller,
    dagster: DagsterClient,
    warehouse: Client,
    source_table: str,
    stack: Stack,
) -> None:
    database = source_table.split(".")[0]
    kept_project, dropped_project = _project(api, admin), _project(api, admin)
    pipeline_id = _pipeline(
        api, engineer, warehouse_pipeline(source_table, "admin_kept", project_id=kept_project)
    )
    job = f"pipeline_{pipeline_id}"
    assert api.post(f"/pipelines/{pipeline_id}/deploy", headers=engineer.headers).status_code == 200
    assert wait_deployed(api, engineer, pipeline_id)["deploy_status"] == "deployed"
    _run_ok(api, engineer, dagster, pipeline_id)
    updated = api.put(f"/pipelines/{pipeline_id}", headers=engineer.headers, json={"description": "v2"})
    assert updated.status_code == 200 and updated.json()["latest_version"] == 2

    # soft delete: gone from the API and from Dagster, listed for the administrator
    assert api.delete(f"/pipelines/{pipeline_id}", headers=engineer.headers).status_code == 204
    assert api.get(f"/pipelines/{pipeline_id}", headers=engineer.headers).status_code == 404
    wait_for(lambda: job not in _jobs(dagster), 180, what="job gone after delete")
    listed = api.get("/admin/deleted-entities", headers=admin.headers, params={"entity_type": "pipelines"})
    assert listed.status_code == 200, listed.text
    item = next(i for i in listed.json()["items"] if i["entity_id"] == pipeline_id)
    assert item["entity_type"] == "pipeline" and item["can_restore"]
    assert item["deleted_by"] == engineer.user_id
    stats = api.get("/admin/deletion-stats", headers=admin.headers).json()
    assert stats["by_type"]["pipelines"] >= 1
    denied = api.post(f"/admin/pipelines/{pipeline_id}/restore", headers=engineer.headers)
    assert denied.status_code == 403

    # restore: back with both versions, redeployed, runs again
    restored = api.post(f"/admin/pipelines/{pipeline_id}/restore", headers=admin.headers)
    assert restored.status_code == 200, restored.text
    assert restored.json()["pipeline_id"] == pipeline_id and restored.json()["restored"] is True
    assert restored.json()["restored_at"].endswith("Z")
    again = api.post(f"/admin/pipelines/{pipeline_id}/restore", headers=admin.headers)
    assert again.status_code == 404 and again.json()["status"] == "error"
    state = wait_deployed(api, engineer, pipeline_id)
    # what was deployed when it was deleted (v1) is what comes back; v2 stays the active version
    assert state["deploy_status"] == "deployed" and state["deployed_version"] == 1, state
    assert job in _jobs(dagster)
    detail = api.get(f"/pipelines/{pipeline_id}", headers=engineer.headers).json()
    assert detail["latest_version"] == 2 and detail["description"] == "v2"
    _run_ok(api, engineer, dagster, pipeline_id)
    assert _table_exists(warehouse, database, "admin_kept")

    # the project goes (soft) with its pipeline; the pipeline alone cannot come back
    assert api.delete(f"/projects/{kept_project}", headers=admin.headers).status_code == 204
    assert api.get(f"/pipelines/{pipeline_id}", headers=engineer.headers).status_code == 404
    clash = api.post(f"/admin/pipelines/{pipeline_id}/restore", headers=admin.headers)
    assert clash.status_code == 409 and clash.json()["error"]["details"]["project_id"] == kept_project

    # permanent, without tables: the job leaves Dagster, the table stays (orphaned-data finds it)
    purged = api.delete(f"/admin/projects/{kept_project}/permanent", headers=admin.headers)
    assert purged.status_code == 200, purged.text
    assert purged.json()["cascade_deleted"] == {"pipelines": 1}
    wait_for(lambda: job not in _jobs(dagster), 180, what="job gone after purge")
    assert _table_exists(warehouse, database, "admin_kept")
    listed = api.get("/admin/deleted-entities", headers=admin.headers).json()["items"]
    assert pipeline_id not in {i["entity_id"] for i in listed}

    # permanent with drop_tables: the never-deployed pipeline's table goes, the source stays
    other = _pipeline(
        api, engineer, warehouse_pipeline(source_table, "admin_dropped", project_id=dropped_project)
    )
    warehouse.command(f"CREATE TABLE {database}.admin_dropped (day Date) ENGINE = MergeTree ORDER BY day")
    dropped = api.delete(
        f"/admin/projects/{dropped_project}/permanent", headers=admin.headers, params={"drop_tables": "true"}
    )
    assert dropped.status_code == 200, dropped.text
    assert dropped.json()["cascade_deleted"] == {"pipelines": 1, "warehouse_tables": 1}
    assert not _table_exists(warehouse, database, "admin_dropped")
    assert _table_exists(warehouse, *source_table.split("."))
    assert api.get(f"/pipelines/{other}", headers=engineer.headers).status_code == 404

    # orphaned data: the purged pipeline's table and asset record, and a stray compute-log folder
    stray = _compute_logs(stack) / str(uuid.uuid4())
    stray.mkdir(parents=True)
    (stray / "step.out").write_text("x" * 1000)
    estimate = api.get("/admin/cleanup/estimate/orphaned-data", headers=admin.headers)
    assert estimate.status_code == 200, estimate.text
    data = estimate.json()["data"]
    assert f"{database}.admin_kept" in data["tables"] and source_table not in data["tables"]
    assert f"pipelines/{pipeline_id}/{database}__admin_kept" in data["assets"]
    assert data["estimated_files"] >= 1 and stray.exists()
    assert _table_exists(warehouse, database, "admin_kept")
    done = api.post("/admin/cleanup/orphaned-data", headers=admin.headers)
    assert done.status_code == 200, done.text
    result = done.json()["data"]
    assert f"{database}.admin_kept" in result["tables_dropped"] and result["files_deleted"] >= 1
    assert not _table_exists(warehouse, database, "admin_kept") and not stray.exists()
    assert _table_exists(warehouse, *source_table.split("."))
    after = api.get("/admin/cleanup/estimate/orphaned-data", headers=admin.headers).json()["data"]
    assert f"{database}.admin_kept" not in after["tables"]
    assert f"pipelines/{pipeline_id}/{database}__admin_kept" not in after["assets"]


def _compute_logs(stack: Stack) -> Path:
    return stack.settings.dagster_home / "compute_logs"


def _settled_event_count(dagster: DagsterClient, run_id: str, quiet_seconds: float = 2.0) -> int:
    """The run's event count once it has not changed for `quiet_seconds` (at most 60 s)."""
    deadline = time.monotonic() + 60
    count, since = dagster.run_event_count(run_id), time.monotonic()
    while time.monotonic() - since < quiet_seconds and time.monotonic() < deadline:
        time.sleep(0.5)
        latest = dagster.run_event_count(run_id)
        if latest != count:
            count, since = latest, time.monotonic()
    return count


RETENTION_DAYS = 20_000
KEEP = {"retention_days": RETENTION_DAYS}


def test_execution_logs_cleanup_deletes_exactly_the_old_runs(
    api: httpx.Client, admin: Caller, dagster: DagsterClient, stack: Stack
) -> None:
    marker = {"aetl/test": uuid.uuid4().hex[:8]}
    config = {"ops": {"sleep_op": {"config": {"seconds": 0}}}}
    old_run = dagster.launch_run("sleep_job", run_config=config, tags=marker)
    new_run = dagster.launch_run("sleep_job", run_config=config, tags=marker)
    for run_id in (old_run, new_run):
        assert wait_run_finished(dagster, run_id) == "SUCCESS"
    # make one run 60 years old in Dagster's own run storage (the test's "old data"), far beyond the
    # retention asked below (~55 years), so that no other run of the session can count as old too
    engine = sa.create_engine(stack.settings.dagster_pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE runs SET create_timestamp = create_timestamp - interval '60 years', "
                    "update_timestamp = update_timestamp - interval '60 years' WHERE run_id = :r"
                ),
                {"r": old_run},
            )
            old_runs = conn.execute(
                sa.text(
                    "SELECT run_id, pipeline_name, status, create_timestamp FROM runs "
                    f"WHERE create_timestamp < now() - interval '{RETENTION_DAYS} days'"
                )
            ).all()
    finally:
        engine.dispose()
    # the run worker may still write an engine event just after RUN_SUCCESS: count once it settled
    events = _settled_event_count(dagster, old_run)
    assert events > 5

    estimate = api.get("/admin/cleanup/estimate/execution-logs", headers=admin.headers, params=KEEP)
    assert estimate.status_code == 200, estimate.text
    data = estimate.json()["data"]
    assert data["runs"] == 1, f"old runs in Dagster's storage: {old_runs}"
    assert data["events"] == events and data["estimated_records"] == 1 + events
    assert dagster.get_run(old_run).run_id == old_run

    done = api.post("/admin/cleanup/execution-logs", headers=admin.headers, json=KEEP)
    assert done.status_code == 200, done.text
    result = done.json()["data"]
    assert result["runs_deleted"] == 1 and result["events_deleted"] == events
    assert result["records_deleted"] == 1 + events
    with pytest.raises(DagsterClientError):
        dagster.get_run(old_run)
    assert dagster.get_run(new_run).status.value == "SUCCESS"
    assert not (_compute_logs(stack) / old_run).exists()
    assert (
        api.get("/admin/cleanup/estimate/execution-logs", headers=admin.headers, params=KEEP).json()["data"][
            "runs"
        ]
        == 0
    )
    history = api.get(
        "/admin/cleanup/history", headers=admin.headers, params={"operation": "cleanup_execution_logs"}
    ).json()
    assert history["data"][0]["records_deleted"] == 1 + events
    for bad in ({"retention_days": -1}, {"retention_days": 0}, {}):
        response = api.post("/admin/cleanup/execution-logs", headers=admin.headers, json=bad or None)
        assert response.status_code == 422 and response.json()["status"] == "error"


def test_cleanup_schedule_is_a_dagster_schedule_and_its_job_runs(
    api: httpx.Client, admin: Caller, dagster: DagsterClient
) -> None:
    body = {
        "enabled": True,
        "schedule": "17 3 * * *",
        "retention_periods": {
            "activity_logs_days": 3650,
            "execution_logs_days": 3650,
            "temp_files_hours": 24,
        },
    }
    put = api.put("/admin/cleanup/schedule", headers=admin.headers, json=body)
    assert put.status_code == 200, put.text
    assert put.json()["data"]["next_run"].endswith("T03:17:00.000Z")

    def in_dagster() -> dict[str, Any] | None:
        data = api.get("/admin/cleanup/schedule", headers=admin.headers).json()["data"]
        found = data["dagster"]
        return data if found and found["cron"] == "17 3 * * *" and found["status"] == "RUNNING" else None

    data = wait_for(in_dagster, 240, interval=2, what="cleanup schedule running in Dagster")
    assert data["dagster"]["job"] == "system_cleanup_job" and data["enabled"] is True
    schedule = dagster.get_schedule("system_cleanup_schedule")
    assert schedule.cron_schedule == "17 3 * * *" and schedule.job_name == "system_cleanup_job"

    # what the schedule launches, launched now: every cleanup runs inside Dagster and is recorded
    before = datetime.now(UTC)
    run_id = dagster.launch_run("system_cleanup_job")
    assert wait_run_finished(dagster, run_id) == "SUCCESS"
    history = api.get(
        "/admin/cleanup/history",
        headers=admin.headers,
        params={"operation": "cleanup_all", "start_date": before.isoformat()},
    ).json()
    assert history["total"] >= 1 and history["data"][0]["username"] is None
    last = api.get("/admin/cleanup/schedule", headers=admin.headers).json()["data"]
    assert last["last_run_status"] == "success"

    off = api.put("/admin/cleanup/schedule", headers=admin.headers, json={**body, "enabled": False})
    assert off.status_code == 200
    wait_for(
        lambda: dagster.get_schedule("system_cleanup_schedule").status.value == "STOPPED",
        240,
        interval=2,
        what="cleanup schedule stopped",
    )
