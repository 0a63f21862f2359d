"""Maintenance domain: small harmless jobs (smoke test of the run queue, termination drills) and the
system cleanup job with its schedule (set through `PUT /api/v1/admin/cleanup/schedule`)."""

import json
import logging
import time
from typing import Any

from dagster import (
    Config,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    OpExecutionContext,
    RunFailureSensorContext,
    ScheduleDefinition,
    job,
    op,
    run_failure_sensor,
)

from orchestration.defs.common import metadata_database_url

logger = logging.getLogger("aetl.maintenance")

CLEANUP_SETTING = "cleanup_schedule"  # api.admin.schedule.CLEANUP_SCHEDULE
DEFAULT_CLEANUP_CRON = "0 2 * * *"


class SleepConfig(Config):
    seconds: float = 1.0
    # fail after sleeping: a failing run on demand (alert drills, failure handling tests)
    fail: bool = False


@op(description="Sleeps in one-second slices, logging each, so a terminate request stops it promptly.")
def sleep_op(context: OpExecutionContext, config: SleepConfig) -> float:
    deadline = time.monotonic() + config.seconds
    while (left := deadline - time.monotonic()) > 0:
        context.log.info(f"sleeping, {left:.0f}s left")
        time.sleep(min(1.0, left))
    if config.fail:
        raise RuntimeError("sleep_op asked to fail (fail: true)")
    return config.seconds


@job(tags={"aetl/domain": "maintenance"}, description="Waits `seconds`; does nothing else.")
def sleep_job() -> None:
    sleep_op()


@run_failure_sensor(
    name="log_failed_runs",
    default_status=DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=30,
    description="Writes one line per failed run to the daemon log (a hook point for alerting).",
)
def log_failed_runs(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    context.log.error(f"run {run.run_id} of {run.job_name} failed: {context.failure_event.message}")


def cleanup_setting(database_url: str | None = None) -> dict[str, Any]:
    """The schedule setting from the metadata DB; defaults when there is none or the DB is not there
    (the location must load without it)."""
    try:
        import psycopg

        with psycopg.connect(database_url or metadata_database_url(), connect_timeout=5) as connection:
            row = connection.execute(
                "SELECT value FROM system_settings WHERE key = %s", (CLEANUP_SETTING,)
            ).fetchone()
    except Exception as error:  # the location loads with the defaults rather than not at all
        logger.warning("cleanup schedule setting unreadable: %s", type(error).__name__)
        return {}
    if row is None:
        return {}
    value = row[0]
    return dict(json.loads(value) if isinstance(value, str) else value)


@op(description="Runs every system cleanup with the schedule's retention periods; logs what each removed.")
def system_cleanup_op(context: OpExecutionContext) -> dict[str, Any]:
    # the API's own cleanup code: one implementation for the routes and the schedule
    from api.admin import cleanup
    from api.db.session import new_session

    periods = cleanup_setting().get("retention_periods") or {}
    with new_session() as session:
        result = cleanup.cleanup_all(
            session,
            None,
            int(periods.get("activity_logs_days", 90)),
            execution_days=int(periods.get("execution_logs_days", 30)),
            temp_hours=int(periods.get("temp_files_hours", 24)),
        )
    for operation in result["operations"]:
        context.log.info(
            f"{operation['name']}: {operation['status']}, {operation.get('records_deleted', 0)} records, "
            f"{operation.get('files_deleted', 0)} files"
        )
    if result["failed_operations"]:
        raise RuntimeError(f"cleanup steps failed: {', '.join(result['failed_operations'])}")
    return {k: result[k] for k in ("total_records_deleted", "total_files_deleted", "space_freed_bytes")}


@job(
    tags={"aetl/domain": "maintenance"}, description="System cleanup: logs, temp files, orphaned data, runs."
)
def system_cleanup_job() -> None:
    system_cleanup_op()


def cleanup_schedule() -> ScheduleDefinition:
    """Its cron comes from the setting at load; started/stopped by the API (the instance keeps that)."""
    cron = str(cleanup_setting().get("schedule") or DEFAULT_CLEANUP_CRON)
    return ScheduleDefinition(
        name="system_cleanup_schedule",
        job=system_cleanup_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description="System cleanup on the schedule set by PUT /api/v1/admin/cleanup/schedule.",
    )


defs = Definitions(
    jobs=[sleep_job, system_cleanup_job], schedules=[cleanup_schedule()], sensors=[log_failed_runs]
)
