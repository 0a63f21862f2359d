"""API keys stay inside their scope (issue 14).

Every route of the app is called with a read-scoped key of an admin and of a viewer; what it may do
is computed from the route's declared checks and the permission table, so a new route is covered
without touching this file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from api_helpers import ApiServer, ApiUser, assert_error_shape, bearer
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from api.core.permissions import role_can, scope_allows
from api.deps import PermissionCheck, get_login_session_principal, get_principal
from api.main import create_app

READ_SCOPES = ["read"]
PATH_VALUES = {"role_name": "viewer"}


@dataclass(frozen=True)
class RouteAccess:
    method: str
    path: str
    authenticated: bool
    session_only: bool
    grants: tuple[tuple[str, str], ...]

    def key_allowed(self, role: str, scopes: list[str]) -> bool:
        if self.session_only:
            return False
        return all(role_can(role, r, a) and scope_allows(scopes, r, a) for r, a in self.grants)


def _calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def route_table() -> list[RouteAccess]:
    out = []
    for route in iter_route_contexts(create_app().routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        calls = list(_calls(route.dependant))
        grants = tuple((c.resource, c.action) for c in calls if isinstance(c, PermissionCheck))
        for method in sorted(route.methods or ()):
            out.append(
                RouteAccess(
                    method,
                    route.path,
                    authenticated=get_principal in calls,
                    session_only=get_login_session_principal in calls,
                    grants=grants,
                )
            )
    return out


ROUTES = route_table()


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), f"{m.group(1)}_probe"), path)


def _create_key(client: httpx.Client, token: str, scopes: list[str] | None) -> httpx.Response:
    body: dict[str, object] = {"name": "probe"}
    if scopes is not None:
        body["permissions"] = scopes
    return client.post("/api/v1/users/me/api-keys", headers=bearer(token), json=body)


@pytest.fixture(scope="module")
def read_keys(api_server: ApiServer) -> Iterator[dict[str, tuple[str, str]]]:
    """role -> (read-scoped key, user id), for an admin and a viewer made through the API."""
    from api_helpers import ADMIN_PASSWORD, PASSWORD, login

    with httpx.Client(base_url=api_server.url, timeout=30) as client:
        admin = login(client, "root_admin", ADMIN_PASSWORD)["access_token"]
        viewer = client.post(
            "/api/v1/users",
            headers=bearer(admin),
            json={"username": "scope_viewer", "email": "scope_viewer@example.com", "password": PASSWORD},
        )
        assert viewer.status_code == 201, viewer.text
        viewer_id = viewer.json()["data"]["id"]
        viewer_token = login(client, "scope_viewer", PASSWORD)["access_token"]
        admin_id = client.get("/api/v1/users/me", headers=bearer(admin)).json()["id"]
        keys = {
            "admin": (_create_key(client, admin, READ_SCOPES).json()["data"]["key"], admin_id),
            "viewer": (_create_key(client, viewer_token, READ_SCOPES).json()["data"]["key"], viewer_id),
        }
        yield keys
        client.delete(
            f"/api/v1/users/{viewer_id}",
            headers=bearer(login(client, "root_admin", ADMIN_PASSWORD)["access_token"]),
        )


@pytest.mark.parametrize("role", ["admin", "viewer"])
@pytest.mark.parametrize("route", ROUTES, ids=[f"{r.method} {r.path}" for r in ROUTES])
def test_read_key_gets_exactly_what_the_permission_table_allows(
    client: httpx.Client, read_keys: dict[str, tuple[str, str]], route: RouteAccess, role: str
) -> None:
    key, _ = read_keys[role]
    # no body: a check that is a dependency answers before the body is looked at
    response = client.request(route.method, _url(route.path), headers={"X-API-Key": key})
    if route.authenticated and not route.key_allowed(role, READ_SCOPES):
        assert_error_shape(response, 403, "PERMISSION_DENIED")
    else:
        assert response.status_code not in (401, 403), (route, response.text)


def test_the_route_table_sees_the_sensitive_routes() -> None:
    session_only = {(r.method, r.path) for r in ROUTES if r.session_only}
    assert {
        ("POST", "/api/v1/users/me/api-keys"),
        ("GET", "/api/v1/users/me/api-keys"),
        ("DELETE", "/api/v1/users/me/api-keys/{key_id}"),
        ("POST", "/api/v1/auth/2fa/setup"),
        ("POST", "/api/v1/auth/2fa/verify"),
        ("POST", "/api/v1/auth/2fa/disable"),
        ("POST", "/api/v1/auth/change-password"),
        ("POST", "/api/v1/auth/logout"),
    } <= session_only
    assert any(r.grants == (("users", "edit"),) and r.path == "/api/v1/users/{user_id}" for r in ROUTES)


def test_read_key_cannot_mint_a_wider_key_or_touch_the_account(
    client: httpx.Client, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("designer")
    key = _create_key(client, user.access_token, READ_SCOPES).json()["data"]["key"]
    as_key = {"X-API-Key": key}
    # the reported escalation: a read key minting an unscoped key that then edits the profile
    assert_error_shape(
        client.post("/api/v1/users/me/api-keys", headers=as_key, json={"name": "x", "permissions": []}),
        403,
        "PERMISSION_DENIED",
    )
    for path, body in (
        ("/api/v1/auth/2fa/setup", None),
        ("/api/v1/auth/logout", {"all_sessions": True}),
        ("/api/v1/auth/change-password", {"current_password": user.password, "new_password": "Other1234x"}),
    ):
        answer = client.post(path, headers={"Authorization": f"Bearer {key}"}, json=body)
        assert answer.json()["error"]["details"]["reason"] == "session_required", path
    # the owner's session is still alive: the key logged nothing out
    assert client.get("/api/v1/users/me", headers=user.headers).status_code == 200


def test_unscoped_keys_allow_nothing(
    client: httpx.Client, api_server: ApiServer, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("developer")
    assert_error_shape(_create_key(client, user.access_token, []), 422, "VALIDATION_ERROR")
    default = _create_key(client, user.access_token, None)
    assert default.status_code == 201 and default.json()["data"]["permissions"] == ["read"]

    # a key stored with no scopes (created before this rule) is worth nothing
    raw = "aetl_" + "u" * 43
    with psycopg.connect(api_server.database_url.replace("+psycopg", "")) as conn:
        conn.execute(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, permissions) "
            "VALUES (%s, %s, 'legacy', %s, %s, '[]')",
            ("key_legacy_" + user.id[-8:], user.id, raw[:13], _server_key_hash(api_server, raw)),
        )
    for method, path, body in (
        ("GET", "/api/v1/users/me", None),
        ("GET", "/api/v1/roles", None),
        ("PUT", f"/api/v1/users/{user.id}", {"full_name": "Changed"}),
    ):
        answer = client.request(method, path, headers={"X-API-Key": raw}, json=body)
        assert_error_shape(answer, 403, "PERMISSION_DENIED")


def _server_key_hash(server: ApiServer, key: str) -> str:
    """The hash the server stores for `key`, computed with the server's own settings."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **server.env}
    code = "import sys; from api.core.security import hash_api_key; print(hash_api_key(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, key], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()
