"""Register, login, refresh rotation, reuse detection, logout, expired/forged tokens, passwords."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx
import jwt
from api_helpers import PASSWORD, ApiServer, assert_error_shape, bearer, login


def _register(client: httpx.Client, **body: str) -> httpx.Response:
    name = f"reg_{secrets.token_hex(4)}"
    payload = {
        "username": name,
        "email": f"{name}@example.com",
        "password": PASSWORD,
        "full_name": "Reg User",
    }
    return client.post("/api/v1/auth/register", json={**payload, **body})


def test_register_gives_viewer_and_login_by_username_or_email(client: httpx.Client) -> None:
    response = _register(client)
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["role"] == "viewer"
    assert user["id"].startswith("user_") and user["created_at"].endswith("Z")
    assert "hashed_password" not in response.text and PASSWORD not in response.text

    by_name = login(client, user["username"], PASSWORD)
    assert by_name["token_type"] == "bearer" and by_name["expires_in"] > 0
    by_email = client.post("/api/v1/auth/login", json={"email": user["email"].upper(), "password": PASSWORD})
    assert by_email.status_code == 200, by_email.text

    me = client.get("/api/v1/users/me", headers=bearer(by_name["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"] and me.json()["last_login"].endswith("Z")


def test_register_duplicate_and_weak_password(client: httpx.Client) -> None:
    first = _register(client)
    assert first.status_code == 201
    duplicate = _register(client, email=first.json()["email"])
    assert_error_shape(duplicate, 409, "DUPLICATE_RESOURCE")
    weak = _register(client, password="short")
    body = assert_error_shape(weak, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["field"] == "password"
    assert "short" not in weak.text  # the submitted password is never echoed


def test_wrong_password_and_unknown_user_look_the_same(client: httpx.Client) -> None:
    name = _register(client).json()["username"]
    wrong = client.post("/api/v1/auth/login", json={"username": name, "password": "Wrong12345"})
    unknown = client.post("/api/v1/auth/login", json={"username": "nobody_x", "password": "Wrong12345"})
    assert_error_shape(wrong, 401, "AUTH_FAILED")
    assert_error_shape(unknown, 401, "AUTH_FAILED")
    assert wrong.json()["message"] == unknown.json()["message"]


def test_refresh_rotates_and_reuse_ends_the_session(client: httpx.Client) -> None:
    name = _register(client).json()["username"]
    first = login(client, name, PASSWORD)

    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/v1/users/me", headers=bearer(second["access_token"])).status_code == 200

    # the old refresh token is dead; presenting it again revokes the whole session (family)
    reuse = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_error_shape(reuse, 401, "INVALID_TOKEN")
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert_error_shape(again, 401, "INVALID_TOKEN")
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(second["access_token"])), 401)

    # another session of the same user is untouched
    other = login(client, name, PASSWORD)
    assert client.get("/api/v1/users/me", headers=bearer(other["access_token"])).status_code == 200


def test_logout_revokes_access_and_refresh(client: httpx.Client) -> None:
    name = _register(client).json()["username"]
    session_a = login(client, name, PASSWORD)
    session_b = login(client, name, PASSWORD)

    out = client.post("/api/v1/auth/logout", headers=bearer(session_a["access_token"]))
    assert out.status_code == 204 and out.content == b""
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(session_a["access_token"])), 401)
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": session_a["refresh_token"]})
    assert_error_shape(refresh, 401, "INVALID_TOKEN")
    # logout ends this session only
    assert client.get("/api/v1/users/me", headers=bearer(session_b["access_token"])).status_code == 200

    everywhere = client.post(
        "/api/v1/auth/logout", headers=bearer(session_b["access_token"]), json={"all_sessions": True}
    )
    assert everywhere.status_code == 204
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(session_b["access_token"])), 401)


def _claims(server: ApiServer, token: str) -> dict[str, object]:
    return dict(jwt.decode(token, server.secret_key, algorithms=["HS256"]))


def test_expired_and_forged_tokens(client: httpx.Client, api_server: ApiServer) -> None:
    name = _register(client).json()["username"]
    tokens = login(client, name, PASSWORD)
    claims = _claims(api_server, tokens["access_token"])
    past = datetime.now(UTC) - timedelta(minutes=5)

    expired = jwt.encode(
        {**claims, "iat": past - timedelta(hours=1), "nbf": past - timedelta(hours=1), "exp": past},
        api_server.secret_key,
        algorithm="HS256",
    )
    body = assert_error_shape(client.get("/api/v1/users/me", headers=bearer(expired)), 401, "TOKEN_EXPIRED")
    assert body["errors"][0]["code"] == "AUTH_002"

    forged = jwt.encode(
        {**claims, "role": "admin"}, "not-the-server-secret-0123456789abcdef", algorithm="HS256"
    )
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(forged)), 401, "INVALID_TOKEN")

    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(unsigned)), 401, "INVALID_TOKEN")

    # a refresh token is not an access token
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(tokens["refresh_token"])), 401)
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer("garbage")), 401, "INVALID_TOKEN")
    assert_error_shape(client.get("/api/v1/users/me"), 401, "AUTH_FAILED")


def test_change_password_ends_sessions(client: httpx.Client) -> None:
    name = _register(client).json()["username"]
    tokens = login(client, name, PASSWORD)
    wrong = client.post(
        "/api/v1/auth/change-password",
        headers=bearer(tokens["access_token"]),
        json={"current_password": "Nope12345", "new_password": "NewSecret99"},
    )
    assert_error_shape(wrong, 400, "VALIDATION_ERROR")
    changed = client.post(
        "/api/v1/auth/change-password",
        headers=bearer(tokens["access_token"]),
        json={"current_password": PASSWORD, "new_password": "NewSecret99"},
    )
    assert changed.status_code == 200 and changed.json()["status"] == "success"
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(tokens["access_token"])), 401)
    login(client, name, "NewSecret99")
