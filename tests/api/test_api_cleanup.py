"""System cleanup: create old data, estimate, run, and check that exactly the old data is gone."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable

import httpx
import sqlalchemy as sa
from api_helpers import ApiServer, ApiUser, assert_error_shape, bearer


def _sql(server: ApiServer, statement: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
    engine = sa.create_engine(server.database_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def test_activity_log_cleanup_estimate_run_history(
    client: httpx.Client, admin_token: str, api_server: ApiServer
) -> None:
    admin = bearer(admin_token)
    marker = f"test.cleanup_{secrets.token_hex(4)}"
    for age_days in (400, 500, 10):
        _sql(
            api_server,
            "INSERT INTO activity_logs (action, details, status, created_at) "
            "VALUES (:a, CAST('{}' AS json), 'success', now() - make_interval(days => :d))",
            a=marker,
            d=age_days,
        )
    estimate = client.get(
        "/api/v1/admin/cleanup/estimate/activity-logs", headers=admin, params={"retention_days": 365}
    )
    assert estimate.status_code == 200, estimate.text
    assert estimate.json()["data"]["estimated_records"] >= 2
    assert estimate.json()["data"]["estimated_space_bytes"] > 0
    assert len(_sql(api_server, "SELECT id FROM activity_logs WHERE action = :a", a=marker)) == 3

    done = client.post("/api/v1/admin/cleanup/activity-logs", headers=admin, json={"retention_days": 365})
    assert done.status_code == 200, done.text
    data = done.json()["data"]
    assert data["operation"] == "cleanup_activity_logs" and data["records_deleted"] >= 2
    assert data["timestamp"].endswith("Z")
    ages = _sql(
        api_server,
        "SELECT extract(day FROM now() - created_at)::int FROM activity_logs WHERE action = :a",
        a=marker,
    )
    assert [row[0] for row in ages] == [10]
    again = client.get(
        "/api/v1/admin/cleanup/estimate/activity-logs", headers=admin, params={"retention_days": 365}
    )
    assert again.json()["data"]["estimated_records"] == 0

    history = client.get(
        "/api/v1/admin/cleanup/history", headers=admin, params={"operation": "cleanup_activity_logs"}
    )
    assert history.status_code == 200
    assert history.json()["total"] >= 1 and history.json()["data"][0]["username"] == api_server.admin_username

    for bad in ({"retention_days": -1}, {"retention_days": 0}, {"retention_days": "x"}, {"days": 3}):
        assert_error_shape(client.post("/api/v1/admin/cleanup/activity-logs", headers=admin, json=bad), 422)
    assert_error_shape(client.get("/api/v1/admin/cleanup/estimate/everything", headers=admin), 422)
    assert_error_shape(
        client.get(
            "/api/v1/admin/cleanup/estimate/activity-logs", headers=admin, params={"retention_days": -5}
        ),
        422,
    )
    assert_error_shape(client.post("/api/v1/admin/cleanup/unknown-type", headers=admin), 404)


def test_expired_sessions_vacuum_and_stats(
    client: httpx.Client, admin_token: str, api_server: ApiServer, make_user: Callable[..., ApiUser]
) -> None:
    admin = bearer(admin_token)
    user = make_user("viewer")
    expired, revoked_live = uuid.uuid4().hex, uuid.uuid4().hex
    _sql(
        api_server,
        "INSERT INTO refresh_tokens (jti, user_id, family_id, expires_at) VALUES "
        "(:e, :u, :e, now() - interval '1 day')",
        e=expired,
        u=user.id,
    )
    _sql(
        api_server,
        "INSERT INTO refresh_tokens (jti, user_id, family_id, expires_at, revoked_at) VALUES "
        "(:r, :u, :r, now() + interval '1 day', now())",
        r=revoked_live,
        u=user.id,
    )
    estimate = client.get("/api/v1/admin/cleanup/estimate/expired-sessions", headers=admin).json()["data"]
    assert estimate["estimated_records"] >= 1
    done = client.post("/api/v1/admin/cleanup/expired-sessions", headers=admin)
    assert done.status_code == 200 and done.json()["data"]["sessions_deleted"] >= 1
    left = {
        row[0] for row in _sql(api_server, "SELECT jti FROM refresh_tokens WHERE user_id = :u", u=user.id)
    }
    # the revoked-but-unexpired one stays: it is how a replayed refresh token is recognised
    assert expired not in left and revoked_live in left
    # the user's own live session is untouched
    assert client.get("/api/v1/users/me", headers=user.headers).status_code == 200

    vacuum = client.post("/api/v1/admin/cleanup/database-vacuum", headers=admin)
    assert vacuum.status_code == 200, vacuum.text
    assert vacuum.json()["data"]["tables_processed"] > 5
    stats = client.get("/api/v1/admin/cleanup/stats", headers=admin).json()["data"]
    assert stats["database"]["table_count"] > 5 and stats["database"]["total_size_mb"] > 0
    assert stats["records"]["users"] >= 2
    everything = client.post("/api/v1/admin/cleanup/all", headers=admin, json={"retention_days": 36500})
    assert everything.status_code == 200
    assert [op["name"] for op in everything.json()["data"]["operations"]] == [
        "activity_logs",
        "expired_sessions",
        "database_vacuum",
    ]
