"""Watched-storage tests run against the session stack (API, Dagster with the `aetl_pipelines`
location, the embedded warehouse, PostgreSQL); SFTP and SMB tests start their own servers on loopback."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from storage_helpers import PASSWORD, Caller

from api.dagster_client import DagsterClient
from orchestration.stack import Stack
from orchestration.warehouse.client import get_client


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def make_caller(api: httpx.Client, stack: Stack) -> Callable[[str], Caller]:
    """A new user of the role (own rate-limit budget), logged in."""
    settings = stack.settings
    response = api.post(
        "/auth/login",
        json={"username": settings.admin_username, "password": settings.admin_password.get_secret_value()},
    )
    assert response.status_code == 200, response.text
    admin_headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def make(role: str) -> Caller:
        name = f"s_{role}_{secrets.token_hex(4)}"
        created = api.post(
            "/users",
            headers=admin_headers,
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD, "role": role},
        )
        assert created.status_code == 201, created.text
        login = api.post("/auth/login", json={"username": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return Caller(role, {"Authorization": f"Bearer {login.json()['access_token']}"})

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
