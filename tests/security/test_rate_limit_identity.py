"""Rate limits cannot be dodged (issue 14): a made-up API key or X-Forwarded-For is not a new identity."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
from api_helpers import ADMIN_PASSWORD, PASSWORD, ApiServer, ApiUser, assert_error_shape, bearer, login

from api.core.config import Settings
from orchestration.stack import Stack

LOGIN = "/api/v1/auth/login"


def _guess(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.post(LOGIN, json={"username": "root_admin", "password": "guess1234"}, headers=headers)


def test_random_keys_and_forwarded_addresses_share_the_callers_budget(
    start_api: Callable[..., ApiServer],
) -> None:
    server = start_api(AETL_RATE_LIMIT_ANONYMOUS="5", AETL_LOGIN_MAX_FAILURES_PER_ACCOUNT="1000",
                       AETL_LOGIN_MAX_FAILURES_PER_ADDRESS="1000")  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=30) as client:
        statuses = [
            _guess(client, {"X-API-Key": "aetl_" + secrets.token_urlsafe(32)}).status_code for _ in range(5)
        ]
        assert statuses == [401] * 5
        limited = _guess(client, {"X-API-Key": "aetl_" + secrets.token_urlsafe(32)})
        assert_error_shape(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        forwarded = _guess(client, {"X-Forwarded-For": "198.51.100.7"})
        assert_error_shape(forwarded, 429, "RATE_LIMIT_EXCEEDED")
        bearer_junk = _guess(client, {"Authorization": "Bearer aetl_" + secrets.token_urlsafe(32)})
        assert_error_shape(bearer_junk, 429, "RATE_LIMIT_EXCEEDED")


def test_a_verified_key_counts_as_its_owner(
    start_api: Callable[..., ApiServer], make_user: Callable[..., ApiUser], client: httpx.Client
) -> None:
    user = make_user("viewer")
    key = client.post("/api/v1/users/me/api-keys", headers=user.headers, json={"name": "k"}).json()["data"][
        "key"
    ]
    server = start_api(AETL_RATE_LIMIT_ANONYMOUS="5", AETL_RATE_LIMIT_DEFAULT="50")
    with httpx.Client(base_url=server.url, timeout=30) as other:
        first = other.get("/api/v1/users/me", headers={"X-API-Key": key})
        assert first.status_code == 200 and first.headers["X-RateLimit-Limit"] == "5"  # not yet verified
        second = other.get("/api/v1/users/me", headers={"X-API-Key": key})
        assert second.status_code == 200 and second.headers["X-RateLimit-Limit"] == "50"
        # the user's token and its key spend one budget
        by_token = other.get("/api/v1/users/me", headers=user.headers)
        assert (
            int(by_token.headers["X-RateLimit-Remaining"]) == int(second.headers["X-RateLimit-Remaining"]) - 1
        )


def _last_failed_login_address(database_url: str, user_id: str) -> str | None:
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT ip_address FROM activity_logs WHERE user_id = %s AND action = 'auth.login_failed' "
            "ORDER BY id DESC LIMIT 1",
            (user_id,),
        ).fetchone()
    return row[0] if row else None


def test_activity_log_address_is_not_spoofable(
    client: httpx.Client, api_server: ApiServer, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("viewer")
    answer = client.post(
        LOGIN,
        json={"username": user.username, "password": "wrong1234"},
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "X-Real-IP": "203.0.113.9",
            "Forwarded": "for=203.0.113.9",
        },
    )
    assert answer.status_code == 401
    assert _last_failed_login_address(api_server.database_url, user.id) == "127.0.0.1"


def test_a_named_proxy_is_believed(start_api: Callable[..., ApiServer], api_server: ApiServer) -> None:
    server = start_api(AETL_TRUSTED_PROXIES="127.0.0.1", AETL_RATE_LIMIT_ANONYMOUS="3")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        name = f"px_{secrets.token_hex(4)}"
        admin = login(client, "root_admin", ADMIN_PASSWORD)["access_token"]
        created = client.post(
            "/api/v1/users",
            headers=bearer(admin),
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        )
        user_id = created.json()["data"]["id"]
        # each client behind the proxy has its own budget
        for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):
            response = client.post(
                LOGIN, json={"username": name, "password": "wrong1234"}, headers={"X-Forwarded-For": address}
            )
            assert response.status_code == 401 and response.headers["X-RateLimit-Remaining"] == "2"
        assert _last_failed_login_address(api_server.database_url, user_id) == "192.0.2.4"
        client.delete(f"/api/v1/users/{user_id}", headers=bearer(admin))


def test_the_supervisor_starts_uvicorn_without_proxy_headers(tmp_path: Path) -> None:
    stack = Stack(Settings(AETL_ENV="test", AETL_DATA_DIR=tmp_path), services=("api",))  # type: ignore[call-arg]
    (api,) = [c for c in stack._first_wave() if c.name == "api"]
    assert "--no-proxy-headers" in api.argv and "--proxy-headers" not in api.argv


def test_only_the_api_follows_aetl_host(tmp_path: Path) -> None:
    """AETL_HOST exposes the API; the warehouse, Dagster's UI and the code servers stay on loopback."""
    settings = Settings(AETL_ENV="test", AETL_DATA_DIR=tmp_path, AETL_HOST="0.0.0.0")  # type: ignore[call-arg]
    settings.dagster_home.mkdir(parents=True)  # where the webserver's workspace file is written
    stack = Stack(settings)
    components = stack._first_wave() + stack._second_wave()

    def host_of(argv: list[str]) -> str:
        for flag in ("--host", "-h"):
            if flag in argv:
                return argv[argv.index(flag) + 1]
        raise AssertionError(f"no host in {argv}")

    hosts = {c.name: host_of(c.argv) for c in components if c.name != "dagster-daemon"}
    assert hosts.pop("api") == "0.0.0.0"
    assert any(name.startswith("code-server") for name in hosts) and "warehouse" in hosts, hosts
    assert set(hosts.values()) == {"127.0.0.1"}, hosts
    exposed = Settings(  # type: ignore[call-arg]
        AETL_ENV="test", AETL_DATA_DIR=tmp_path, AETL_WAREHOUSE_HOST="0.0.0.0", AETL_DAGSTER_HOST="0.0.0.0"
    )
    argv = {c.name: c.argv for c in Stack(exposed)._first_wave() + Stack(exposed)._second_wave()}
    assert host_of(argv["warehouse"]) == "0.0.0.0" and host_of(argv["dagster-webserver"]) == "0.0.0.0"
