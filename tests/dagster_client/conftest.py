"""A real Dagster for the client tests: warehouse + dagster-webserver + dagster-daemon subprocesses.

Started exactly as the stack supervisor should start them (see `DagsterProcesses`): a DAGSTER_HOME
rendered from the repo's dagster.yaml, its own PostgreSQL database (aetl_dagster_test_<id>, dropped at
the end), the repo's workspace.yaml, cwd = repo root. `dagster_url` and `warehouse_url` shadow the
stack-wide fixtures of tests/conftest.py; delete them here to run against the shared stack.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from api.dagster_client import DagsterClient, DagsterClientError
from orchestration.dagster_home import WORKSPACE_YAML, prepare_dagster_home
from orchestration.dbt import prepare_dbt_manifest
from orchestration.lib.pg import drop_pg_database

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_SERVER = os.environ.get("AETL_TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
STARTUP = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A subprocess in its own process group (webserver and daemon spawn code servers and run workers)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Stray grandchildren (code servers, run workers) share the group: make sure they are gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def _wait(what: str, ready: Callable[[], bool], children: list[Child], timeout: float = STARTUP) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited ({child.proc.returncode}):\n{child.log_tail()}")
        try:
            if ready():
                return
        except (httpx.HTTPError, DagsterClientError) as error:
            last = error
        time.sleep(0.2)
    logs = "\n".join(f"--- {c.name}\n{c.log_tail()}" for c in children)
    raise RuntimeError(f"{what} not ready after {timeout}s (last: {last!r})\n{logs}")


class DagsterProcesses:
    """warehouse + dagster-webserver + dagster-daemon, the way the stack runs them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[Child] = []
        self.pg_url = f"{PG_SERVER}/aetl_dagster_test_{uuid.uuid4().hex[:10]}"
        self.dagster_home = root / "dagster_home"
        self.warehouse_url = f"http://127.0.0.1:{free_port()}"
        self.dagster_url = f"http://127.0.0.1:{free_port()}"
        self.startup_seconds: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_PG_URL": self.pg_url,
            "CLICKHOUSE_URL": self.warehouse_url,
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONUNBUFFERED": "1",
        }

    def commands(self) -> dict[str, list[str]]:
        """Command lines of the three processes (cwd = repo root, env = `self.env()`)."""
        workspace = str(WORKSPACE_YAML)
        return {
            "warehouse": [
                sys.executable, "-m", "orchestration.warehouse.server", "--host", "127.0.0.1",
                "--port", self.warehouse_url.rsplit(":", 1)[1], "--data-dir", str(self.root / "warehouse"),
            ],
            "dagster-webserver": [
                str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", self.dagster_url.rsplit(":", 1)[1],
                "-w", workspace,
            ],
            "dagster-daemon": [str(BIN / "dagster-daemon"), "run", "-w", workspace],
        }  # fmt: skip

    def start(self) -> None:
        started = time.monotonic()
        prepare_dagster_home(self.dagster_home, self.pg_url)
        prepare_dbt_manifest()
        env = self.env()
        self.children = [Child(name, argv, env, self.root) for name, argv in self.commands().items()]
        warehouse = self.children[0]
        ping = f"{self.warehouse_url}/ping"
        _wait("warehouse", lambda: httpx.get(ping, timeout=2).text == "Ok.\n", [warehouse])
        client = DagsterClient(self.dagster_url, timeout=10)
        try:
            _wait("dagster-webserver", lambda: bool(client.ping()), self.children)
            self.startup_seconds["webserver"] = time.monotonic() - started
            _wait("dagster-daemon", lambda: client.daemon_health().healthy, self.children)
            self.startup_seconds["daemon"] = time.monotonic() - started
        finally:
            client.close()

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        drop_pg_database(self.pg_url)


@pytest.fixture(scope="session")
def dagster_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterProcesses]:
    processes = DagsterProcesses(tmp_path_factory.mktemp("dagster_stack"))
    try:
        processes.start()
        yield processes
    finally:
        processes.stop()


@pytest.fixture(scope="session")
def dagster_url(dagster_processes: DagsterProcesses) -> str:
    return dagster_processes.dagster_url


@pytest.fixture(scope="session")
def warehouse_url(dagster_processes: DagsterProcesses) -> str:
    return dagster_processes.warehouse_url


@pytest.fixture(scope="session")
def dagster(dagster_url: str) -> Iterator[DagsterClient]:
    client = DagsterClient(dagster_url, timeout=30)
    yield client
    client.close()
