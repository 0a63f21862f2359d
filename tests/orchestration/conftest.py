"""Fixtures for the engine: the session stack's warehouse and a real Dagster instance on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client
from dagster import DagsterInstance

from orchestration.dagster_home import prepare_dagster_home
from orchestration.lib.pg import drop_pg_database
from orchestration.warehouse.client import get_client
from tests import support


def unique_pg_url() -> str:
    return support.unique_pg_url("aetl_dagster_test")


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
