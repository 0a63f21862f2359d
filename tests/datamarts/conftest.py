"""Datamarts tests run against the session stack: the real API, Dagster (`aetl_datamarts` and
`aetl_pipelines`), the embedded warehouse, PostgreSQL, and dbt-clickhouse inside Dagster runs."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from datamart_helpers import PASSWORD, Caller

from api.dagster_client import DagsterClient
from orchestration.stack import Stack
from orchestration.warehouse.client import get_client


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=600) as client:
        yield client


@pytest.fixture(scope="module")
def admin(api: httpx.Client, stack: Stack) -> Caller:
    settings = stack.settings
    response = api.post(
        "/auth/login",
        json={"username": settings.admin_username, "password": settings.admin_password.get_secret_value()},
    )
    assert response.status_code == 200, response.text
    return Caller("admin", {"Authorization": f"Bearer {response.json()['access_token']}"})


@pytest.fixture(scope="module")
def make_caller(api: httpx.Client, admin: Caller) -> Callable[[str], Caller]:
    def make(role: str) -> Caller:
        name = f"dm_{role}_{secrets.token_hex(4)}"
        created = api.post(
            "/users",
            headers=admin.headers,
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD, "role": role},
        )
        assert created.status_code == 201, created.text
        login = api.post("/auth/login", json={"username": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return Caller(role, {"Authorization": f"Bearer {login.json()['access_token']}"})

    return make


@pytest.fixture(scope="module")
def dagster(stack: Stack) -> Iterator[DagsterClient]:
    with DagsterClient(stack.settings.dagster_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def warehouse(stack: Stack) -> Iterator[Client]:
    client = get_client(stack.settings.clickhouse_url)
    yield client
    client.close()
