"""Maintenance domain: small harmless jobs (smoke test of the run queue, termination drills)."""

import time

from dagster import (
    Config,
    DefaultSensorStatus,
    Definitions,
    OpExecutionContext,
    RunFailureSensorContext,
    job,
    op,
    run_failure_sensor,
)


class SleepConfig(Config):
    seconds: float = 1.0


@op(description="Sleeps in one-second slices, logging each, so a terminate request stops it promptly.")
def sleep_op(context: OpExecutionContext, config: SleepConfig) -> float:
    deadline = time.monotonic() + config.seconds
    while (left := deadline - time.monotonic()) > 0:
        context.log.info(f"sleeping, {left:.0f}s left")
        time.sleep(min(1.0, left))
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


defs = Definitions(jobs=[sleep_job], sensors=[log_failed_runs])
