"""DagsterClient against a real dagster-webserver + dagster-daemon (see conftest.py)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.dagster_client import (
    DagsterClient,
    DagsterInvalidRequest,
    DagsterNotFound,
    InstigationStatus,
    Run,
    RunStatus,
)

pytestmark = pytest.mark.timeout(180)
CALENDAR_2024 = {"ops": {"calendar_days": {"config": {"start": "2024-01-01", "end": "2024-12-31"}}}}


def wait_for_status(
    client: DagsterClient, run_id: str, statuses: set[RunStatus], timeout: float = 90.0
) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        if run.status in statuses:
            return run
        assert not run.status.finished, f"run ended {run.status}, expected {statuses}"
        assert time.monotonic() < deadline, f"run still {run.status} after {timeout}s"
        time.sleep(0.2)


def test_ping_and_daemon_health(dagster: DagsterClient) -> None:
    assert dagster.ping().startswith("1.")
    health = dagster.daemon_health()
    assert health.healthy
    types = {d.daemon_type for d in health.daemons}
    assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= types


def test_warehouse_job_runs_to_success_with_logs_tags_and_materializations(dagster: DagsterClient) -> None:
    marker = uuid.uuid4().hex
    submitted = time.monotonic()
    run_id = dagster.launch_run(
        "warehouse_job", run_config=CALENDAR_2024, tags={"aetl/test": marker, "aetl/triggered_by": "pytest"}
    )
    run = wait_for_status(dagster, run_id, {RunStatus.SUCCESS})
    print(f"warehouse_job submit->SUCCESS {time.monotonic() - submitted:.1f}s")
    assert run.job_name == "warehouse_job" and run.tags["aetl/test"] == marker
    assert run.stats is not None and run.stats.materializations == 1 and run.stats.steps_failed == 0
    assert run.started_at is not None and run.ended_at is not None and run.ended_at >= run.started_at
    assert run.run_config == CALENDAR_2024

    logs = dagster.get_run_logs(run_id)
    kinds = [e.dagster_event_type for e in logs.events]
    assert "RUN_SUCCESS" in kinds and "ASSET_MATERIALIZATION" in kinds
    assert any("366 rows" in e.message for e in logs.events)
    # The cursor gives only newer events (the worker may still log its exit after RUN_SUCCESS).
    newer = dagster.get_run_logs(run_id, cursor=logs.cursor).events
    assert len(logs.events) + len(newer) == len(dagster.get_run_logs(run_id).events)
    assert all(e.timestamp >= logs.events[-1].timestamp for e in newer)

    page = dagster.list_runs(tags={"aetl/test": marker})
    assert [r.run_id for r in page.items] == [run_id]
    assert dagster.list_runs(tags={"aetl/test": marker}, statuses=[RunStatus.FAILURE]).items == []

    [latest, *_] = dagster.asset_materializations("calendar_days", limit=5)
    assert latest.run_id == run_id and latest.metadata["dagster/row_count"] == 366


def test_asset_selection_runs_only_the_selected_asset(dagster: DagsterClient) -> None:
    run_id = dagster.launch_run("__ASSET_JOB", run_config=CALENDAR_2024, asset_selection=["calendar_days"])
    run = dagster.wait_for_run(run_id, timeout=90)
    assert run.status is RunStatus.SUCCESS and run.asset_selection == ["calendar_days"]
    assert run.tags["dagster/code_location"] == "aetl"


def test_wait_for_run_times_out(dagster: DagsterClient) -> None:
    run_id = dagster.launch_run("sleep_job", run_config={"ops": {"sleep_op": {"config": {"seconds": 60}}}})
    try:
        with pytest.raises(TimeoutError, match=run_id):
            dagster.wait_for_run(run_id, timeout=0.5)
    finally:
        dagster.terminate_run(run_id)
    assert dagster.wait_for_run(run_id, timeout=60).status is RunStatus.CANCELED


def test_list_runs_pages_with_a_cursor_and_queued_runs_cancel_at_once(dagster: DagsterClient) -> None:
    marker = uuid.uuid4().hex
    ids = [
        dagster.launch_run("sleep_job", run_config={"ops": {"sleep_op": {"config": {"seconds": 60}}}},
                           tags={"aetl/test": marker})
        for _ in range(3)
    ]  # fmt: skip
    first = dagster.list_runs(tags={"aetl/test": marker}, limit=2)
    assert len(first.items) == 2 and first.next_cursor is not None
    second = dagster.list_runs(tags={"aetl/test": marker}, limit=2, cursor=first.next_cursor)
    assert [r.run_id for r in first.items + second.items] == list(reversed(ids))  # newest first
    assert second.next_cursor is None
    assert {r.job_name for r in dagster.list_runs(job_name="sleep_job", run_ids=ids).items} == {"sleep_job"}
    for run_id in ids:
        dagster.terminate_run(run_id)
    for run_id in ids:
        wait_for_status(dagster, run_id, {RunStatus.CANCELED}, timeout=60)


def test_terminate_a_running_run(dagster: DagsterClient) -> None:
    run_id = dagster.launch_run("sleep_job", run_config={"ops": {"sleep_op": {"config": {"seconds": 120}}}})
    wait_for_status(dagster, run_id, {RunStatus.STARTED})
    assert dagster.get_run(run_id).can_terminate
    dagster.terminate_run(run_id)
    run = wait_for_status(dagster, run_id, {RunStatus.CANCELED}, timeout=60)
    assert run.ended_at is not None
    with pytest.raises(DagsterInvalidRequest, match="CANCELED"):
        dagster.terminate_run(run_id)  # already finished: Dagster refuses, nothing to stop


@pytest.mark.parametrize("location", ["aetl", "aetl_datamarts"])
def test_reload_location(dagster: DagsterClient, location: str) -> None:
    started = time.monotonic()
    reloaded = dagster.reload_location(location)
    print(f"reload {location} {time.monotonic() - started:.1f}s")
    assert reloaded.load_status == "LOADED" and reloaded.repositories == ["__repository__"]
    assert dagster.locate_job("sleep_job").location == "aetl"  # the index is rebuilt after a reload


def test_code_locations_are_loaded(dagster: DagsterClient) -> None:
    locations = {loc.name: loc for loc in dagster.code_locations()}
    assert set(locations) == {"aetl", "aetl_datamarts", "aetl_pipelines"}
    assert all(loc.load_status == "LOADED" and not loc.load_failed for loc in locations.values())


def test_reload_unknown_location_is_not_found(dagster: DagsterClient) -> None:
    with pytest.raises(DagsterNotFound):
        dagster.reload_location("no_such_location")


def test_datamarts_job_builds_the_dbt_models_in_its_own_location(dagster: DagsterClient) -> None:
    submitted = time.monotonic()
    run_id = dagster.launch_run("datamarts_job", tags={"aetl/test": "dbt"})
    run = wait_for_status(dagster, run_id, {RunStatus.SUCCESS}, timeout=150)
    print(f"datamarts_job submit->SUCCESS {time.monotonic() - submitted:.1f}s")
    assert run.tags["dagster/code_location"] == "aetl_datamarts"
    # demo_orders (seed), stg_demo__orders, orders_daily, order_status_lookup (dictionary)
    assert run.stats is not None and run.stats.materializations == 4
    [latest] = dagster.asset_materializations("orders_daily", limit=1)
    assert latest.run_id == run_id


def test_start_and_stop_a_schedule(dagster: DagsterClient) -> None:
    [schedule] = [s for s in dagster.list_schedules() if s.name == "datamarts_nightly"]
    assert schedule.location == "aetl_datamarts"
    assert schedule.status == schedule.default_status == InstigationStatus.STOPPED
    assert schedule.job_name == "datamarts_job" and schedule.cron_schedule == "0 3 * * *"
    try:
        started = dagster.start_schedule("datamarts_nightly")
        assert started.status == InstigationStatus.RUNNING and started.next_tick_at is not None
    finally:
        stopped = dagster.stop_schedule("datamarts_nightly")
    assert stopped.status == InstigationStatus.STOPPED
    with pytest.raises(DagsterNotFound):
        dagster.start_schedule("no_such_schedule")


def test_start_and_stop_a_sensor(dagster: DagsterClient) -> None:
    [sensor] = [s for s in dagster.list_sensors() if s.name == "log_failed_runs"]
    assert sensor.location == "aetl" and sensor.status == InstigationStatus.STOPPED
    try:
        assert dagster.start_sensor("log_failed_runs").status == InstigationStatus.RUNNING
    finally:
        assert dagster.stop_sensor("log_failed_runs").status == InstigationStatus.STOPPED
    with pytest.raises(DagsterNotFound):
        dagster.stop_sensor("no_such_sensor")


def test_errors_map_to_the_contract(dagster: DagsterClient) -> None:
    with pytest.raises(DagsterNotFound) as missing_run:
        dagster.get_run(str(uuid.uuid4()))
    assert missing_run.value.http_status == 404 and missing_run.value.error_code == "RESOURCE_NOT_FOUND"
    with pytest.raises(DagsterNotFound):
        dagster.get_run_logs(str(uuid.uuid4()))
    with pytest.raises(DagsterNotFound):
        dagster.terminate_run(str(uuid.uuid4()))
    with pytest.raises(DagsterNotFound):
        dagster.launch_run("no_such_job")
    with pytest.raises(DagsterNotFound):
        dagster.asset_materializations(["no", "such", "asset"])
    with pytest.raises(DagsterInvalidRequest) as bad_config:
        dagster.launch_run("sleep_job", run_config={"ops": {"sleep_op": {"config": {"seconds": "soon"}}}})
    assert bad_config.value.http_status == 422 and bad_config.value.details["errors"]
    with pytest.raises(DagsterInvalidRequest):
        dagster.launch_run("warehouse_job", asset_selection=["no_such_asset"])


def test_one_client_serves_many_threads(dagster: DagsterClient) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(lambda _: dagster.ping(), range(32)))
        pages = list(pool.map(lambda _: dagster.list_runs(limit=5), range(16)))
    assert len(set(versions)) == 1 and all(len(p.items) <= 5 for p in pages)
