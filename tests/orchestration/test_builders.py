"""Pure builders of the engine, tested without Dagster or services."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from orchestration.dagster_home import DAGSTER_YAML_TEMPLATE, render_dagster_yaml
from orchestration.dbt import DbtManifestMissing, manifest_is_current, require_manifest
from orchestration.lib.calendar import build_calendar_days, calendar_days_ddl
from orchestration.lib.clickhouse_url import dbt_env_for_clickhouse
from orchestration.lib.env import patched_environ
from orchestration.lib.pg import database_name, server_url
from orchestration.lib.sql import qualified_name, quote_identifier, split_qualified, table_swap_statements


def test_calendar_days_covers_every_day_once() -> None:
    table = build_calendar_days(dt.date(2024, 2, 27), dt.date(2024, 3, 4))
    rows = table.to_pylist()
    assert table.num_rows == 7  # 2024 is a leap year: 27, 28, 29 Feb + 1..4 Mar
    assert rows[2]["date"] == dt.date(2024, 2, 29)
    assert rows[0] == {
        "date": dt.date(2024, 2, 27), "year": 2024, "quarter": 1, "month": 2, "day": 27,
        "iso_week": 9, "day_of_week": 2, "is_weekend": False,
    }  # fmt: skip
    assert [r["is_weekend"] for r in rows] == [False, False, False, False, True, True, False]


def test_calendar_days_refuses_reversed_range() -> None:
    with pytest.raises(ValueError, match="before start"):
        build_calendar_days(dt.date(2024, 1, 2), dt.date(2024, 1, 1))


def test_calendar_ddl_quotes_the_table_name() -> None:
    assert quote_identifier("we`ird") == "`we\\`ird`"
    assert qualified_name("t", "db") == "`db`.`t`"
    assert table_swap_statements("t", "t__staging_1", "db") == [
        "EXCHANGE TABLES `db`.`t__staging_1` AND `db`.`t`",
        "DROP TABLE IF EXISTS `db`.`t__staging_1` SYNC",
    ]
    # quoted (qualified_name) or plain, a database is never taken for part of the table's name
    assert split_qualified("`db`.`t`") == split_qualified("db.t") == ("db", "t")
    assert split_qualified("`a.b`") == (None, "a.b")
    ddl = calendar_days_ddl("calendar_days")
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS `calendar_days`")
    assert "ENGINE = MergeTree ORDER BY date" in ddl


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:18123", {"CLICKHOUSE_HOST": "127.0.0.1", "CLICKHOUSE_HTTP_PORT": "18123"}),
        ("http://ch.internal", {"CLICKHOUSE_HOST": "ch.internal", "CLICKHOUSE_HTTP_PORT": "8123"}),
        (
            "https://dbt:p%40ss@ch.example.com/analytics",
            {
                "CLICKHOUSE_HOST": "ch.example.com", "CLICKHOUSE_HTTP_PORT": "8443",
                "CLICKHOUSE_SECURE": "true", "CLICKHOUSE_USER": "dbt", "CLICKHOUSE_PASSWORD": "p@ss",
            },
        ),
    ],
)  # fmt: skip
def test_dbt_env_is_derived_from_the_warehouse_url(url: str, expected: dict[str, str]) -> None:
    env = dbt_env_for_clickhouse(url)
    assert expected.items() <= env.items()


def test_patched_environ_restores_previous_values() -> None:
    os.environ["AETL_TEST_KEEP"] = "old"
    os.environ.pop("AETL_TEST_NEW", None)
    with patched_environ({"AETL_TEST_KEEP": "new", "AETL_TEST_NEW": "x"}):
        assert os.environ["AETL_TEST_KEEP"] == "new" and os.environ["AETL_TEST_NEW"] == "x"
    assert os.environ.pop("AETL_TEST_KEEP") == "old"
    assert "AETL_TEST_NEW" not in os.environ


def test_dagster_yaml_renders_paths_and_keeps_secrets_as_env(tmp_path: Path) -> None:
    rendered = render_dagster_yaml(DAGSTER_YAML_TEMPLATE.read_text(), tmp_path)
    assert "${DAGSTER_HOME}" not in rendered
    assert f"base_dir: {tmp_path.resolve()}/compute_logs" in rendered
    assert "env: DAGSTER_PG_URL" in rendered
    assert "postgresql://" not in rendered


def test_manifest_is_current_follows_project_files(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "m.sql"
    model.write_text("select 1")
    manifest = tmp_path / "target" / "manifest.json"
    assert not manifest_is_current(tmp_path, manifest)
    manifest.parent.mkdir()
    manifest.write_text("{}")
    os.utime(model, (1_000, 1_000))
    assert manifest_is_current(tmp_path, manifest)
    model.touch()
    os.utime(manifest, (1_000, 1_000))
    assert not manifest_is_current(tmp_path, manifest)


def test_missing_manifest_fails_with_instructions(tmp_path: Path) -> None:
    from dagster_dbt import DbtProject

    (tmp_path / "dbt_project.yml").write_text("name: x\nversion: '1'\nconfig-version: 2\nprofile: x\n")
    with pytest.raises(DbtManifestMissing, match="python -m orchestration.dbt"):
        require_manifest(DbtProject(project_dir=tmp_path))


def test_pg_url_helpers() -> None:
    url = "postgresql+psycopg://postgres:pw@127.0.0.1:5432/aetl_dagster_test"
    assert database_name(url) == "aetl_dagster_test"
    assert server_url(url) == "postgresql://postgres:pw@127.0.0.1:5432/postgres"
    with pytest.raises(ValueError):
        database_name("postgresql://postgres@127.0.0.1:5432")
