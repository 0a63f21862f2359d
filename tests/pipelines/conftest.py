"""Pipelines tests run against the session stack: the real API, Dagster (with the `aetl_pipelines`
code location), the embedded warehouse and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from pipeline_helpers import Caller

from api.dagster_client import DagsterClient
from orchestration.stack import Stack
from orchestration.warehouse.client import get_client
from tests.support import admin_token, new_user


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def admin(api: httpx.Client, stack: Stack) -> Caller:
    token = admin_token(api, stack.settings)
    me = api.get("/users/me", headers={"Authorization": f"Bearer {token}"}).json()
    return Caller("admin", me["id"], {"Authorization": f"Bearer {token}"}, token)


@pytest.fixture(scope="session")
def make_caller(api: httpx.Client, admin: Caller) -> Callable[[str], Caller]:
    """A new user of the role (own rate-limit budget), logged in."""

    def make(role: str) -> Caller:
        user_id, token = new_user(api, admin.headers, role, "p")
        return Caller(role, user_id, {"Authorization": f"Bearer {token}"}, token)

    return make


@pytest.fixture()
def engineer(make_caller: Callable[[str], Caller]) -> Caller:
    """A fresh pipeline author (designer-level role) per test."""
    return make_caller("engineer")


@pytest.fixture(scope="session")
def dagster(stack: Stack) -> Iterator[DagsterClient]:
    with DagsterClient(stack.settings.dagster_url, timeout=60) as client:
        yield client


@pytest.fixture()
def warehouse(stack: Stack) -> Iterator[Client]:
    client = get_client(stack.settings.clickhouse_url)
    yield client
    client.close()


@pytest.fixture()
def source_table(warehouse: Client) -> Iterator[str]:
    """A warehouse table with 10 orders (database `pt_<hex>`), dropped afterwards."""
    database = f"pt_{uuid.uuid4().hex[:10]}"
    warehouse.command(f"CREATE DATABASE {database}")
    warehouse.command(
        f"CREATE TABLE {database}.orders (id UInt32, day Date, amount Float64) ENGINE = MergeTree ORDER BY id"
    )
    warehouse.command(
        f"INSERT INTO {database}.orders SELECT number, toDate('2026-01-01') + number % 3, number * 1.5 "
        "FROM numbers(10)"
    )
    yield f"{database}.orders"
    warehouse.command(f"DROP DATABASE IF EXISTS {database} SYNC")
