"""Failures of the parts below the API: still the error shape, no SQL, no traceback, no secret."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import httpx
from api_helpers import PASSWORD, ApiServer, ApiUser, assert_error_shape

from api.core.config import get_settings


def _wait_for_log(server: ApiServer, needle: str) -> str:
    for _ in range(30):
        if needle in server.log():
            break
        time.sleep(0.1)
    return server.log()


def test_database_down_is_503(start_api: Callable[..., ApiServer]) -> None:
    server = start_api(DATABASE_URL="postgresql+psycopg://postgres:s3cretpw@127.0.0.1:1/aetl_gone")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
        body = assert_error_shape(response, 503, "DATABASE_ERROR")
        assert body["errors"][0]["code"] == "DB_001"
        assert "s3cretpw" not in response.text and "psycopg" not in response.text
        assert client.get("/api/v1/health/ready").status_code == 503
        assert client.get("/health").status_code == 200  # liveness does not depend on it
    log = _wait_for_log(server, response.headers["X-Request-ID"])
    assert "s3cretpw" not in log and "Traceback" not in log


def test_unexpected_error_is_a_bare_500(start_api: Callable[..., ApiServer]) -> None:
    # a database without our tables: every query fails in a way no handler expects
    server = start_api(DATABASE_URL=f"{get_settings().pg_server_url}/postgres")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/api/v1/auth/login", json={"username": "someone", "password": PASSWORD})
    body = assert_error_shape(response, 500, "INTERNAL_ERROR")
    assert body["message"] == "Internal server error" and body["error"]["details"] == {}
    assert "SELECT" not in response.text and "users" not in response.text
    log = _wait_for_log(server, "unhandled sqlalchemy.exc.ProgrammingError")
    line = next(li for li in log.splitlines() if "unhandled" in li)
    assert response.headers["X-Request-ID"] in line
    assert "SELECT" not in log and PASSWORD not in log and "Traceback" not in log


def test_concurrent_refresh_of_one_token_has_one_winner(
    client: httpx.Client, make_user: Callable[..., ApiUser], api_server: ApiServer
) -> None:
    user = make_user("viewer")

    def refresh() -> int:
        with httpx.Client(base_url=api_server.url, timeout=30) as c:
            return c.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: refresh(), range(4)))
    assert statuses.count(200) == 1 and statuses.count(401) == 3, statuses
