"""Fixtures for the embedded warehouse: a real server process on a free port and a temp data folder.

`warehouse_url` here shadows the stack-wide fixture of tests/conftest.py so these tests need only
the warehouse, not the whole stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from orchestration.warehouse.client import get_client
from tests.support import WarehouseProcess, warehouse_auth


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
    with httpx.Client(base_url=warehouse_url, timeout=60, auth=warehouse_auth()) as h:
        yield h
