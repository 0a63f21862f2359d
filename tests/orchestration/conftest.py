"""Fixtures for the engine: a real warehouse process and a real Dagster instance on PostgreSQL.

`warehouse_url` shadows the stack-wide fixture of tests/conftest.py so these tests need only the
warehouse and PostgreSQL; to adopt the shared one, delete `warehouse_process`/`warehouse_url` here.
"""

from __future__ import annotations

import os
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
from dagster import DagsterInstance

from orchestration.dagster_home import prepare_dagster_home
from orchestration.lib.pg import drop_pg_database
from orchestration.warehouse.client import get_client

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_SERVER = os.environ.get("AETL_TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_pg_url(prefix: str = "aetl_dagster_test") -> str:
    """A database of its own per fixture (AETL_ENV=test naming), dropped by the fixture."""
    return f"{PG_SERVER}/{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def warehouse_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("warehouse")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (root / "warehouse.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration.warehouse.server", "--host", "127.0.0.1",
             "--port", str(port), "--data-dir", str(root / "data")],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (root / "warehouse.log").read_text()
                try:
                    if httpx.get(f"{url}/ping", timeout=1).text == "Ok.\n":
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "warehouse did not start in 60 s"
                time.sleep(0.1)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def warehouse_url(warehouse_process: str) -> str:
    return warehouse_process


@pytest.fixture
def warehouse_database(warehouse_url: str) -> Iterator[str]:
    """A fresh warehouse database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    client = get_client(warehouse_url)
    client.command(f"CREATE DATABASE {name}")
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name} SYNC")
    client.close()


@pytest.fixture
def warehouse_client(warehouse_url: str) -> Iterator[Client]:
    client = get_client(warehouse_url)
    yield client
    client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a database that does not exist yet; dropped after the test if it was created."""
    url = unique_pg_url()
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def dagster_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterInstance]:
    """A Dagster instance from the repo's dagster.yaml, on its own PostgreSQL database."""
    home = tmp_path_factory.mktemp("dagster_home")
    pg_url = unique_pg_url()
    previous = os.environ.get("DAGSTER_PG_URL")
    os.environ["DAGSTER_PG_URL"] = pg_url  # dagster.yaml reads it (`env: DAGSTER_PG_URL`)
    try:
        prepare_dagster_home(home, pg_url)
        with DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = previous
        drop_pg_database(pg_url)
