"""The client tests run against the session stack's real dagster-webserver + dagster-daemon
(tests/conftest.py), started exactly as `make run` starts them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.dagster_client import DagsterClient


@pytest.fixture(scope="session")
def dagster(dagster_url: str) -> Iterator[DagsterClient]:
    client = DagsterClient(dagster_url, timeout=30)
    yield client
    client.close()
