"""The warm run-worker server: a pre-imported Python that forks one child per Dagster run.

    python -m orchestration.run_launcher.server --socket $DAGSTER_HOME/run_workers.sock

Started by the stack supervisor (component `run-workers`). At start it imports Dagster, its run
machinery and the heavy third-party libraries the code locations use (PRELOAD_MODULES) — but no
module of this repository's code locations, so every run loads the *current* code location in its
child, exactly as a fresh `dagster api execute_run` would; a reloaded location is never stale.

Protocol: one JSON line per connection on a Unix socket (mode 0600, inside DAGSTER_HOME):
  {"op": "ping"}                            -> {"pid", "executable", "preloaded"}
  {"op": "run", "execute_run_args": str}    -> {"pid", "start_ticks"}  (serialized ExecuteRunArgs)
  {"op": "exit_status", "pid": int}         -> {"exit": str | null}     (how a recent child ended)

The child runs the body of `dagster api execute_run` (same instance, events, interrupt handling:
SIGTERM becomes Dagster's interrupt, so termination ends the run CANCELED) and then `os._exit`s.
Fork safety: the parent never starts a thread, a gRPC channel or a database connection; start-up
refuses to serve if an import left an extra OS thread behind.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

from orchestration.run_launcher.proc import process_start_ticks

# What a run worker of our locations imports that is expensive and not our own code (measured with
# `python -X importtime`); a missing one is skipped, a project module here would make runs stale.
PRELOAD_MODULES = (
    "dagster",
    "dagster._cli.api",
    "dagster._core.execution.api",
    "dagster._core.execution.plan.execute_plan",
    "dagster._core.storage.fs_io_manager",
    # imported lazily by every run worker (found with $AETL_RUN_WORKER_IMPORTS_FILE)
    "dagster._core.instance.factory",
    "dagster._core.storage.root",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.executor.in_process",
    "dagster._core.execution.plan.active",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dagster._core.definitions.external_asset",
    "dagster._core.system_config.composite_descent",
    "dagster._core.utility_ops",
    "fsspec.implementations.local",
    "upath.implementations.local",
    "psycopg2.extras",
    "watchdog.observers.polling",
    "watchdog.utils.dirsnapshot",
    "dagster_postgres",
    "psycopg2",
    "sqlalchemy",
    "httpx",
    "pyarrow",
    "pandas",
    "clickhouse_connect",
    "dagster_dbt",
)
# Libraries that start native threads at import, switched to stay single-threaded (inherited by the
# run workers): OpenBLAS (numpy) spawns a pool per core, Arrow's jemalloc a background purge thread.
FORK_SAFE_ENV = {"OPENBLAS_NUM_THREADS": "1", "JE_ARROW_MALLOC_CONF": "background_thread:false"}
MAX_REQUEST_BYTES = 1 << 20
THREAD_SETTLE_SECONDS = 10.0
RECENT_EXITS = 256


def log(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"[run-workers {time.strftime('%H:%M:%S')}] {message}", flush=True)


def project_modules(project_root: Path) -> set[str]:
    return {name for name, module in list(sys.modules.items()) if _is_project_module(module, project_root)}


def preload(modules: tuple[str, ...], project_root: Path) -> list[str]:
    """Import `modules`; refuse if that pulled in any module of the repository (a code location)."""
    own_before = project_modules(project_root)  # this server and its package: not code locations
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ImportError as error:
            log(f"preload: {name} not importable, skipped ({error})")
    pulled_in = sorted(project_modules(project_root) - own_before)
    if pulled_in:
        raise SystemExit(f"preload imported code-location modules {pulled_in}: runs would use stale code")
    return loaded


def _is_project_module(module: object, project_root: Path) -> bool:
    path = getattr(module, "__file__", None)
    if not path:
        return False
    resolved = Path(path).resolve()
    return resolved.is_relative_to(project_root) and ".venv" not in resolved.parts


def os_thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def single_threaded_within(seconds: float) -> int:
    """The OS thread count once it is 1, or after `seconds`: a helper thread an import started may
    still be finishing its work on a loaded machine, which is no reason to refuse to serve."""
    deadline = time.monotonic() + seconds
    while (threads := os_thread_count()) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    return threads


class RunWorkerServer:
    def __init__(self, socket_path: Path, preloaded: list[str]) -> None:
        self.socket_path = socket_path
        self.preloaded = preloaded
        self.exits: OrderedDict[int, str] = OrderedDict()
        self.children: set[int] = set()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def bind(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        old_umask = os.umask(0o177)  # socket file 0600: only our user may ask for a fork
        try:
            self.listener.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        self.listener.listen(64)
        self.listener.settimeout(1.0)

    def close(self) -> None:
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            if os.WIFSIGNALED(status):
                ended = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
            else:
                ended = f"exit code {os.WEXITSTATUS(status)}"
            self.exits[pid] = ended
            while len(self.exits) > RECENT_EXITS:
                self.exits.popitem(last=False)
            log(f"run worker {pid} ended: {ended}")

    def serve_forever(self) -> None:
        while True:
            self.reap()
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10.0)
                try:
                    request = json.loads(_read_line(conn))
                    reply = self.handle(conn, request)
                except Exception as error:  # a bad request must never stop the server
                    reply = {"error": f"{type(error).__name__}: {error}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def handle(self, conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"pid": os.getpid(), "executable": sys.executable, "preloaded": self.preloaded}
        if op == "exit_status":
            self.reap()
            return {"exit": self.exits.get(int(request["pid"]))}
        if op == "run":
            args = request["execute_run_args"]
            if not isinstance(args, str):
                raise TypeError("execute_run_args must be a serialized ExecuteRunArgs string")
            pid = os.fork()
            if pid == 0:
                self._become_run_worker(conn, args)  # never returns
            self.children.add(pid)
            return {"pid": pid, "start_ticks": process_start_ticks(pid)}
        raise ValueError(f"unknown op {op!r}")

    def _become_run_worker(self, conn: socket.socket, execute_run_args: str) -> None:
        code = 1
        try:
            conn.close()
            self.listener.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            gc.unfreeze()
            imported_before = set(sys.modules)
            started = time.monotonic()
            code = run_worker_main(execute_run_args)
            log_late_imports(imported_before, time.monotonic() - started)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def log_late_imports(imported_before: set[str], seconds: float) -> None:
    """What a run worker still had to import (candidates for PRELOAD_MODULES); the list itself goes to
    $AETL_RUN_WORKER_IMPORTS_FILE when set."""
    late = sorted(set(sys.modules) - imported_before)
    log(f"run worker {os.getpid()} done in {seconds:.2f}s; imported {len(late)} modules after the fork")
    if target := os.environ.get("AETL_RUN_WORKER_IMPORTS_FILE"):
        Path(target).write_text("\n".join(late) + "\n")


def run_worker_main(execute_run_args: str) -> int:
    """The body of `dagster api execute_run <args>` (its click callback), inside the forked child."""
    from dagster._cli.api import execute_run_command

    assert execute_run_command.callback is not None
    execute_run_command.callback(input_json=execute_run_args, compressed_input_json=None)
    return 0


def _read_line(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while not chunks or not chunks[-1].endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
    return b"".join(chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.run_launcher.server")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    for name, value in FORK_SAFE_ENV.items():
        os.environ.setdefault(name, value)
    started = time.monotonic()
    preloaded = preload(PRELOAD_MODULES, args.project_root.resolve())
    threads = single_threaded_within(THREAD_SETTLE_SECONDS)
    if threads != 1 or threading.active_count() != 1:
        names = [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")]
        raise SystemExit(f"refusing to fork run workers: {threads} OS threads after preload: {names}")
    gc.collect()
    gc.freeze()  # objects imported so far stay out of the children's GC: their pages stay shared
    server = RunWorkerServer(args.socket, preloaded)
    server.bind()
    log(f"ready in {time.monotonic() - started:.1f}s on {args.socket} (preloaded {len(preloaded)} modules)")
    try:
        server.serve_forever()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
