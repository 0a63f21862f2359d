"""The whole stack as `make run` starts it: its warehouse requires the password, every internal
client (API health check, Dagster code servers) has it, and no log line holds it."""

from __future__ import annotations

import httpx

from orchestration.stack import Stack
from orchestration.warehouse.client import get_client
from tests.support import admin_token


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
    settings = stack.settings
    credentials = settings.warehouse_credentials()
    assert credentials is not None
    with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=30) as api:
        token = admin_token(api, settings)
        created = api.post(
            "/users/me/api-keys",
            headers={"Authorization": f"Bearer {token}"},
            json={"name": "log-grep", "permissions": ["read"]},
        )
        assert created.status_code == 201, created.text
        key = created.json()["data"]["key"]
        assert api.get("/users/me", headers={"X-API-Key": key}).status_code == 200
        # a wrong password and a wrong key are logged as failures, never with what was sent
        api.post("/auth/login", json={"username": settings.admin_username, "password": "Wrong-Pass-123"})
        api.get("/users/me", headers={"X-API-Key": key + "x"})
    secrets = {
        "warehouse password": credentials[1].get_secret_value(),
        "admin password": settings.admin_password.get_secret_value(),
        "JWT secret": settings.secret_key.get_secret_value(),
        "encryption key": settings.encryption_key.get_secret_value(),
        "API key": key,
        "access token": token,
        "wrong password": "Wrong-Pass-123",
    }
    log = (settings.data_dir / "test-stack.log").read_text(errors="replace")
    assert "warehouse" in log
    leaked = [name for name, value in secrets.items() if value in log]
    assert not leaked, leaked
