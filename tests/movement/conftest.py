"""Movement tests: move_target against the session stack's warehouse, connectors stored through the API
(so the engine reads and decrypts them from the metadata DB as a run worker does)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from api.core.config import get_settings
from orchestration.movement import MoveContext
from orchestration.stack import Stack
from orchestration.warehouse.client import get_client
from orchestration.warehouse.resource import ClickHouseResource
from tests.connectors.conftest import admin, api, files_dir, make_connector  # noqa: F401 - shared fixtures


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(msg)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(msg)


@pytest.fixture(scope="session")
def warehouse(stack: Stack) -> ClickHouseResource:
    return ClickHouseResource(url=get_settings().clickhouse_url)


@pytest.fixture
def target_db(stack: Stack) -> Iterator[str]:
    name = f"mv_{uuid.uuid4().hex[:10]}"
    client = get_client(get_settings().clickhouse_url)
    client.command(f"CREATE DATABASE {name}")
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name} SYNC")
    client.close()


@pytest.fixture
def wh(stack: Stack) -> Iterator[Client]:
    client = get_client(get_settings().clickhouse_url)
    yield client
    client.close()


@pytest.fixture
def move_context() -> Callable[..., MoveContext]:
    def make(load_id: str | None = None) -> MoveContext:
        return MoveContext(log=RecordingLog(), run_id=uuid.uuid4().hex, load_id=load_id or uuid.uuid4().hex)

    return make
