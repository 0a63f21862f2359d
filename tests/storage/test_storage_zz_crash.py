"""Crash test (last of the storage tests: it restarts parts of the session stack): files dropped in a
watched folder, the run workers and the daemon killed with SIGKILL while imports run, both restarted;
afterwards every file's rows are in the table exactly once."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from storage_helpers import Caller, mount_local

from api.dagster_client import DagsterClient, RunStatus
from orchestration.defs.watches import TAG_WATCH
from orchestration.stack import Stack

pytestmark = pytest.mark.timeout(900)
FILES = 20  # as the issue asks
ROWS = 200


def _restart(stack: Stack, names: tuple[str, ...]) -> None:
    components = [c for c in stack.components if c.name in names]
    assert {c.name for c in components} == set(names)
    for component in components:
        component.signal_group(signal.SIGKILL)
        assert component.process is not None
        component.process.wait(timeout=30)
    for component in components:
        component.start(stack.env, stack.output)
    deadline = time.monotonic() + 240
    while not all(c.ready() for c in components):
        assert time.monotonic() < deadline, "restarted components not ready"
        assert all(c.alive() for c in components), "a restarted component died"
        time.sleep(0.5)


def test_each_file_exactly_once_after_killing_workers_and_daemon(
    api: httpx.Client,
    engineer: Caller,
    folder: Path,
    dagster: DagsterClient,
    warehouse: Client,
    database: str,
    stack: Stack,
) -> None:
    mount = mount_local(api, engineer, str(folder))
    created = api.post(
        "/mvp/storage/watch",
        headers=engineer.headers,
        json={
            "storage_id": mount["storage_id"],
            "file_pattern": "*.csv",
            "poll_interval_seconds": 1,
            "import_config": {"target_table": "crash", "target_database": database},
        },
    )
    assert created.status_code == 201, created.text
    tags = {TAG_WATCH: created.json()["watch_id"]}
    for index in range(FILES):
        lines = "".join(f"{index * ROWS + row},{index}\n" for row in range(ROWS))
        (folder / f"part_{index:02d}.csv").write_text("id,part\n" + lines)

    deadline = time.monotonic() + 240
    while not any(
        r.status is RunStatus.STARTED for r in dagster.list_runs(job_name="storage_import", tags=tags).items
    ):
        assert time.monotonic() < deadline, "no import run started"
        time.sleep(0.3)
    killed_at = time.time()
    _restart(stack, ("run-workers", "dagster-daemon"))
    print(f"restarted in {time.time() - killed_at:.1f} s")

    expected = [(f"part_{i:02d}.csv", ROWS) for i in range(FILES)]
    deadline = time.monotonic() + 420
    counts: list[tuple[str, int]] = []
    while time.monotonic() < deadline:
        if warehouse.command(f"EXISTS TABLE {database}.crash") == 1:
            counts = warehouse.query(
                f"SELECT _source_file, count() FROM {database}.crash "
                "GROUP BY _source_file ORDER BY _source_file"
            ).result_rows
            counts = [(str(name), int(count)) for name, count in counts]
            if counts == expected:
                break
        time.sleep(1)
    print(f"all rows in the table {time.time() - killed_at:.1f} s after the kill")
    assert counts == expected
    assert warehouse.command(f"SELECT uniqExact(id) = count() FROM {database}.crash") == 1

    # a run killed after its load was published is retried (run_retries): every file ends with one
    # successful run, and the retry replaced that file's rows rather than adding to them
    def succeeded() -> set[str]:
        runs = dagster.list_runs(job_name="storage_import", tags=tags, limit=100).items
        return {r.tags["aetl/file"] for r in runs if r.status is RunStatus.SUCCESS}

    deadline = time.monotonic() + 240
    while len(done := succeeded()) < FILES and time.monotonic() < deadline:
        time.sleep(1)
    print(_timeline(dagster, tags, killed_at))
    assert len(done) == FILES, _runs_of_files_without_success(dagster, tags, done)
    assert warehouse.query(
        f"SELECT _source_file, count() FROM {database}.crash GROUP BY _source_file ORDER BY _source_file"
    ).result_rows == [(name, count) for name, count in expected]


def _runs_of_files_without_success(dagster: DagsterClient, tags: dict[str, str], done: set[str]) -> str:
    """Every run of the files that have no successful run: status, tags and last events."""
    runs = dagster.list_runs(job_name="storage_import", tags=tags, limit=100).items
    missing = sorted({f"part_{i:02d}.csv" for i in range(FILES)} - done)
    lines = [f"files without a successful run: {missing}"]
    # the job's recent runs whatever their tags (a run of a missing file may lack the watch's)
    recent = dagster.list_runs(job_name="storage_import", limit=200).items
    suspects = [
        r
        for r in recent
        if (r.tags.get("aetl/file") in missing or TAG_WATCH not in r.tags)
        and time.time() - r.created_at.timestamp() < 900  # this test's minutes, not earlier tests'
    ]
    for run in {r.run_id: r for r in [*runs, *suspects]}.values():
        if run.tags.get("aetl/file") in done:
            continue
        lines.append(f"run {run.run_id} {run.status.value} created {run.created_at} tags={run.tags}")
        for event in dagster.get_run_logs(run.run_id).events[-12:]:
            step = event.step_key or ""
            error = f" error: {event.error[:300]}" if event.error else ""
            lines.append(f"  {event.timestamp} {event.event_type} {step} {event.message[:300]}{error}")
    return "\n".join(lines)


def _timeline(dagster: DagsterClient, tags: dict[str, str], killed_at: float) -> str:
    """Every run of the watch, oldest first, times in seconds from the kill: what each retry cost."""
    runs = dagster.list_runs(job_name="storage_import", tags=tags, limit=100).items

    def at(moment: Any) -> str:
        return "-" if moment is None else f"{moment.timestamp() - killed_at:+.1f}"

    lines = [f"{len(runs)} runs (times from the kill: created started ended)"]
    for run in sorted(runs, key=lambda r: r.created_at):
        lines.append(
            f"  {run.tags.get('aetl/file', '?')} {run.run_id[:8]} {run.status.value:<9} "
            f"retry={run.tags.get('dagster/retry_number', '0')} "
            f"{at(run.created_at)} {at(run.started_at)} {at(run.ended_at)}"
        )
    return "\n".join(lines)
