"""The whole stack as `make run` starts it: its warehouse requires the password, every internal
client (API health check, Dagster code servers) has it, and no log line holds it."""

from __future__ import annotations

import httpx

from orchestration.stack import Stack
from orchestration.warehouse.client import get_client


def test_the_stack_warehouse_requires_the_password_and_the_api_has_it(stack: Stack) -> None:
    settings = stack.settings
    refused = httpx.post(settings.clickhouse_url, content=b"SELECT 1")
    assert refused.headers["X-ClickHouse-Exception-Code"] == "516"
    response = httpx.get(f"{stack.api_url}/health/detailed", timeout=30)
    body = response.json()
    report = body.get("data", body)  # the contract's envelope, if any
    assert report["components"]["clickhouse"]["status"] == "healthy", report
    client = get_client(settings.clickhouse_url)
    try:
        assert client.command("SELECT 1") == 1
    finally:
        client.close()


def test_no_secret_in_the_stack_log(stack: Stack) -> None:
    credentials = stack.settings.warehouse_credentials()
    assert credentials is not None
    password = credentials[1].get_secret_value()
    log = (stack.settings.data_dir / "test-stack.log").read_text(errors="replace")
    assert "warehouse" in log
    assert password not in log
