"""Migrations: upgrade, downgrade to base, upgrade again, and the models match the head revision."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from api.core.config import get_settings
from api.db.models import Base
from api.db.setup import alembic_config, ensure_database
from orchestration.lib.pg import drop_pg_database

TABLES = {"users", "refresh_tokens", "api_keys", "activity_logs"}


@pytest.fixture()
def scratch_url() -> Iterator[str]:
    url = f"{get_settings().pg_server_url}/aetl_test_api_mig_{os.getpid()}"
    assert ensure_database(url) is True
    assert ensure_database(url) is False  # idempotent
    yield url
    drop_pg_database(url)


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    cfg = alembic_config(scratch_url)
    engine = create_engine(scratch_url)
    try:
        command.upgrade(cfg, "head")
        assert set(inspect(engine).get_table_names()) >= TABLES
        command.downgrade(cfg, "base")
        assert not (TABLES & set(inspect(engine).get_table_names()))
        command.upgrade(cfg, "head")
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()
