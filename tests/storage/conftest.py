"""Watched-storage tests run against the session stack (API, Dagster with the `aetl_pipelines`
location, the embedded warehouse, PostgreSQL); SFTP and SMB tests start their own servers on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from storage_helpers import Caller

from api.dagster_client import DagsterClient
from orchestration.stack import Stack
from orchestration.warehouse.client import get_client
from tests.support import admin_token, new_user


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def make_caller(api: httpx.Client, stack: Stack) -> Callable[[str], Caller]:
    """A new user of the role (own rate-limit budget), logged in."""
    admin_headers = {"Authorization": f"Bearer {admin_token(api, stack.settings)}"}

    def make(role: str) -> Caller:
        _, token = new_user(api, admin_headers, role, "s")
        return Caller(role, {"Authorization": f"Bearer {token}"})

    return make


@pytest.fixture(scope="session")
def engineer(make_caller: Callable[[str], Caller]) -> Caller:
    return make_caller("engineer")


@pytest.fixture(scope="session")
def dagster(stack: Stack) -> Iterator[DagsterClient]:
    with DagsterClient(stack.settings.dagster_url, timeout=60, location="aetl_pipelines") as client:
        yield client


@pytest.fixture()
def warehouse(stack: Stack) -> Iterator[Client]:
    client = get_client(stack.settings.clickhouse_url)
    yield client
    client.close()


@pytest.fixture()
def database(warehouse: Client) -> Iterator[str]:
    name = f"st_{uuid.uuid4().hex[:10]}"
    warehouse.command(f"CREATE DATABASE {name}")
    yield name
    warehouse.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture()
def folder(stack: Stack) -> Path:
    """A fresh folder inside the stack's file roots (where local mounts may point)."""
    path = stack.settings.file_roots[0] / f"watch_{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path
