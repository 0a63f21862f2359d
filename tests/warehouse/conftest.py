"""Fixtures for the embedded warehouse: a real server process on a free port and a temp data folder.

`warehouse_url` here shadows the stack-wide fixture of tests/conftest.py so these tests need only
the warehouse, not the whole stack.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from orchestration.warehouse.client import get_client

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WarehouseProcess:
    """`python -m orchestration.warehouse.server` as a child process, ready when /ping answers."""

    def __init__(self, data_dir: Path, log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestration.warehouse.server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
            ],
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"warehouse exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).text == "Ok.\n":
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"warehouse did not answer /ping in {START_TIMEOUT}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM and wait: the server must exit cleanly and release the data folder."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def warehouse_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseProcess]:
    root = tmp_path_factory.mktemp("warehouse")
    server = WarehouseProcess(root / "data", root / "warehouse.log")
    yield server
    code = server.stop()
    assert code == 0, f"warehouse exited with {code}:\n{server.log_tail()}"


@pytest.fixture(scope="session")
def warehouse_url(warehouse_process: WarehouseProcess) -> str:
    return warehouse_process.url


@pytest.fixture
def client(warehouse_url: str) -> Iterator[Client]:
    c = get_client(warehouse_url)
    yield c
    c.close()


@pytest.fixture
def database(client: Client) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    client.command(f"CREATE DATABASE {name}")
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture
def http(warehouse_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=warehouse_url, timeout=60) as h:
        yield h
