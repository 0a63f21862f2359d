"""The warehouse password never shows: not in the supervisor's output, not in Dagster run config,
and it is never sent to a ClickHouse that is not the platform's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.lib.clickhouse_url import dbt_env_for_clickhouse
from orchestration.stack import ready_message
from orchestration.warehouse.credentials import masked_url, platform_credentials_for
from orchestration.warehouse.resource import ClickHouseResource, clickhouse_url_setting
from tests.support import isolated_settings, warehouse_auth


def test_the_supervisor_masks_the_password_of_clickhouse_url(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path, CLICKHOUSE_URL="http://etl:S3cr3t-pw@ch.internal:8123/analytics")
    message = ready_message(settings, 12.3)
    assert "S3cr3t-pw" not in message
    assert "http://etl:***@ch.internal:8123/analytics" in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p%40ss@h:8123", "http://u:***@h:8123"),
        ("https://u:pw@[::1]:8443/db?x=1", "https://u:***@[::1]:8443/db?x=1"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
    ],
)
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_the_resource_config_holds_no_password_yet_its_clients_authenticate(warehouse_url: str) -> None:
    _, password = warehouse_auth()
    resource = ClickHouseResource(url=warehouse_url)
    assert password not in json.dumps(resource.model_dump(), default=str)
    assert resource.command("SELECT 1") == 1


def test_the_code_location_resource_config_holds_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    _, password = warehouse_auth()
    setting = clickhouse_url_setting()
    assert password not in str(setting)
    resource = ClickHouseResource(url=setting)
    assert password not in json.dumps(resource.model_dump(), default=str)
    assert resource.dbt_env()["CLICKHOUSE_PASSWORD"] == password  # read in the worker, for dbt only


def test_the_platform_password_goes_to_the_embedded_warehouse_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    _, password = warehouse_auth()
    assert platform_credentials_for("http://127.0.0.1:8123") == warehouse_auth()
    assert platform_credentials_for("http://localhost:8123/db") == warehouse_auth()
    for foreign in ("http://ch.example.com:8123", "http://10.0.0.5:8123", "http://other:pw@127.0.0.1:8123"):
        assert platform_credentials_for(foreign) is None
        assert dbt_env_for_clickhouse(foreign).get("CLICKHOUSE_PASSWORD") != password
    monkeypatch.setenv("CLICKHOUSE_URL", "http://ch.example.com:8123")
    assert platform_credentials_for("http://127.0.0.1:8123") is None
