"""The whole stack as `make run` starts it: API in front, Dagster runs, data lands in the warehouse."""

from __future__ import annotations

import time

import httpx

from api.dagster_client.client import DagsterClient
from api.dagster_client.models import RunStatus
from orchestration.stack import Stack
from orchestration.warehouse.client import get_client


def wait_for_run(client: DagsterClient, run_id: str, timeout: float = 180) -> RunStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_run(run_id)
        if run.status.finished:
            return run.status
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} not finished after {timeout}s")


def test_detailed_health_reports_every_component_healthy(stack: Stack) -> None:
    response = httpx.get(f"{stack.api_url}/health/detailed", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    for component in ("database", "clickhouse", "dagster", "dagster_daemon"):
        assert body["components"][component]["status"] == "healthy", body
        assert body["components"][component]["latency_ms"] >= 0
    assert response.headers["X-Request-ID"].startswith("req_")


def test_admin_from_settings_can_log_in(stack: Stack) -> None:
    settings = stack.settings
    response = httpx.post(
        f"{stack.api_url}/api/v1/auth/login",
        json={"username": settings.admin_username, "password": settings.admin_password.get_secret_value()},
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = httpx.get(f"{stack.api_url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["role"] == "admin"
    assert me.json()["username"] == settings.admin_username


def _api_login(stack: Stack) -> dict[str, str]:
    settings = stack.settings
    response = httpx.post(
        f"{stack.api_url}/api/v1/auth/login",
        json={"username": settings.admin_username, "password": settings.admin_password.get_secret_value()},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _api_reports_dagster_healthy(stack: Stack, headers: dict[str, str]) -> dict[str, object]:
    """The API's own view of Dagster (GraphQL through api.dagster_client), as a logged-in admin."""
    report = httpx.get(f"{stack.api_url}/api/v1/health", headers=headers, timeout=30)
    assert report.status_code == 200, report.text
    components = report.json()["data"]["components"]
    for name in ("database", "clickhouse", "dagster", "dagster_daemon"):
        assert components[name]["status"] == "healthy", components
    assert all(components["dagster_daemon"].get("daemons", {}).values()), components["dagster_daemon"]
    return dict(components["dagster"])


def test_warehouse_and_datamart_jobs_run_through_dagster_into_the_warehouse(stack: Stack) -> None:
    # through the API first: log in, and the API sees Dagster and its daemon up
    headers = _api_login(stack)
    dagster_seen_by_api = _api_reports_dagster_healthy(stack, headers)
    warehouse = get_client(stack.settings.clickhouse_url)
    with DagsterClient(stack.settings.dagster_url) as dagster:
        assert dagster_seen_by_api.get("version") == dagster.ping()
        run_id = dagster.launch_run("warehouse_job", tags={"aetl/test": "end_to_end"})
        assert wait_for_run(dagster, run_id) == RunStatus.SUCCESS
        days = int(warehouse.command("SELECT count() FROM default.calendar_days"))
        assert days == 4018  # 2020-01-01 .. 2030-12-31
        materializations = dagster.asset_materializations(["calendar_days"], limit=1)
        assert materializations and materializations[0].run_id == run_id

        mart_run = dagster.launch_run("datamarts_job")
        assert wait_for_run(dagster, mart_run) == RunStatus.SUCCESS
        logs = dagster.get_run_logs(mart_run)
        assert logs.events
    marts = warehouse.query("SELECT name FROM system.tables WHERE name = 'orders_daily'").result_rows
    assert marts == [("orders_daily",)]
    warehouse.close()
    # after two runs the same session still works and the API still sees a healthy Dagster
    assert (
        httpx.get(f"{stack.api_url}/api/v1/users/me", headers=headers, timeout=30).json()["role"] == "admin"
    )
    _api_reports_dagster_healthy(stack, headers)
