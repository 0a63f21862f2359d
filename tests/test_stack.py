"""The two-command promise: `make run`'s supervisor starts every process and stops them all cleanly.

This runs a second, independent stack (its own ports, data folder and databases) so it can
send SIGTERM without disturbing the session stack the other tests use.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from api.core.config import REPO_ROOT, Settings
from orchestration.stack import child_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drop_databases(settings: Settings) -> None:
    engine = create_engine(f"{settings.pg_server_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for url in (settings.database_url, settings.dagster_pg_url):
            name = url.rsplit("/", 1)[1]
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def second_stack_settings(tmp_path: Path) -> Settings:
    settings = Settings(
        AETL_ENV="test",
        API_PORT=free_port(),
        DAGSTER_PORT=free_port(),
        CLICKHOUSE_HTTP_PORT=free_port(),
        AETL_DATA_DIR=tmp_path / "data",
    )
    yield settings
    drop_databases(settings)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health/detailed", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_run_starts_everything_and_sigterm_leaves_no_process_or_lock(second_stack_settings: Settings) -> None:
    settings = second_stack_settings
    env = child_env(settings)
    api_url = f"http://127.0.0.1:{settings.api_port}"
    log_path = settings.data_dir.parent / "stack.log"
    with log_path.open("wb") as log_file:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "orchestration.stack", "run"],
            cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: healthy(api_url) or supervisor.poll() is not None, 240, "stack healthy")
            assert supervisor.poll() is None, log_path.read_text()[-3000:]
            # every component answers on its own port
            assert httpx.get(f"{settings.clickhouse_url}/ping").text == "Ok.\n"
            assert httpx.get(f"{settings.dagster_url}/server_info").status_code == 200
            tree = psutil.Process(supervisor.pid).children(recursive=True)
            names = " ".join(" ".join(p.cmdline()) for p in tree)
            for expected in ("orchestration.warehouse.server", "dagster-webserver", "dagster-daemon", "uvicorn"):
                assert expected in names
            # write something so the restart below proves the data folder was released intact
            httpx.post(settings.clickhouse_url, content="CREATE TABLE default.stack_probe (x UInt8) ENGINE = MergeTree ORDER BY x").raise_for_status()
            httpx.post(settings.clickhouse_url, content="INSERT INTO default.stack_probe VALUES (7)").raise_for_status()
        finally:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(timeout=60)
    assert supervisor.returncode == 0, log_path.read_text()[-3000:]
    survivors = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], [p.cmdline() for p in survivors]
    for port in (settings.api_port, settings.dagster_port, settings.clickhouse_http_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"

    # no stale lock: a new warehouse process opens the same data folder and sees the data
    warehouse = subprocess.Popen(
        [sys.executable, "-m", "orchestration.warehouse.server", "--host", "127.0.0.1",
         "--port", str(settings.clickhouse_http_port), "--data-dir", str(settings.warehouse_dir)],
        cwd=REPO_ROOT, env=env,
    )
    try:
        wait_for(lambda: _ping(settings.clickhouse_url), 30, "warehouse restart")
        answer = httpx.post(settings.clickhouse_url, content="SELECT x FROM default.stack_probe")
        assert answer.text.strip() == "7"
    finally:
        warehouse.terminate()
        warehouse.wait(timeout=30)


def _ping(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ping", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
