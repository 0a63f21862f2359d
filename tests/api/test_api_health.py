"""Health endpoints: liveness, the detailed report (503 when a component is down), the v1 family."""

from __future__ import annotations

import httpx
from api_helpers import ApiServer, bearer


def test_liveness(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and body["version"] and body["timestamp"].endswith("Z")
    assert all(
        h in response.headers for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    )


def test_detailed_reports_down_components_as_503(client: httpx.Client, api_server: ApiServer) -> None:
    # the test server's warehouse and Dagster URLs point at closed ports
    response = client.get("/health/detailed")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and body["timestamp"].endswith("Z")
    components = body["components"]
    assert components["database"]["status"] == "healthy"
    for name in ("clickhouse", "dagster", "dagster_daemon"):
        assert components[name]["status"] == "unhealthy", components[name]
        assert components[name]["latency_ms"] < 1600  # short timeouts, checked concurrently
    assert components["redis"]["status"] == "not_configured"
    assert api_server.env["CLICKHOUSE_URL"] not in response.text  # no URLs or error texts leak


def test_v1_health_family(client: httpx.Client, admin_token: str) -> None:
    health = client.get("/api/v1/health")
    assert health.status_code == 200 and health.json()["data"]["status"] == "unhealthy"
    assert client.get("/api/v1/health/live").json()["data"]["status"] == "healthy"
    ready = client.get("/api/v1/health/ready")
    assert ready.status_code == 200 and ready.json()["data"]["ready"] is True
    database = client.get("/api/v1/health/database", headers=bearer(admin_token)).json()["data"]
    assert database["status"] == "healthy" and database["type"] == "postgresql"
    cache = client.get("/api/v1/health/cache", headers=bearer(admin_token)).json()["data"]
    assert cache["status"] == "not_configured" and cache["backend"] == "memory"
    system = client.get("/api/v1/health/system", headers=bearer(admin_token)).json()["data"]
    assert system["cpu"]["count"] >= 1 and system["memory"]["total_bytes"] > 0
    metrics = client.get("/api/v1/health/metrics", headers=bearer(admin_token))
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert "aetl_http_requests_total" in metrics.text and "process_resident_memory_bytes" in metrics.text
    # what start-up built is frozen out of the collector's reach, and the pauses that remain are counted
    values = dict(
        line.rsplit(" ", 1) for line in metrics.text.splitlines() if line and not line.startswith("#")
    )
    assert float(values["aetl_gc_frozen_objects"]) > 100_000
    assert float(values['aetl_gc_pause_seconds_count{generation="2"}']) >= 1  # the collect before freezing
    assert float(values['aetl_gc_pause_seconds_count{generation="0"}']) >= 1
