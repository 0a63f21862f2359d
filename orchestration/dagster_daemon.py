"""`dagster-daemon` with a shorter sensor loop: `python -m orchestration.dagster_daemon run -w <workspace>`.

Dagster's sensor daemon evaluates sensors in a loop that runs at most every 5 s
(`dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME`), whatever a sensor's `minimum_interval_seconds`
says: a watched folder polled every second was in fact checked every 5 s, and a dropped file waited
up to 5 s before it was even seen. This entry point sets the loop to `AETL_SENSOR_LOOP_SECONDS`
(default 1 s) and runs Dagster's own daemon CLI. Each sensor still runs at most once per its own
interval; a loop with nothing due costs one read of the sensor states.
"""

from __future__ import annotations

import os
import sys

DEFAULT_LOOP_SECONDS = 1.0


def loop_seconds() -> float:
    try:
        value = float(os.environ.get("AETL_SENSOR_LOOP_SECONDS") or DEFAULT_LOOP_SECONDS)
    except ValueError:
        return DEFAULT_LOOP_SECONDS
    return min(max(value, 0.5), 30.0)


def main() -> int:
    from dagster._daemon import sensor
    from dagster._daemon.cli import main as dagster_daemon

    if hasattr(sensor, "MIN_INTERVAL_LOOP_TIME"):
        sensor.MIN_INTERVAL_LOOP_TIME = loop_seconds()  # type: ignore[assignment]
    else:  # a Dagster release without it: its own loop, slower watches, said once at start
        print("dagster_daemon: no sensor loop setting here; watches poll every ~5 s", file=sys.stderr)
    sys.argv[0] = "dagster-daemon"
    dagster_daemon()
    return 0


if __name__ == "__main__":
    sys.exit(main())
