"""Issue 14's smaller findings: health exposure and limits, session lifetime, tokens without a
session, API-key hashes independent of the JWT secret, docs that work offline."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable

import httpx
import jwt
import psycopg
from api_helpers import ADMIN_PASSWORD, ApiServer, ApiUser, assert_error_shape, bearer, login

PROTECTED_HEALTH = ("/api/v1/health/database", "/api/v1/health/cache", "/api/v1/health/system",
                    "/api/v1/health/metrics")  # fmt: skip
PUBLIC_HEALTH = ("/health", "/health/detailed", "/api/v1/health", "/api/v1/health/live",
                 "/api/v1/health/ready")  # fmt: skip


def test_only_the_documented_health_routes_are_public(client: httpx.Client, admin_token: str) -> None:
    for path in PROTECTED_HEALTH:
        assert_error_shape(client.get(path), 401, "AUTH_FAILED")
        assert client.get(path, headers=bearer(admin_token)).status_code in (200, 503), path
    for path in PUBLIC_HEALTH:
        assert client.get(path).status_code in (200, 503), path


def test_token_without_a_session_id_is_refused(client: httpx.Client, api_server: ApiServer) -> None:
    token = login(client, "root_admin", ADMIN_PASSWORD)["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims.pop("sid")
    forged = jwt.encode(claims, api_server.secret_key, algorithm="HS256")
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(forged)), 401, "INVALID_TOKEN")
    assert client.get("/api/v1/users/me", headers=bearer(token)).status_code == 200


def _key_hash_in_db(database_url: str, key_id: str) -> str:
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT key_hash FROM api_keys WHERE id = %s", (key_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_rotated_jwt_secret_keeps_keys_limits_health_checks_and_ends_old_sessions(
    start_api: Callable[..., ApiServer], client: httpx.Client, api_server: ApiServer,
    make_user: Callable[..., ApiUser],
) -> None:  # fmt: skip
    user = make_user("viewer")
    created = client.post("/api/v1/users/me/api-keys", headers=user.headers, json={"name": "k"})
    key = created.json()["data"]["key"]
    # a key stored the old way (HMAC with the JWT secret) is re-hashed on first use
    legacy_key = "aetl_" + secrets.token_urlsafe(32)
    legacy_hash = hmac.new(api_server.secret_key.encode(), legacy_key.encode(), hashlib.sha256).hexdigest()
    with psycopg.connect(api_server.database_url.replace("+psycopg", "")) as conn:
        conn.execute(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, permissions) "
            "VALUES (%s, %s, 'legacy', %s, %s, %s)",
            (f"key_old_{secrets.token_hex(4)}", user.id, legacy_key[:13], legacy_hash, '["read"]'),
        )
    assert client.get("/api/v1/users/me", headers={"X-API-Key": legacy_key}).status_code == 200
    with psycopg.connect(api_server.database_url.replace("+psycopg", "")) as conn:
        left = conn.execute("SELECT count(*) FROM api_keys WHERE key_hash = %s", (legacy_hash,)).fetchone()
        assert left == (0,)

    max_age = 25.0
    server = start_api(
        AETL_SECRET_KEY=secrets.token_urlsafe(32),
        AETL_TRUSTED_PROXIES="127.0.0.1",  # so each phase below is its own client address
        AETL_RATE_LIMIT_ANONYMOUS="3",
        AETL_SESSION_MAX_DAYS=str(max_age / 86400),
    )
    with httpx.Client(base_url=server.url, timeout=30) as other:
        # liveness is never limited; checks that call other services are
        probe = {"X-Forwarded-For": "10.0.0.1"}
        assert all(other.get("/health", headers=probe).status_code == 200 for _ in range(5))
        checks = [other.get("/health/detailed", headers=probe).status_code for _ in range(4)]
        assert checks[:3] == [503] * 3 and checks[3] == 429  # components are down on this server

        rotated = {"X-Forwarded-For": "10.0.0.2"}
        for api_key in (key, legacy_key):
            assert other.get("/api/v1/users/me", headers={**rotated, "X-API-Key": api_key}).status_code == 200
        assert_error_shape(other.get("/api/v1/users/me", headers={**rotated, **user.headers}), 401)

        # a session cannot be refreshed past its absolute lifetime
        fresh = {"X-Forwarded-For": "10.0.0.3"}
        tokens = other.post(
            "/api/v1/auth/login", json={"username": user.username, "password": user.password}, headers=fresh
        ).json()
        logged_in = time.monotonic()
        refreshed = other.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, headers=fresh
        )
        assert refreshed.status_code == 200, refreshed.text
        time.sleep(max(0.0, max_age + 1 - (time.monotonic() - logged_in)))
        late = other.post(
            "/api/v1/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}, headers=fresh
        )
        assert_error_shape(late, 401)
        me = other.get("/api/v1/users/me", headers={**fresh, **bearer(refreshed.json()["access_token"])})
        assert_error_shape(me, 401)


def test_docs_work_offline(client: httpx.Client) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
        urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html.text)
        assert urls, html.text[:500]
        assert not [u for u in urls if "://" in u or u.startswith("//")], urls
        for url in urls:
            if url.endswith((".js", ".css", ".png")):
                asset = client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
