"""API test fixtures: a real uvicorn server on a free port over a dedicated PostgreSQL database.

The database (`aetl_test_api_<pid>`) is created and migrated by the same command the supervisor
runs (`python -m api.db.setup`) and dropped at the end. Dependencies the API only reports on
(warehouse, Dagster) point at closed ports, so /health/detailed must say 503.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("AETL_ENV", "test")

from api_helpers import ADMIN_PASSWORD, PASSWORD, ApiServer, ApiUser, bearer, login, run_db_setup  # noqa: E402

from api.core.config import REPO_ROOT, get_settings  # noqa: E402
from orchestration.lib.pg import drop_pg_database  # noqa: E402
from tests.support import free_port  # noqa: E402

SERVER_START_TIMEOUT = 180.0  # 2 cores shared by several stacks: start-up can take a minute


def _start_uvicorn(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                # as the supervisor runs it: the app alone decides whom to believe (AETL_TRUSTED_PROXIES)
                "--no-proxy-headers",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"API exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"API not up after {SERVER_START_TIMEOUT}s:\n{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def base_env(database_url: str, secret_key: str, **overrides: str) -> dict[str, str]:
    closed = str(free_port())  # nothing listens there: the component is "down"
    env = {
        **os.environ,
        "AETL_ENV": "test",
        "DATABASE_URL": database_url,
        "AETL_SECRET_KEY": secret_key,
        "AETL_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "AETL_ADMIN_USERNAME": "root_admin",
        "AETL_ADMIN_EMAIL": "root_admin@example.com",
        "AETL_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "CLICKHOUSE_URL": f"http://127.0.0.1:{closed}",
        "DAGSTER_URL": f"http://127.0.0.1:{closed}",
        "AETL_RATE_LIMIT_DEFAULT": "100000",
        "AETL_RATE_LIMIT_ANONYMOUS": "100000",
        "AETL_RATE_LIMIT_ADMIN": "100000",
        "AETL_RATE_LIMIT_GENERATION": "100000",
        "AETL_HEALTH_TIMEOUT_SECONDS": "1.5",
        # every test calls from 127.0.0.1: only the lock-out tests want the per-address limit
        "AETL_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
        "AETL_MAX_BODY_BYTES": str(2 * 1024 * 1024),
        # the development mailer: tests read the mails from here
        "AETL_MAIL_OUTBOX_DIR": tempfile.mkdtemp(prefix="aetl_outbox_"),
        # the tests' webhook receivers listen on 127.0.0.1
        "AETL_WEBHOOK_ALLOW_LOOPBACK": "true",
        "AETL_WEBHOOK_BACKOFF_SECONDS": "0.2",
    }
    env.pop("AETL_REDIS_URL", None)
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def api_database_url() -> Iterator[str]:
    settings = get_settings()
    url = f"{settings.pg_server_url}/aetl_test_api_{os.getpid()}"
    drop_pg_database(url)
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def api_server(api_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    secret_key = secrets.token_urlsafe(32)
    env = base_env(api_database_url, secret_key)
    setup = run_db_setup(env)
    assert setup.returncode == 0, setup.stderr[-3000:]
    port = free_port()
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    process = _start_uvicorn(env, port, log_path)
    server = ApiServer(
        f"http://127.0.0.1:{port}", env, api_database_url, secret_key, process=process, log_path=log_path
    )
    try:
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def start_api(
    api_server: ApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ApiServer]]:
    """Another server over the same database with other settings (e.g. low rate limits)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**overrides: str) -> ApiServer:
        env = {**api_server.env, **overrides}
        port = free_port()
        log_path = tmp_path_factory.mktemp("api_extra") / "api.log"
        process = _start_uvicorn(env, port, log_path)
        started.append(process)
        return ApiServer(
            f"http://127.0.0.1:{port}",
            env,
            api_server.database_url,
            env["AETL_SECRET_KEY"],
            process=process,
            log_path=log_path,
        )

    yield start
    for process in started:
        _stop(process)


@pytest.fixture()
def client(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=30) as c:
        yield c


@pytest.fixture()
def admin_token(client: httpx.Client, api_server: ApiServer) -> str:
    return str(login(client, api_server.admin_username, api_server.admin_password)["access_token"])


@pytest.fixture()
def make_user(client: httpx.Client, admin_token: str) -> Iterator[Callable[..., ApiUser]]:
    """Users created by the admin through the API with the given role; deleted afterwards."""
    created: list[str] = []

    def make(role: str = "viewer", password: str = PASSWORD) -> ApiUser:
        name = f"u_{role}_{secrets.token_hex(4)}"
        response = client.post(
            "/api/v1/users",
            headers=bearer(admin_token),
            json={"username": name, "email": f"{name}@example.com", "password": password, "role": role},
        )
        assert response.status_code == 201, response.text
        user_id = response.json()["data"]["id"]
        created.append(user_id)
        tokens = login(client, name, password)
        return ApiUser(
            user_id,
            name,
            f"{name}@example.com",
            password,
            role,
            tokens["access_token"],
            tokens["refresh_token"],
        )

    yield make
    fresh_admin = login(client, "root_admin", ADMIN_PASSWORD)["access_token"]
    for user_id in created:
        client.delete(f"/api/v1/users/{user_id}", headers=bearer(fresh_admin))
