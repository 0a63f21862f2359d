"""WarmForkRunLauncher: Dagster run workers forked from a warm, pre-imported process.

Dagster's DefaultRunLauncher asks the code server to start each run in a freshly spawned Python,
which imports Dagster and the code location again (~3-5 s on 2 cores). This launcher instead asks
the run-worker server (orchestration/run_launcher/server.py, started by the stack supervisor) to
fork a child that has Dagster and the heavy libraries already imported; the child loads the code
location itself (so a reloaded location is never stale) and runs `dagster api execute_run`'s body.

Dagster's semantics are kept:
- run storage and events: the child is an ordinary run worker on the same instance;
- terminate: RUN_CANCELING is reported, then SIGTERM goes to the worker, whose Dagster interrupt
  handling ends the run CANCELED (the same path Docker/K8s launchers use); a worker that ends
  without recording it (signalled before its handler existed, or not yet started) is watched and
  its run reported CANCELED at once instead of after run monitoring's cancel timeout; one still
  alive with its run unfinished AETL_RUN_CANCEL_GRACE_SECONDS after SIGTERM is killed with the
  processes it started (as Kubernetes does after a pod's grace period) and its run reported CANCELED;
- run monitoring: `check_run_worker_health` looks the worker up by pid + start time (tag
  `aetl/run_worker`), so a worker that died (OOM, kill -9) makes the monitor fail the run; one that
  died before its run started, or a run no worker was ever forked for (`died_before_start`), fails
  too, not after the start timeout;
- when the server is unreachable, or a location runs on another Python, the run goes through the
  code server's gRPC exactly as DefaultRunLauncher does (`fallback_to_grpc`).
The launcher lives in dagster-daemon (launch, monitor) and dagster-webserver (terminate); both
find the worker through the run's tags, so no state is kept in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, Self

from dagster import _check as check
from dagster._config.config_schema import UserConfigSchema
from dagster._core.launcher import (
    CheckRunHealthResult,
    DefaultRunLauncher,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from orchestration.run_launcher.proc import descendants, process_alive

RUN_WORKER_TAG = "aetl/run_worker"
# a run tagged `aetl/run_launcher: default` goes through the code server like DefaultRunLauncher
# (A/B latency comparison on one stack: benchmarks/run_latency.py)
RUN_LAUNCHER_TAG = "aetl/run_launcher"
VIA_GRPC = "grpc-fallback"  # the value of RUN_LAUNCHER_TAG on a run the fallback launched
# how long terminate waits for a run the daemon is launching right now to get its worker tag
LAUNCH_IN_FLIGHT_WAIT_S = 10.0
# how long after SIGTERM terminate watches the worker, and how often (see terminate)
CANCEL_WATCH_S = 120.0
CANCEL_WATCH_POLL_S = 0.1
# how long a worker has after SIGTERM to record the cancel before it is killed
CANCEL_GRACE_ENV = "AETL_RUN_CANCEL_GRACE_SECONDS"
CANCEL_GRACE_DEFAULT_S = 20.0
# a STARTING run with neither a worker tag nor the fallback's tag this long after its launch was lost
# with the daemon that launched it (a live launch_run takes at most two 10 s socket timeouts)
LOST_LAUNCH_SECONDS = 45.0


def cancel_grace_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get(CANCEL_GRACE_ENV, CANCEL_GRACE_DEFAULT_S)))
    except ValueError:
        return CANCEL_GRACE_DEFAULT_S


def kill_tree(pid: int, start_ticks: int | None) -> list[int]:
    """SIGKILL the worker (if it is still that very process) and every process below it; returns
    the pids below it."""
    below = descendants(pid)
    if process_alive(pid, start_ticks):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for child in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    return below


def _watch(run_id: str, target: Any, *args: Any) -> None:
    """A daemon thread that sees a terminate through (terminate itself answers at once)."""
    threading.Thread(target=target, args=args, name=f"aetl-cancel-{run_id[:8]}", daemon=True).start()


class RunWorkerServerError(Exception):
    pass


def request_server(socket_path: str, request: Mapping[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One JSON request/answer with the run-worker server."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(socket_path)
            conn.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as error:
            raise RunWorkerServerError(f"run-worker server at {socket_path}: {error}") from error
    if not data:
        raise RunWorkerServerError(f"run-worker server at {socket_path} closed the connection")
    reply: dict[str, Any] = json.loads(data)
    if "error" in reply:
        raise RunWorkerServerError(str(reply["error"]))
    return reply


class WarmForkRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(
        self,
        socket_path: str,
        fallback_to_grpc: bool = True,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.fallback_to_grpc = fallback_to_grpc
        self._inst_data = inst_data
        self._grpc_launcher = DefaultRunLauncher()
        self._server_executable: str | None = None
        super().__init__()

    # -- configuration (dagster.yaml) ----------------------------------------------------------

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        from dagster import Field, StringSource

        return {
            "socket_path": Field(StringSource, description="Unix socket of the run-worker server."),
            "fallback_to_grpc": Field(
                bool,
                default_value=True,
                description="Launch through the code server (as DefaultRunLauncher) if unreachable.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance: Any) -> None:
        super().register_instance(instance)
        self._grpc_launcher.register_instance(instance)

    # -- launch ---------------------------------------------------------------------------------

    def _server_python(self) -> str:
        if self._server_executable is None:
            self._server_executable = str(request_server(self.socket_path, {"op": "ping"})["executable"])
        return self._server_executable

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = check.not_none(run.job_code_origin, "run has no code origin")
        if run.tags.get(RUN_LAUNCHER_TAG) == "default":
            self._grpc_launcher.launch_run(context)
            return
        started = time.monotonic()
        try:
            if origin.executable_path and os.path.abspath(origin.executable_path) != os.path.abspath(
                self._server_python()
            ):
                raise RunWorkerServerError(
                    f"location runs on {origin.executable_path}, the server on {self._server_python()}"
                )
            args = ExecuteRunArgs(job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref())
            reply = request_server(self.socket_path, {"op": "run", "execute_run_args": serialize_value(args)})
        except RunWorkerServerError as error:
            self._server_executable = None
            if not self.fallback_to_grpc:
                raise
            self._instance.report_engine_event(
                f"Warm run-worker server not used ({error}); launching through the code server.",
                run,
                cls=self.__class__,
            )
            self._instance.add_run_tags(run.run_id, {RUN_LAUNCHER_TAG: VIA_GRPC})
            self._grpc_launcher.launch_run(context)
            return
        worker = {"host": socket.gethostname(), "pid": reply["pid"], "start_ticks": reply["start_ticks"]}
        self._instance.add_run_tags(run.run_id, {RUN_WORKER_TAG: json.dumps(worker)})
        self._instance.report_engine_event(
            f"Run worker forked from the warm server (pid {reply['pid']}, "
            f"{(time.monotonic() - started) * 1000:.0f} ms).",
            run,
            cls=self.__class__,
        )

    # -- find the worker of a run -------------------------------------------------------------

    @staticmethod
    def worker_of(run: DagsterRun) -> dict[str, Any] | None:
        raw = run.tags.get(RUN_WORKER_TAG)
        return json.loads(raw) if raw else None

    @staticmethod
    def _launched_through_grpc(run: DagsterRun) -> bool:
        return run.tags.get(RUN_LAUNCHER_TAG) in ("default", VIA_GRPC)

    def _worker_here(self, worker: Mapping[str, Any]) -> bool:
        return worker.get("host") == socket.gethostname()

    # -- terminate ------------------------------------------------------------------------------

    def terminate(self, run_id: str) -> bool:
        check.str_param(run_id, "run_id")
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        worker = self.worker_of(run)
        # The daemon may have dequeued the run (STARTING) and still be inside launch_run: the
        # worker's tag comes a moment later. Wait for it rather than answer "unable to terminate".
        deadline = time.monotonic() + LAUNCH_IN_FLIGHT_WAIT_S
        while worker is None and not self._launched_through_grpc(run) and time.monotonic() < deadline:
            time.sleep(0.1)
            run = self._instance.get_run_by_id(run_id)
            if not run or run.is_finished:
                return False
            worker = self.worker_of(run)
        if worker is None:  # launched through the gRPC fallback: the code server owns the worker
            answered = self._grpc_launcher.terminate(run_id)
            # A cancel that reaches the code server before its worker has started the run is lost:
            # the worker's RUN_START then turns CANCELING back into STARTED. Cancel again if so.
            _watch(run_id, self.repeat_lost_grpc_cancel, run_id)
            return answered
        if not self._worker_here(worker):
            self._instance.report_engine_event(
                f"Run worker {worker.get('pid')} is on host {worker.get('host')}, not here; "
                "nothing to terminate.",
                run,
                cls=self.__class__,
            )
            return False
        self._instance.report_run_canceling(run)
        pid, start_ticks = int(worker["pid"]), worker.get("start_ticks")
        if process_alive(pid, start_ticks):
            # Dagster's own interrupt handling in the worker turns SIGTERM into a CANCELED run
            os.kill(pid, signal.SIGTERM)
        # ...unless the worker never records it: SIGTERM before Dagster's handler is installed
        # (default action: death), or a worker that had not read the run yet finds it CANCELING and
        # exits as a "duplicate". Then the run would sit in CANCELING until run monitoring's cancel
        # timeout; a watcher ends it as soon as the worker is gone.
        _watch(run_id, self.finish_cancel_when_worker_exits, run_id, pid, start_ticks)
        return True

    def repeat_lost_grpc_cancel(self, run_id: str, timeout: float = CANCEL_WATCH_S) -> int:
        """Watch a run terminated through the code server; while it shows STARTED again (its worker
        started after the cancel), ask again (at most 5 times). Returns how many times it asked."""
        deadline, asked = time.monotonic() + timeout, 0
        while time.monotonic() < deadline and asked < 5:
            time.sleep(CANCEL_WATCH_POLL_S * 5)
            run = self._instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                break
            if run.status == DagsterRunStatus.STARTED:
                asked += 1
                self._instance.report_engine_event(
                    "The cancel reached the code server before the run had started; asking again.",
                    run,
                    cls=self.__class__,
                )
                self._grpc_launcher.terminate(run_id)
        return asked

    def finish_cancel_when_worker_exits(
        self,
        run_id: str,
        pid: int,
        start_ticks: int | None,
        timeout: float = CANCEL_WATCH_S,
        grace: float | None = None,
    ) -> bool:
        """Wait for the worker to end; if the run is still unfinished then, report it CANCELED.

        A worker still alive with its run unfinished `grace` seconds after SIGTERM (stuck where the
        interrupt cannot reach it) is killed with everything it started, as Kubernetes does after a
        pod's grace period. Returns True when this call ended the run."""
        grace = cancel_grace_seconds() if grace is None else grace
        started = time.monotonic()
        killed = False
        while process_alive(pid, start_ticks):
            waited = time.monotonic() - started
            if waited >= timeout:
                return False  # still running: run monitoring's cancel timeout takes it from here
            if not killed and waited >= grace:
                run = self._instance.get_run_by_id(run_id)
                if run is None or run.is_finished:
                    return False  # it recorded the cancel and is only exiting
                below = kill_tree(pid, start_ticks)
                killed = True
                self._instance.report_engine_event(
                    f"Run worker {pid} did not stop within {grace:g} s of SIGTERM; killed it "
                    f"and the {len(below)} process(es) it started.",
                    run,
                    cls=self.__class__,
                )
            time.sleep(CANCEL_WATCH_POLL_S)
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        ended = self.get_run_worker_debug_info(run) or f"run worker {pid} is gone"
        self._instance.report_run_canceled(
            run, message=f"Run worker ended without recording the cancellation ({ended}); run canceled."
        )
        return True

    # -- run monitoring -------------------------------------------------------------------------

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = self.worker_of(run)
        if worker is None:
            # launched through the gRPC fallback: like DefaultRunLauncher, nothing to check
            return CheckRunHealthResult(WorkerStatus.RUNNING, "worker owned by the code server; not checked")
        pid = int(worker["pid"])
        if not self._worker_here(worker):
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"run worker is on host {worker.get('host')}")
        if process_alive(pid, worker.get("start_ticks")):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} is gone", run_worker_id=str(pid)
        )

    def died_before_start(self, run: DagsterRun, now: float | None = None) -> str | None:
        """Why a STARTING run will never start, or None. Either it was forked from the warm server here
        and its worker is gone (killed with the server, OOM) before it recorded RUN_START; or no
        worker was ever forked for it: no worker tag, not handed to the code server, and launched
        LOST_LAUNCH_SECONDS ago (the daemon stopped inside launch_run; a live one tags the run or
        falls back within two socket timeouts). Dagster's run monitoring checks only STARTED runs'
        workers and waits start_timeout_seconds on STARTING ones; orchestration.dagster_daemon asks
        this first, so such a run fails (and is retried where its job asks for retries) sooner."""
        worker = self.worker_of(run)
        if worker is None:
            return self._launch_lost(run, time.time() if now is None else now)
        if not self._worker_here(worker):
            return None
        pid = int(worker["pid"])
        if process_alive(pid, worker.get("start_ticks")):
            return None
        # the worker is gone; whatever it recorded before it went is in the run's status by now
        current = self._instance.get_run_by_id(run.run_id)
        if current is None or current.status != DagsterRunStatus.STARTING:
            return None
        ended = self.get_run_worker_debug_info(current) or f"run worker {pid} is gone"
        return f"The run worker ended before the run started ({ended})."

    def _launch_lost(self, run: DagsterRun, now: float) -> str | None:
        if self._launched_through_grpc(run):
            return None  # the code server's worker: not ours to judge
        launched = self._instance.get_run_stats(run.run_id).launch_time
        if launched is None or now - launched < LOST_LAUNCH_SECONDS:
            return None
        current = self._instance.get_run_by_id(run.run_id)
        if (
            current is None
            or current.status != DagsterRunStatus.STARTING
            or self.worker_of(current) is not None
            or self._launched_through_grpc(current)
        ):
            return None
        return (
            f"No run worker was started for the run within {LOST_LAUNCH_SECONDS:g} s of its launch "
            "(the daemon stopped while launching it)."
        )

    def get_run_worker_debug_info(
        self, run: DagsterRun, include_container_logs: bool | None = True
    ) -> str | None:
        worker = self.worker_of(run)
        if worker is None:
            return None
        try:
            ended = request_server(self.socket_path, {"op": "exit_status", "pid": int(worker["pid"])})["exit"]
        except RunWorkerServerError as error:
            return f"run worker {worker['pid']}: exit status unknown ({error})"
        return f"run worker {worker['pid']}: {ended or 'exit status unknown'}"

    def dispose(self) -> None:
        self._grpc_launcher.dispose()


__all__ = [
    "RUN_LAUNCHER_TAG",
    "RUN_WORKER_TAG",
    "RunWorkerServerError",
    "WarmForkRunLauncher",
    "request_server",
]
