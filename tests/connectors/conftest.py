"""Connector tests run against the session stack (real API, warehouse, PostgreSQL, MariaDB)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.core.config import get_settings
from orchestration.stack import Stack
from tests.sources import PgSource, import_folder, postgres_source

ROLE_PASSWORD = "Secret1234"


@dataclass
class Caller:
    role: str
    headers: dict[str, str]


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def admin(api: httpx.Client) -> Caller:
    settings = get_settings()
    response = api.post(
        "/auth/login",
        json={"username": settings.admin_username, "password": settings.admin_password.get_secret_value()},
    )
    assert response.status_code == 200, response.text
    return Caller("admin", {"Authorization": f"Bearer {response.json()['access_token']}"})


@pytest.fixture(scope="session")
def as_role(api: httpx.Client, admin: Caller) -> Iterator[Callable[[str], Caller]]:
    """One user per role (created once per session through the API), deleted at the end."""
    made: dict[str, tuple[str, Caller]] = {}

    def get(role: str) -> Caller:
        if role == "admin":
            return admin
        if role not in made:
            name = f"c_{role}_{secrets.token_hex(3)}"
            created = api.post(
                "/users",
                headers=admin.headers,
                json={
                    "username": name,
                    "email": f"{name}@example.com",
                    "password": ROLE_PASSWORD,
                    "role": role,
                },
            )
            assert created.status_code == 201, created.text
            token = api.post("/auth/login", json={"username": name, "password": ROLE_PASSWORD}).json()
            made[role] = (
                created.json()["data"]["id"],
                Caller(role, {"Authorization": f"Bearer {token['access_token']}"}),
            )
        return made[role][1]

    yield get
    for user_id, _ in made.values():
        api.delete(f"/users/{user_id}", headers=admin.headers)


@pytest.fixture(scope="session")
def pg_source(stack: Stack) -> Iterator[PgSource]:
    from tests.sources import create_transactions_table

    with postgres_source() as source:
        create_transactions_table(source, 500)
        yield source


@pytest.fixture
def files_dir(stack: Stack) -> Iterator[Path]:
    with import_folder(get_settings().file_roots[0]) as folder:
        yield folder


@pytest.fixture
def make_connector(api: httpx.Client, admin: Caller) -> Iterator[Callable[..., dict[str, object]]]:
    created: list[str] = []

    def make(**body: object) -> dict[str, object]:
        body.setdefault("name", f"conn_{secrets.token_hex(4)}")
        response = api.post("/connectors", headers=admin.headers, json=body)
        assert response.status_code == 201, response.text
        created.append(str(response.json()["id"]))
        return dict(response.json())

    yield make
    for connector_id in created:
        api.delete(f"/connectors/{connector_id}", headers=admin.headers)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["message"]
    assert body["errors"] and {"code", "field", "message"} <= set(body["errors"][0])
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    if code:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return dict(body)
