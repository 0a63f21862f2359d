"""`dagster-daemon` with a shorter sensor loop: `python -m orchestration.dagster_daemon run -w <workspace>`.

Dagster's sensor daemon evaluates sensors in a loop that runs at most every 5 s
(`dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME`), whatever a sensor's `minimum_interval_seconds`
says: a watched folder polled every second was in fact checked every 5 s, and a dropped file waited
up to 5 s before it was even seen. This entry point sets the loop to `AETL_SENSOR_LOOP_SECONDS`
(default 1 s) and runs Dagster's own daemon CLI. Each sensor still runs at most once per its own
interval; a loop with nothing due costs one read of the sensor states.

Run monitoring, too, gets one addition: Dagster waits `start_timeout_seconds` (dagster.yaml: 120 s)
before it fails a run stuck in STARTING, whatever became of its worker. A run whose warm-forked
worker is already gone (killed with the run-worker server before it recorded RUN_START) is failed at
the next monitoring poll instead, and one that no worker was ever forked for (the daemon killed
inside launch_run) 45 s after its launch (WarmForkRunLauncher.died_before_start); its retry, where
the job asks for one, starts seconds after the crash rather than two minutes.

And a thread restores the tag rows of runs created as a process died (orchestration/run_tags_repair.py).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

DEFAULT_LOOP_SECONDS = 1.0


def loop_seconds() -> float:
    try:
        value = float(os.environ.get("AETL_SENSOR_LOOP_SECONDS") or DEFAULT_LOOP_SECONDS)
    except ValueError:
        return DEFAULT_LOOP_SECONDS
    return min(max(value, 0.5), 30.0)


def fail_starting_runs_whose_worker_died() -> bool:
    """Wrap run monitoring's check of STARTING runs (see the module's docstring); False when this
    Dagster release has no such function (then only the start timeout applies)."""
    from dagster._daemon.monitoring import run_monitoring

    original = getattr(run_monitoring, "monitor_starting_run", None)
    if original is None:
        return False

    def monitor_starting_run(instance: Any, run_record: Any, logger: logging.Logger) -> None:
        from dagster._core.events import JobFailureData, RunFailureReason
        from dagster._core.storage.dagster_run import DagsterRunStatus

        from orchestration.run_launcher import WarmForkRunLauncher

        run = run_record.dagster_run
        launcher = instance.run_launcher
        if run.status == DagsterRunStatus.STARTING and isinstance(launcher, WarmForkRunLauncher):
            reason = launcher.died_before_start(run)
            if reason:
                logger.info(f"Run {run.run_id}: {reason}")
                failure = JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION)
                instance.report_run_failed(run, reason, failure)
                return
        original(instance, run_record, logger)

    run_monitoring.monitor_starting_run = monitor_starting_run
    return True


def main() -> int:
    from dagster._daemon import sensor
    from dagster._daemon.cli import main as dagster_daemon

    if hasattr(sensor, "MIN_INTERVAL_LOOP_TIME"):
        sensor.MIN_INTERVAL_LOOP_TIME = loop_seconds()  # type: ignore[assignment]
    else:  # a Dagster release without it: its own loop, slower watches, said once at start
        print("dagster_daemon: no sensor loop setting here; watches poll every ~5 s", file=sys.stderr)
    from dagster import DagsterInstance

    from orchestration.run_tags_repair import start_thread

    try:  # runs a crash left without their tag rows get them back (run_tags_repair.py)
        start_thread(DagsterInstance.get)
    except Exception as error:  # the daemon itself must start regardless
        print(f"dagster_daemon: no run tags repair ({type(error).__name__}: {error})", file=sys.stderr)
    if not fail_starting_runs_whose_worker_died():
        print(
            "dagster_daemon: no run monitoring hook here; dead STARTING runs wait for the start timeout",
            file=sys.stderr,
        )
    sys.argv[0] = "dagster-daemon"
    dagster_daemon()
    return 0


if __name__ == "__main__":
    sys.exit(main())
