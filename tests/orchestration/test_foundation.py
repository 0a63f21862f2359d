"""The instance, the storage database and the code location, with real PostgreSQL and real files."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, DefaultScheduleStatus, DefaultSensorStatus, Definitions
from dagster._core.run_coordinator import QueuedRunCoordinator

from orchestration.dagster_home import migrate_instance_storage, prepare_dagster_home
from orchestration.dbt import prepare_dbt_manifest
from orchestration.lib.pg import database_exists, drop_pg_database, ensure_pg_database


def test_ensure_pg_database_creates_once_and_drops(pg_url: str) -> None:
    assert not database_exists(pg_url)
    assert ensure_pg_database(pg_url) is True
    assert ensure_pg_database(pg_url) is False
    assert database_exists(pg_url)
    drop_pg_database(pg_url)
    assert not database_exists(pg_url)


def test_prepare_dagster_home_is_idempotent(tmp_path: Path, pg_url: str) -> None:
    target = prepare_dagster_home(tmp_path / "home", pg_url)
    first = target.stat().st_mtime_ns
    assert prepare_dagster_home(tmp_path / "home", pg_url) == target
    assert target.stat().st_mtime_ns == first  # unchanged file is not rewritten
    assert database_exists(pg_url)
    # The schema exists before any Dagster process starts; the stamp skips the migration next time.
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    tables = {row[0] for row in rows}
    assert {"runs", "event_logs", "jobs", "instance_info"} <= tables
    assert migrate_instance_storage(tmp_path / "home", pg_url) is False


def test_instance_uses_postgres_and_the_tuned_queue(dagster_instance: DagsterInstance) -> None:
    assert type(dagster_instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(dagster_instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    coordinator = dagster_instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    assert coordinator.dequeue_interval_seconds == 1
    assert coordinator.dequeue_use_threads is True
    assert dagster_instance.run_monitoring_enabled
    assert Path(dagster_instance.compute_log_manager._base_dir).name == "compute_logs"  # noqa: SLF001


def test_code_locations_load_with_their_domains() -> None:
    prepare_dbt_manifest()
    from orchestration.definitions import defs as aetl
    from orchestration.defs.datamarts import defs as datamarts

    for defs in (aetl, datamarts):
        Definitions.validate_loadable(defs)
        assert defs.resolve_all_job_defs()[0].executor_def.name == "in_process"
    assert {"warehouse_job", "sleep_job"} <= {job.name for job in aetl.resolve_all_job_defs()}
    assert {key.to_user_string() for key in aetl.resolve_all_asset_keys()} == {"calendar_days"}
    assert aetl.resolve_sensor_def("log_failed_runs").default_status == DefaultSensorStatus.STOPPED

    assert "datamarts_job" in {job.name for job in datamarts.resolve_all_job_defs()}
    keys = {key.to_user_string() for key in datamarts.resolve_all_asset_keys()}
    assert {"demo_orders", "stg_demo__orders", "orders_daily"} <= keys
    assert datamarts.resolve_schedule_def("datamarts_nightly").default_status == DefaultScheduleStatus.STOPPED


def test_workspace_lists_the_three_locations() -> None:
    import yaml

    from orchestration.dagster_home import WORKSPACE_YAML

    entries = [e["python_module"] for e in yaml.safe_load(WORKSPACE_YAML.read_text())["load_from"]]
    assert [(e["location_name"], e["module_name"]) for e in entries] == [
        ("aetl", "orchestration.definitions"),
        ("aetl_datamarts", "orchestration.defs.datamarts"),
        ("aetl_pipelines", "orchestration.defs.pipelines"),
    ]


@pytest.mark.timeout(120)
def test_prepare_dbt_manifest_is_fast_when_current() -> None:
    path = prepare_dbt_manifest()
    before = path.stat().st_mtime_ns
    assert prepare_dbt_manifest() == path
    assert path.stat().st_mtime_ns == before
    assert os.path.getsize(path) > 0
