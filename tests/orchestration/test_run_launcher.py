"""The warm fork run launcher on the session stack: runs, terminate, a killed worker, stale-code guard."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from dagster import job, op
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from api.core.config import REPO_ROOT
from api.dagster_client import DagsterClient, Run, RunStatus
from orchestration.dagster_home import DAGSTER_YAML_TEMPLATE, render_dagster_yaml, run_worker_socket
from orchestration.run_launcher import (
    LOST_LAUNCH_SECONDS,
    RUN_LAUNCHER_TAG,
    RUN_WORKER_TAG,
    VIA_GRPC,
    WarmForkRunLauncher,
    cancel_grace_seconds,
    kill_tree,
    request_server,
)
from orchestration.run_launcher.proc import descendants, process_alive, process_start_ticks
from orchestration.stack import Stack

pytestmark = pytest.mark.timeout(600)  # the first test also waits for the session stack
MONITOR_POLL_SECONDS = 5  # dagster.yaml run_monitoring.poll_interval_seconds


@op
def nothing() -> None:
    pass


@job
def noop_job() -> None:
    """A job for runs made directly in an instance (never executed)."""
    nothing()


def sleep_config(seconds: float) -> dict[str, object]:
    return {"ops": {"sleep_op": {"config": {"seconds": seconds}}}}


@pytest.fixture(scope="module")
def dagster(stack: Stack) -> Iterator[DagsterClient]:
    assert stack.settings.run_launcher == "warm", "the session stack must run the warm launcher"
    stack.wait_for_run_workers()  # started after the rest; until then runs take the code-server path
    client = DagsterClient(stack.settings.dagster_url, timeout=30)
    yield client
    client.close()


def wait_for(client: DagsterClient, run_id: str, statuses: set[RunStatus], timeout: float) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        if run.status in statuses:
            return run
        assert not run.status.finished, f"run ended {run.status}, expected {statuses}"
        assert time.monotonic() < deadline, f"run still {run.status} after {timeout}s"
        time.sleep(0.1)


def worker_pid(run: Run) -> int:
    return int(json.loads(run.tags[RUN_WORKER_TAG])["pid"])


def test_run_is_forked_from_the_warm_server_and_its_events_are_stored(
    stack: Stack, dagster: DagsterClient
) -> None:
    server_pid = request_server(str(run_worker_socket(stack.settings.dagster_home)), {"op": "ping"})["pid"]
    submitted = time.monotonic()
    run_id = dagster.launch_run("sleep_job", run_config=sleep_config(0))
    run = wait_for(dagster, run_id, {RunStatus.SUCCESS}, timeout=60)
    print(f"warm sleep_job submit->SUCCESS {time.monotonic() - submitted:.2f}s")
    pid = worker_pid(run)
    messages = [e.message for e in dagster.get_run_logs(run_id).events]
    assert any(f"Run worker forked from the warm server (pid {pid}," in m for m in messages)
    assert f"Started process for run (pid: {pid})." in messages  # the worker itself, as `execute_run`
    kinds = [e.dagster_event_type for e in dagster.get_run_logs(run_id).events]
    assert kinds.index("RUN_START") < kinds.index("STEP_SUCCESS") < kinds.index("RUN_SUCCESS")
    assert pid != server_pid
    deadline = time.monotonic() + 10
    while process_alive(pid, None) and time.monotonic() < deadline:  # the worker exits after the run
        time.sleep(0.1)
    assert not process_alive(pid, None)


def test_default_tag_launches_through_the_code_server(dagster: DagsterClient) -> None:
    run_id = dagster.launch_run("sleep_job", run_config=sleep_config(0), tags={RUN_LAUNCHER_TAG: "default"})
    run = wait_for(dagster, run_id, {RunStatus.SUCCESS}, timeout=90)
    assert RUN_WORKER_TAG not in run.tags
    assert not any("WarmForkRunLauncher" in e.message for e in dagster.get_run_logs(run_id).events)


def test_terminate_stops_the_forked_worker_and_cancels_the_run(dagster: DagsterClient) -> None:
    run_id = dagster.launch_run("sleep_job", run_config=sleep_config(120))
    run = wait_for(dagster, run_id, {RunStatus.STARTED}, timeout=60)
    pid = worker_pid(run)
    assert process_alive(pid, None)
    dagster.terminate_run(run_id)
    run = wait_for(dagster, run_id, {RunStatus.CANCELED}, timeout=30)
    assert run.ended_at is not None
    deadline = time.monotonic() + 15
    while process_alive(pid, None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(pid, None)


def test_a_worker_that_dies_without_recording_the_cancel_still_ends_canceled(dagster: DagsterClient) -> None:
    # the race of a terminate that lands before the worker installed Dagster's handler (or before it
    # read the run): the worker ends without writing RUN_CANCELED. Stop the worker so that SIGTERM
    # stays pending, terminate, then kill it: nothing from the worker, yet the run must end CANCELED
    # at once (run monitoring's cancel timeout would take 60 s; it never fails a CANCELING run).
    run_id = dagster.launch_run("sleep_job", run_config=sleep_config(120))
    pid = worker_pid(wait_for(dagster, run_id, {RunStatus.STARTED}, timeout=60))
    os.kill(pid, signal.SIGSTOP)
    try:
        dagster.terminate_run(run_id)
        assert dagster.get_run(run_id).status == RunStatus.CANCELING
    finally:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(dagster, run_id, {RunStatus.CANCELED}, timeout=15)
    print(f"worker killed during cancel -> CANCELED in {time.monotonic() - killed:.1f}s")
    messages = " ".join(e.message for e in dagster.get_run_logs(run_id).events)
    assert "ended without recording the cancellation" in messages and "killed by SIGKILL" in messages


def test_a_worker_that_does_not_stop_after_sigterm_is_killed(dagster: DagsterClient) -> None:
    # a worker stuck where the interrupt cannot reach it (here: stopped, so SIGTERM stays pending)
    # is killed after the grace period, with what it started, and the run ends CANCELED
    run_id = dagster.launch_run("sleep_job", run_config=sleep_config(120))
    pid = worker_pid(wait_for(dagster, run_id, {RunStatus.STARTED}, timeout=60))
    os.kill(pid, signal.SIGSTOP)
    grace = cancel_grace_seconds()
    try:
        dagster.terminate_run(run_id)
        asked = time.monotonic()
        wait_for(dagster, run_id, {RunStatus.CANCELED}, timeout=grace + 20)
        took = time.monotonic() - asked
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print(f"stuck worker: terminate -> CANCELED in {took:.1f}s (grace {grace:g}s)")
    assert took >= grace - 1, "killed before its grace period"
    assert not process_alive(pid, None)
    messages = " ".join(e.message for e in dagster.get_run_logs(run_id).events)
    assert f"did not stop within {grace:g} s of SIGTERM" in messages and "killed by SIGKILL" in messages


def test_kill_tree_kills_a_process_and_everything_below_it() -> None:
    # a parent that started a child in its own session (as a python step does) and a grandchild
    code = (
        "import subprocess, os, time; "
        "subprocess.Popen(['sh', '-c', 'sleep 300 & sleep 300'], start_new_session=True); time.sleep(300)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while len(descendants(parent.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    below = descendants(parent.pid)
    assert len(below) == 3, below  # sh and its two sleeps
    kill_tree(parent.pid, process_start_ticks(parent.pid))
    assert parent.wait(timeout=10) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(process_alive(p, None) for p in below) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(p, None) for p in below)


def test_killed_worker_is_failed_by_run_monitoring(dagster: DagsterClient) -> None:
    run_id = dagster.launch_run("sleep_job", run_config=sleep_config(120))
    run = wait_for(dagster, run_id, {RunStatus.STARTED}, timeout=60)
    os.kill(worker_pid(run), signal.SIGKILL)  # an OOM kill: no chance to report anything
    killed = time.monotonic()
    run = wait_for(dagster, run_id, {RunStatus.FAILURE}, timeout=MONITOR_POLL_SECONDS + 25)
    print(f"killed worker -> FAILURE in {time.monotonic() - killed:.1f}s")
    messages = " ".join(e.message for e in dagster.get_run_logs(run_id).events)
    assert "Detected run worker status FAILED" in messages and "killed by SIGKILL" in messages


def test_a_worker_killed_before_its_run_started_fails_the_run_at_once(dagster: DagsterClient) -> None:
    # the worker is frozen between its fork (the launcher has tagged the run) and RUN_START, then
    # killed: Dagster's monitoring alone would leave the run STARTING for start_timeout_seconds (120)
    for _attempt in range(5):
        run_id = dagster.launch_run("sleep_job", run_config=sleep_config(0))
        deadline = time.monotonic() + 60
        while RUN_WORKER_TAG not in (run := dagster.get_run(run_id)).tags:
            assert time.monotonic() < deadline and not run.status.finished, run.status
            time.sleep(0.005)
        pid = worker_pid(run)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        if dagster.get_run(run_id).status is RunStatus.STARTING:
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # it started the run first: let it finish, try again
        wait_for(dagster, run_id, {RunStatus.SUCCESS}, timeout=60)
    else:
        pytest.fail("five workers started their runs before they could be frozen")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    run = wait_for(dagster, run_id, {RunStatus.FAILURE}, timeout=MONITOR_POLL_SECONDS + 25)
    took = time.monotonic() - killed
    print(f"worker killed before RUN_START -> FAILURE in {took:.1f}s (start timeout: 120 s)")
    events = dagster.get_run_logs(run_id).events
    assert "RUN_START" not in [e.dagster_event_type for e in events]  # it never started
    messages = " ".join(e.message for e in events)
    assert took < 60
    assert "The run worker ended before the run started" in messages and "killed by SIGKILL" in messages


def test_starting_runs_judged_by_their_worker_or_its_absence(tmp_path: Path) -> None:
    # a real (temporary) Dagster instance with a STARTING run, as the daemon leaves it when it is
    # killed inside launch_run: no worker tag, no fallback tag
    from dagster import instance_for_test
    from dagster._core.events import DagsterEvent, DagsterEventType

    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        launcher = WarmForkRunLauncher(socket_path=str(tmp_path / "no-server.sock"))
        launcher.register_instance(instance)
        run_id = instance.create_run_for_job(job_def=noop_job).run_id
        starting = DagsterEvent(DagsterEventType.PIPELINE_STARTING.value, job_name="noop_job")
        instance.report_dagster_event(starting, run_id=run_id)
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status is DagsterRunStatus.STARTING
        launched = instance.get_run_stats(run_id).launch_time
        assert launched is not None
        assert launcher.died_before_start(run, now=launched + LOST_LAUNCH_SECONDS - 5) is None
        lost = launcher.died_before_start(run, now=launched + LOST_LAUNCH_SECONDS + 1)
        assert lost is not None and "No run worker was started for the run" in lost

        def tagged(tags: dict[str, str]) -> DagsterRun:
            instance.add_run_tags(run_id, tags)
            current = instance.get_run_by_id(run_id)
            assert current is not None
            return current

        late = launched + 3600
        # handed to the code server (the fallback): its worker is not ours to judge
        assert launcher.died_before_start(tagged({RUN_LAUNCHER_TAG: VIA_GRPC}), now=late) is None
        # a worker that is alive (this very process): not judged, however late
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_ticks": process_start_ticks(os.getpid()),
        }
        assert launcher.died_before_start(tagged({RUN_WORKER_TAG: json.dumps(me)}), now=late) is None
        # one on another host: not ours to judge
        elsewhere = {**me, "host": "another-host"}
        assert launcher.died_before_start(tagged({RUN_WORKER_TAG: json.dumps(elsewhere)}), now=late) is None
        # one that is gone
        ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        gone = {**me, "pid": int(ended.stdout)}
        died = launcher.died_before_start(tagged({RUN_WORKER_TAG: json.dumps(gone)}), now=launched)
        assert died is not None and died.startswith("The run worker ended before the run started")
        # a run that started meanwhile is left alone
        instance.report_dagster_event(
            DagsterEvent(DagsterEventType.PIPELINE_START.value, job_name="noop_job"), run_id
        )
        assert launcher.died_before_start(run, now=late) is None


def test_preload_refuses_code_location_modules() -> None:
    # a warm parent that imported a location would fork stale code after a reload (fresh interpreter:
    # this test process may have imported the module already)
    code = (
        "from orchestration.run_launcher.server import preload; preload(('orchestration.defs.maintenance',), "
    )
    code += f"__import__('pathlib').Path({str(REPO_ROOT)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "'orchestration.defs.maintenance'" in result.stderr and "stale code" in result.stderr


def test_a_helper_thread_that_ends_soon_does_not_stop_the_server_but_one_that_stays_does() -> None:
    # fresh interpreters: this test process has threads of its own
    code = (
        "import threading, time; from orchestration.run_launcher.server import single_threaded_within\n"
        "threading.Thread(target=time.sleep, args=({work},), daemon=True).start()\n"
        "print(single_threaded_within({wait}))"
    )
    for work, wait, threads in ((0.5, 5.0, "1"), (30.0, 0.5, "2")):
        result = subprocess.run(
            [sys.executable, "-c", code.format(work=work, wait=wait)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.stdout.strip() == threads, result.stderr


def test_dagster_yaml_renders_either_launcher(tmp_path: Path) -> None:
    warm = yaml.safe_load(render_dagster_yaml(DAGSTER_YAML_TEMPLATE.read_text(), tmp_path))
    assert warm["run_launcher"]["class"] == "WarmForkRunLauncher"
    assert warm["run_launcher"]["config"]["socket_path"] == str(run_worker_socket(tmp_path))
    default = yaml.safe_load(render_dagster_yaml(DAGSTER_YAML_TEMPLATE.read_text(), tmp_path, "default"))
    assert default["run_launcher"] == {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}
    assert {k: v for k, v in default.items() if k != "run_launcher"} == {
        k: v for k, v in warm.items() if k != "run_launcher"
    }
    with pytest.raises(ValueError):
        render_dagster_yaml(DAGSTER_YAML_TEMPLATE.read_text(), tmp_path, "kubernetes")


def test_a_run_that_lost_its_tag_rows_gets_them_back(dagster_instance: Any) -> None:
    # What a process killed between Dagster's two statements of a new run leaves (the run's row, then
    # its tag rows, each committed on its own): the run, without tag rows. Built here by deleting
    # them; the launcher then adds its worker tag, as it does on launch.
    import sqlalchemy as db
    from dagster import RunsFilter
    from dagster._core.storage.runs.schema import RunTagsTable

    from orchestration.run_tags_repair import RunTagsRepair

    marker = {"aetl/test-marker": uuid.uuid4().hex}
    repair = RunTagsRepair(dagster_instance.run_storage)
    repair.once()  # starts after the runs that exist now
    whole = dagster_instance.create_run_for_job(job_def=noop_job, tags={**marker, "aetl/other": "1"})
    lost = dagster_instance.create_run_for_job(job_def=noop_job, tags=marker)
    with dagster_instance.run_storage.connect() as conn:
        conn.execute(db.delete(RunTagsTable).where(RunTagsTable.c.run_id == lost.run_id))
    dagster_instance.add_run_tags(lost.run_id, {RUN_WORKER_TAG: "{}"})

    def found() -> set[str]:
        return {r.run_id for r in dagster_instance.get_runs(filters=RunsFilter(tags=marker))}

    assert found() == {whole.run_id}
    assert repair.once() == {}  # too young: its creator may still be writing them
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert repair.once(now=later) == {lost.run_id: ["aetl/test-marker"]}
    assert found() == {whole.run_id, lost.run_id}
    assert repair.once(now=later) == {}  # each run is looked at once
