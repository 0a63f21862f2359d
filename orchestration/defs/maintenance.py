"""Maintenance domain: small harmless jobs (smoke test of the run queue, termination drills)."""

import time

from dagster import Config, Definitions, OpExecutionContext, job, op


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


defs = Definitions(jobs=[sleep_job])
