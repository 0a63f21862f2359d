"""Datamarts tests run against the session stack: the real API, Dagster (`aetl_datamarts` and
`aetl_pipelines`), the embedded warehouse, PostgreSQL, and dbt-clickhouse inside Dagster runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from datamart_helpers import Caller

from api.dagster_client import DagsterClient
from orchestration.stack import Stack
from orchestration.warehouse.client import get_client
from tests.support import admin_token, new_user


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=600) as client:
        yield client


@pytest.fixture(scope="module")
def admin(api: httpx.Client, stack: Stack) -> Caller:
    return Caller("admin", {"Authorization": f"Bearer {admin_token(api, stack.settings)}"})


@pytest.fixture(scope="module")
def make_caller(api: httpx.Client, admin: Caller) -> Callable[[str], Caller]:
    def make(role: str) -> Caller:
        _, token = new_user(api, admin.headers, role, "dm")
        return Caller(role, {"Authorization": f"Bearer {token}"})

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
