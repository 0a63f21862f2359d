"""System cleanup: create old data, estimate, run, and check that exactly the old data is gone."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa
from api_helpers import ApiServer, ApiUser, assert_error_shape, bearer

from orchestration.warehouse.credentials import PIPE_FOLDER


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
    operations = everything.json()["data"]["operations"]
    assert [op["name"] for op in operations] == [
        "activity_logs",
        "temp_files",
        "orphaned_data",
        "execution_logs",
        "database_vacuum",
        "expired_sessions",
    ]
    # this server's Dagster is down: its two steps fail, reported, and the others still ran
    assert everything.json()["data"]["failed_operations"] == ["orphaned_data", "execution_logs"]
    assert all(
        op["status"] == "success"
        for op in operations
        if op["name"] not in ("orphaned_data", "execution_logs")
    )
    for route, body in (("orphaned-data", None), ("execution-logs", {"retention_days": 30})):
        assert_error_shape(client.post(f"/api/v1/admin/cleanup/{route}", headers=admin, json=body), 503)


def test_temp_files_cleanup_removes_exactly_the_old_files(
    client: httpx.Client, admin_token: str, api_server: ApiServer
) -> None:
    from api.core.config import get_settings

    admin = bearer(admin_token)
    # the server's data folder is this process's (AETL_DATA_DIR)
    spill = get_settings().warehouse_dir / "tmp"
    spill.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(4)
    old_file, new_file = spill / f"aetl_test_old_{tag}.bin", spill / f"aetl_test_new_{tag}.bin"
    step_dir = Path(tempfile.gettempdir()) / f"aetl_step_test_{tag}"
    step_dir.mkdir()
    (step_dir / "in.arrow").write_bytes(b"x" * 3000)
    old_file.write_bytes(b"x" * 5000)
    new_file.write_bytes(b"x" * 7000)
    # a named pipe a killed PostgreSQL load left behind, and one of a load in progress
    pipes = get_settings().data_dir / PIPE_FOLDER
    pipes.mkdir(parents=True, exist_ok=True)
    old_pipe, new_pipe = pipes / f"old_{tag}.pipe", pipes / f"new_{tag}.pipe"
    os.mkfifo(old_pipe)
    os.mkfifo(new_pipe)
    # Excel exports: one older than its 24 h download link, one whose link still works
    exports = get_settings().data_dir.resolve() / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    dead_export, live_export = exports / f"old_{tag}.xlsx", exports / f"live_{tag}.xlsx"
    dead_export.write_bytes(b"x" * 4000)
    live_export.write_bytes(b"x" * 4000)
    two_hours_ago = time.time() - 2 * 3600
    os.utime(live_export, (two_hours_ago, two_hours_ago))
    two_days_ago = time.time() - 48 * 3600
    for path in (old_file, step_dir / "in.arrow", step_dir, old_pipe, dead_export):
        os.utime(path, (two_days_ago, two_days_ago))
    try:
        estimate = client.get(
            "/api/v1/admin/cleanup/estimate/temp-files", headers=admin, params={"retention_hours": 24}
        )
        assert estimate.status_code == 200, estimate.text
        assert estimate.json()["data"]["estimated_files"] >= 2
        assert estimate.json()["data"]["estimated_space_bytes"] >= 8000
        assert old_file.exists() and step_dir.exists()

        done = client.post("/api/v1/admin/cleanup/temp-files", headers=admin, json={"retention_hours": 24})
        assert done.status_code == 200, done.text
        data = done.json()["data"]
        assert data["operation"] == "cleanup_temp_files" and data["files_deleted"] >= 2
        assert data["space_freed_bytes"] >= 8000 and old_file.name in data["removed"]
        assert not old_file.exists() and not step_dir.exists() and new_file.exists()
        assert old_pipe.name in data["removed"] and not old_pipe.exists() and new_pipe.exists()
        assert dead_export.name in data["removed"] and not dead_export.exists() and live_export.exists()
        # a retention shorter than the link's life still keeps the file of a link that works
        short = client.post("/api/v1/admin/cleanup/temp-files", headers=admin, json={"retention_hours": 1})
        assert short.status_code == 200, short.text
        assert live_export.name not in short.json()["data"]["removed"] and live_export.exists()
        history = client.get(
            "/api/v1/admin/cleanup/history", headers=admin, params={"operation": "cleanup_temp_files"}
        ).json()
        assert history["total"] >= 1
        for bad in ({"retention_hours": -1}, {"retention_hours": 0}, {"hours": 3}):
            assert_error_shape(client.post("/api/v1/admin/cleanup/temp-files", headers=admin, json=bad), 422)
        assert_error_shape(
            client.get(
                "/api/v1/admin/cleanup/estimate/temp-files", headers=admin, params={"retention_hours": -2}
            ),
            422,
        )
    finally:
        live_export.unlink(missing_ok=True)
        dead_export.unlink(missing_ok=True)
        new_file.unlink(missing_ok=True)
        old_file.unlink(missing_ok=True)
        old_pipe.unlink(missing_ok=True)
        new_pipe.unlink(missing_ok=True)
        shutil.rmtree(step_dir, ignore_errors=True)


def test_cleanup_schedule_setting_and_bad_input(client: httpx.Client, admin_token: str) -> None:
    admin = bearer(admin_token)
    before = client.get("/api/v1/admin/cleanup/schedule", headers=admin)
    assert before.status_code == 200, before.text
    assert {"enabled", "schedule", "retention_periods", "next_run", "last_run", "dagster"} <= set(
        before.json()["data"]
    )
    body = {
        "enabled": True,
        "schedule": "30 4 * * *",
        "retention_periods": {"activity_logs_days": 60, "execution_logs_days": 14, "temp_files_hours": 12},
    }
    put = client.put("/api/v1/admin/cleanup/schedule", headers=admin, json=body)
    assert put.status_code == 200, put.text
    assert put.json()["message"] == "Cleanup schedule updated successfully"
    assert put.json()["data"]["next_run"].endswith("T04:30:00.000Z")
    got = client.get("/api/v1/admin/cleanup/schedule", headers=admin).json()["data"]
    assert got["schedule"] == "30 4 * * *" and got["retention_periods"]["execution_logs_days"] == 14
    assert got["enabled"] is True and got["dagster"] is None  # this server's Dagster is down
    for bad in (
        {**body, "schedule": "every day"},
        {**body, "schedule": "61 4 * * *"},
        {**body, "retention_periods": {"activity_logs_days": -1}},
        {"schedule": "0 2 * * *"},
    ):
        assert_error_shape(client.put("/api/v1/admin/cleanup/schedule", headers=admin, json=bad), 422)
    off = client.put("/api/v1/admin/cleanup/schedule", headers=admin, json={**body, "enabled": False})
    assert off.status_code == 200 and off.json()["data"]["next_run"] is None
