"""User administration, deactivation taking effect at once, API keys as Bearer and X-API-Key."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from api_helpers import ApiUser, assert_error_shape, bearer, login


def test_admin_creates_user_with_role_and_viewer_is_denied(
    client: httpx.Client, admin_token: str, make_user: Callable[..., ApiUser]
) -> None:
    engineer = make_user("engineer")
    got = client.get(f"/api/v1/users/{engineer.id}", headers=bearer(admin_token))
    assert got.status_code == 200 and got.json()["data"]["role"] == "engineer"

    viewer = make_user("viewer")
    body = assert_error_shape(client.get("/api/v1/users", headers=viewer.headers), 403, "PERMISSION_DENIED")
    assert body["errors"][0]["code"] == "AUTH_003"
    create = client.post(
        "/api/v1/users",
        headers=viewer.headers,
        json={"email": "x@example.com", "password": "Secret1234", "role": "admin"},
    )
    assert_error_shape(create, 403, "PERMISSION_DENIED")
    # own profile is readable, someone else's is not
    assert client.get(f"/api/v1/users/{viewer.id}", headers=viewer.headers).status_code == 200
    assert_error_shape(client.get(f"/api/v1/users/{engineer.id}", headers=viewer.headers), 403)
    # a user cannot promote themself
    promote = client.put(f"/api/v1/users/{viewer.id}", headers=viewer.headers, json={"role": "admin"})
    assert_error_shape(promote, 403)

    listing = client.get("/api/v1/users", headers=bearer(admin_token), params={"role": "engineer"})
    assert listing.status_code == 200
    assert all(u["role"] == "engineer" for u in listing.json()["data"]["items"])
    unknown_role = client.post(
        "/api/v1/users",
        headers=bearer(admin_token),
        json={"email": "r@example.com", "password": "Secret1234", "role": "wizard"},
    )
    assert_error_shape(unknown_role, 422)
    assert_error_shape(
        client.get("/api/v1/users/user_missing", headers=bearer(admin_token)), 404, "RESOURCE_NOT_FOUND"
    )


def test_deactivated_user_is_refused_at_once(
    client: httpx.Client, admin_token: str, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("designer")
    key = client.post("/api/v1/users/me/api-keys", headers=user.headers, json={"name": "ci"}).json()["data"][
        "key"
    ]
    assert client.get("/api/v1/users/me", headers={"X-API-Key": key}).status_code == 200

    off = client.post(f"/api/v1/users/{user.id}/deactivate", headers=bearer(admin_token))
    assert off.status_code == 200 and off.json()["data"] == {"user_id": user.id, "is_active": False}
    # the access token, the refresh token, the API key and a new login: all refused immediately
    assert client.get("/api/v1/users/me", headers=user.headers).status_code in (401, 403)
    assert_error_shape(client.get("/api/v1/users/me", headers={"X-API-Key": key}), 403, "PERMISSION_DENIED")
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 401
    relogin = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    body = assert_error_shape(relogin, 403, "PERMISSION_DENIED")
    assert body["error"]["details"]["reason"] == "account_inactive"

    on = client.post(f"/api/v1/users/{user.id}/activate", headers=bearer(admin_token))
    assert on.json()["data"]["is_active"] is True
    login(client, user.username, user.password)


def test_admin_reset_password(
    client: httpx.Client, admin_token: str, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("analyst")
    reset = client.post(f"/api/v1/users/{user.id}/reset-password", headers=bearer(admin_token))
    assert reset.status_code == 200
    temporary = reset.json()["data"]["temporary_password"]
    assert_error_shape(client.get("/api/v1/users/me", headers=user.headers), 401)
    tokens = login(client, user.username, temporary)
    assert tokens["must_change_password"] is True
    # until the temporary password is changed, only /users/me, logout and change-password work
    headers = bearer(tokens["access_token"])
    assert client.get("/api/v1/users/me", headers=headers).json()["must_change_password"] is True
    body = assert_error_shape(client.get("/api/v1/roles", headers=headers), 403, "PERMISSION_DENIED")
    assert body["error"]["details"]["reason"] == "password_change_required"
    changed = client.post(
        "/api/v1/auth/change-password",
        headers=headers,
        json={"current_password": temporary, "new_password": "Brand1New2Pass"},
    )
    assert changed.status_code == 200, changed.text
    fresh = login(client, user.username, "Brand1New2Pass")
    assert fresh["must_change_password"] is False
    assert client.get("/api/v1/roles", headers=bearer(fresh["access_token"])).status_code == 200


def test_api_keys(client: httpx.Client, make_user: Callable[..., ApiUser]) -> None:
    user = make_user("engineer")
    created = client.post(
        "/api/v1/users/me/api-keys", headers=user.headers, json={"name": "reader", "permissions": ["read"]}
    )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    key = data["key"]
    assert key.startswith("aetl_") and data["prefix"] == key[: len(data["prefix"])]

    listed = client.get("/api/v1/users/me/api-keys", headers=user.headers).json()["data"]
    assert [k["id"] for k in listed] == [data["id"]] and "key" not in listed[0]

    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        me = client.get("/api/v1/users/me", headers=headers)
        assert me.status_code == 200 and me.json()["id"] == user.id
    # a read-only key cannot change anything, even what its owner may change
    edit = client.put(f"/api/v1/users/{user.id}", headers={"X-API-Key": key}, json={"full_name": "X"})
    assert_error_shape(edit, 403)
    access = client.get("/api/v1/roles/features/access", headers={"X-API-Key": key}).json()["data"]
    assert (
        access["features"]["pipelines"]["view"] is True and access["features"]["pipelines"]["create"] is False
    )

    bad_scope = client.post(
        "/api/v1/users/me/api-keys",
        headers=user.headers,
        json={"name": "x", "permissions": ["pipelines:fly"]},
    )
    assert_error_shape(bad_scope, 422)

    revoked = client.delete(f"/api/v1/users/me/api-keys/{data['id']}", headers=user.headers)
    assert revoked.status_code == 200
    assert_error_shape(client.get("/api/v1/users/me", headers={"X-API-Key": key}), 401, "INVALID_TOKEN")
    assert_error_shape(client.get("/api/v1/users/me", headers={"X-API-Key": "aetl_" + "x" * 43}), 401)


def test_role_change_takes_effect_and_last_admin_is_kept(
    client: httpx.Client, admin_token: str, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("viewer")
    assert_error_shape(client.get("/api/v1/users", headers=user.headers), 403)
    promoted = client.put(f"/api/v1/users/{user.id}", headers=bearer(admin_token), json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["data"]["role"] == "admin"
    # tokens issued under the old role are retired; a new login carries the new role
    assert_error_shape(client.get("/api/v1/users/me", headers=user.headers), 401)
    new_admin = login(client, user.username, user.password)["access_token"]
    assert client.get("/api/v1/users", headers=bearer(new_admin)).status_code == 200

    me = client.get("/api/v1/users/me", headers=bearer(admin_token)).json()
    # the root admin cannot deactivate or delete itself
    assert_error_shape(client.post(f"/api/v1/users/{me['id']}/deactivate", headers=bearer(admin_token)), 400)
    assert_error_shape(client.delete(f"/api/v1/users/{me['id']}", headers=bearer(admin_token)), 400)
    demote = client.put(f"/api/v1/users/{user.id}", headers=bearer(new_admin), json={"role": "viewer"})
    assert demote.status_code == 200
