"""The two-command promise: `make run`'s supervisor starts every process and stops them all cleanly.

This runs a second, independent stack (its own ports, data folder and databases) through the real
command, `python -m orchestration.stack run`, so it can send SIGTERM without disturbing the session
stack the other tests use.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import psutil
import pytest

from api.core.config import REPO_ROOT, Settings
from orchestration.lib.pg import drop_pg_database
from orchestration.stack import child_env
from tests.support import WarehouseProcess, isolated_settings, warehouse_auth

EXPECTED_PROCESSES = (
    "orchestration.warehouse.server", "code-server start", "dagster-webserver",
    "orchestration.dagster_daemon", "uvicorn", "orchestration.run_launcher.server",
)  # fmt: skip


@pytest.fixture
def second_stack_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = isolated_settings(tmp_path / "data")
    yield settings
    drop_pg_database(settings.database_url)
    drop_pg_database(settings.dagster_pg_url)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health/detailed", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def supervisor_story(log_path: Path) -> str:
    """The supervisor's own lines (what started, what died, why it stopped), then the log's tail.

    The tail alone is mostly the children's shutdown chatter and hides the line that matters."""
    text = log_path.read_text(errors="replace")
    own = [line for line in text.splitlines() if line.startswith("[stack ")]
    return "supervisor:\n" + "\n".join(own) + "\n--- log tail ---\n" + text[-2500:]


def start_supervisor(settings: Settings, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    """`python -m orchestration.stack run`, exactly what `make run` executes."""
    env = child_env(settings)
    return subprocess.Popen(
        [sys.executable, "-m", "orchestration.stack", "run"],
        cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )  # fmt: skip


def run_sql(url: str, sql: str) -> str:
    response = httpx.post(url, content=sql, timeout=30, auth=warehouse_auth())
    response.raise_for_status()
    return response.text


def test_run_starts_everything_and_a_dying_component_stops_it_all_cleanly(
    second_stack_settings: Settings,
) -> None:
    """One second stack (a start costs ~a minute): every process up; then one dies (the daemon) and
    `run` stops the others and exits non-zero instead of limping on, leaving no process, port or lock.
    SIGTERM from a dying parent is the next test."""
    settings = second_stack_settings
    api_url = f"http://127.0.0.1:{settings.api_port}"
    log_path = settings.data_dir.parent / "stack.log"
    with log_path.open("wb") as log_file:
        supervisor = start_supervisor(settings, log_file)
        try:
            # /health/detailed spends the anonymous budget (100/min): poll it under that rate
            up = lambda: healthy(api_url) or supervisor.poll() is not None  # noqa: E731
            wait_for(up, 240, "stack healthy", interval=0.8)
            assert supervisor.poll() is None, supervisor_story(log_path)
            assert httpx.get(f"{settings.clickhouse_url}/ping").text == "Ok.\n"
            assert httpx.get(f"{settings.dagster_url}/server_info").status_code == 200
            # the warm run-worker server is spawned once the rest answers (a moment after /health)
            tree: list[psutil.Process] = []

            def every_process() -> bool:
                tree[:] = psutil.Process(supervisor.pid).children(recursive=True)
                command_lines = " ".join(" ".join(p.cmdline()) for p in tree)
                return all(expected in command_lines for expected in EXPECTED_PROCESSES)

            wait_for(every_process, 30, f"every process of the stack: {EXPECTED_PROCESSES}", interval=0.5)
            # written now, read after the stop: proves the data folder was released intact
            run_sql(settings.clickhouse_url, "CREATE TABLE stack_probe (x UInt8) ENGINE = Log")
            run_sql(settings.clickhouse_url, "INSERT INTO stack_probe VALUES (7)")
            daemon = next(p for p in tree if "orchestration.dagster_daemon" in " ".join(p.cmdline()))
            daemon.kill()
            supervisor.wait(timeout=90)
        finally:
            if supervisor.poll() is None:
                supervisor.send_signal(signal.SIGTERM)
                supervisor.wait(timeout=60)
    assert supervisor.returncode == 1, supervisor_story(log_path)
    assert "dagster-daemon exited unexpectedly" in log_path.read_text()
    survivors = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], [p.cmdline() for p in survivors]
    for port in (settings.api_port, settings.dagster_port, settings.clickhouse_http_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"

    # no stale lock: a new warehouse process opens the same data folder and sees the data
    warehouse = WarehouseProcess(settings.warehouse_dir, settings.data_dir.parent / "restart.log")
    try:
        assert run_sql(warehouse.url, "SELECT x FROM stack_probe").strip() == "7"
    finally:
        assert warehouse.stop() == 0


def test_killing_the_parent_of_run_stops_everything_even_in_start_up(second_stack_settings: Settings) -> None:
    """`make run` killed (SIGTERM or worse) must not orphan the supervisor or what it started."""
    settings = second_stack_settings
    log_path = settings.data_dir.parent / "stack.log"
    with log_path.open("wb") as log_file:
        env = child_env(settings)
        parent = subprocess.Popen(
            ["bash", "-c", f"{sys.executable} -m orchestration.stack run & wait"],
            cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for(lambda: _port_open(settings.clickhouse_http_port), 120, "warehouse started")
            supervisor = psutil.Process(parent.pid).children()[0]
            tree = [supervisor, *supervisor.children(recursive=True)]
            parent.kill()
            parent.wait(timeout=10)
            psutil.wait_procs([supervisor], timeout=60)
        finally:
            if parent.poll() is None:
                parent.kill()
    survivors = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], [p.cmdline() for p in survivors]
    assert "SIGTERM received" in log_path.read_text()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_port_already_taken_is_an_error_not_a_foreign_service(tmp_path: Path) -> None:
    """Something listening on the API's port (an old stack) must not pass for this stack's API."""
    from orchestration.stack import Stack

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        settings = isolated_settings(tmp_path / "data", API_PORT=port)
        stack = Stack(settings, services=("api",))
        assert stack.busy_ports() == [f"api {port}"]
        with pytest.raises(RuntimeError, match=f"ports already in use: api {port}"):
            stack.start(timeout=5)
        assert stack.components == []  # nothing was started
