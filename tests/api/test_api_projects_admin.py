"""Projects (soft delete), the admin deletion routes, the audit trail and the dev-role approval."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from api_helpers import ApiServer, ApiUser, assert_error_shape, bearer, login


def _sql(server: ApiServer, statement: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
    engine = sa.create_engine(server.database_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def test_project_lifecycle_soft_delete_restore_purge(
    client: httpx.Client, admin_token: str, api_server: ApiServer, make_user: Callable[..., ApiUser]
) -> None:
    architect = make_user("architect")
    name = f"Sales {secrets.token_hex(3)}"
    created = client.post(
        "/api/v1/projects", headers=architect.headers, json={"name": name, "description": "d"}
    )
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["id"].startswith("project_") and project["owner_id"] == architect.id
    assert_error_shape(
        client.post("/api/v1/projects", headers=architect.headers, json={"name": name.upper()}), 409
    )
    assert client.get(f"/api/v1/projects/{project['id']}", headers=architect.headers).json()["name"] == name
    listed = client.get(
        "/api/v1/projects", headers=architect.headers, params={"skip": 0, "limit": 1000}
    ).json()
    assert {"items", "total", "limit", "offset"} <= set(listed) and project["id"] in {
        p["id"] for p in listed["items"]
    }
    updated = client.put(
        f"/api/v1/projects/{project['id']}", headers=architect.headers, json={"description": "new"}
    )
    assert updated.status_code == 200 and updated.json()["description"] == "new"

    assert client.delete(f"/api/v1/projects/{project['id']}", headers=architect.headers).status_code == 204
    assert_error_shape(client.get(f"/api/v1/projects/{project['id']}", headers=architect.headers), 404)
    deleted = client.get(
        "/api/v1/admin/deleted-entities", headers=bearer(admin_token), params={"entity_type": "projects"}
    )
    assert deleted.status_code == 200, deleted.text
    item = next(i for i in deleted.json()["items"] if i["entity_id"] == project["id"])
    assert item["entity_type"] == "project" and item["deleted_by"] == architect.id and item["can_restore"]
    stats = client.get("/api/v1/admin/deletion-stats", headers=bearer(admin_token)).json()
    assert stats["by_type"]["projects"] >= 1 and stats["total_deleted"] >= 1
    assert stats["disk_space_recoverable_bytes"] > 0 and stats["oldest_deletion"].endswith("Z")

    # the name is free again while the project is deleted; restoring would clash
    clash = client.post("/api/v1/projects", headers=architect.headers, json={"name": name})
    assert clash.status_code == 201
    assert_error_shape(
        client.post(f"/api/v1/admin/projects/{project['id']}/restore", headers=bearer(admin_token)), 409
    )
    client.delete(f"/api/v1/projects/{clash.json()['id']}", headers=architect.headers)
    restored = client.post(f"/api/v1/admin/projects/{project['id']}/restore", headers=bearer(admin_token))
    assert restored.status_code == 200, restored.text
    assert restored.json()["restored"] is True and restored.json()["project_id"] == project["id"]
    assert (
        client.get(f"/api/v1/projects/{project['id']}", headers=architect.headers).json()["description"]
        == "new"
    )
    assert_error_shape(
        client.post(f"/api/v1/admin/projects/{project['id']}/restore", headers=bearer(admin_token)), 404
    )

    purged = client.delete(f"/api/v1/admin/projects/{project['id']}/permanent", headers=bearer(admin_token))
    assert purged.status_code == 200 and purged.json()["permanently_deleted"] is True
    assert purged.json()["disk_space_freed_bytes"] > 0
    assert not _sql(api_server, "SELECT id FROM projects WHERE id = :i", i=project["id"])
    assert_error_shape(
        client.delete(f"/api/v1/admin/projects/{project['id']}/permanent", headers=bearer(admin_token)), 404
    )
    client.delete(f"/api/v1/admin/projects/{clash.json()['id']}/permanent", headers=bearer(admin_token))


def test_cleanup_old_deletions_purges_exactly_the_old_ones(
    client: httpx.Client, admin_token: str, api_server: ApiServer
) -> None:
    ids = []
    for _ in range(3):
        r = client.post(
            "/api/v1/projects", headers=bearer(admin_token), json={"name": f"old {secrets.token_hex(4)}"}
        )
        ids.append(r.json()["id"])
        client.delete(f"/api/v1/projects/{ids[-1]}", headers=bearer(admin_token))
    old, recent = ids[:2], ids[2]
    _sql(
        api_server,
        "UPDATE projects SET deleted_at = now() - interval '400 days' WHERE id = ANY(:ids)",
        ids=old,
    )

    body = {"older_than_days": 365, "entity_types": ["projects"], "dry_run": True}
    dry = client.post("/api/v1/admin/cleanup-old-deletions", headers=bearer(admin_token), json=body)
    assert dry.status_code == 200, dry.text
    # other tests may have left old deletions too; ours are at least counted and nothing is gone
    assert dry.json()["dry_run"] is True and dry.json()["breakdown"]["projects"] >= 2
    assert len(_sql(api_server, "SELECT id FROM projects WHERE id = ANY(:ids)", ids=ids)) == 3

    done = client.post(
        "/api/v1/admin/cleanup-old-deletions", headers=bearer(admin_token), json={**body, "dry_run": False}
    )
    assert done.status_code == 200 and done.json()["dry_run"] is False
    left = {row[0] for row in _sql(api_server, "SELECT id FROM projects WHERE id = ANY(:ids)", ids=ids)}
    assert left == {recent}
    for bad in (
        {"older_than_days": -1},
        {"older_than_days": 30, "entity_types": ["galaxies"]},
        {"older_than_days": "soon"},
        {"older_than_days": 30, "extra": 1},
    ):
        assert_error_shape(
            client.post("/api/v1/admin/cleanup-old-deletions", headers=bearer(admin_token), json=bad), 422
        )
    assert_error_shape(
        client.get(
            "/api/v1/admin/deleted-entities", headers=bearer(admin_token), params={"entity_type": "x"}
        ),
        422,
    )
    client.delete(f"/api/v1/admin/projects/{recent}/permanent", headers=bearer(admin_token))


def test_activity_logs_filter_page_and_mask_secrets(
    client: httpx.Client, admin_token: str, api_server: ApiServer, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("designer")
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    failed = client.post("/api/v1/auth/login", json={"username": user.username, "password": "WrongPass999"})
    assert failed.status_code == 401
    client.post("/api/v1/projects", headers=user.headers, json={"name": f"audit {secrets.token_hex(4)}"})
    _sql(
        api_server,
        "INSERT INTO activity_logs (user_id, action, details, status, created_at) "
        "VALUES (:u, 'test.secret', CAST(:d AS json), 'success', now())",
        u=user.id,
        d='{"password": "hunter22", "nested": {"api_key": "aetl_x"}, "fields": ["name"]}',
    )
    admin = bearer(admin_token)
    mine = client.get(f"/api/v1/admin/activity-logs/{user.id}", headers=admin, params={"start_date": since})
    assert mine.status_code == 200, mine.text
    page = mine.json()
    assert page["status"] == "success" and {"total", "skip", "limit"} <= set(page)
    actions = {e["action"] for e in page["data"]}
    assert {"auth.login_failed", "project.create", "test.secret"} <= actions
    assert all(e["user_id"] == user.id and e["username"] == user.username for e in page["data"])
    assert "hunter22" not in mine.text and "aetl_x" not in mine.text
    secret_entry = next(e for e in page["data"] if e["action"] == "test.secret")
    assert secret_entry["details"] == {
        "password": "********",
        "nested": {"api_key": "********"},
        "fields": ["name"],
    }

    failures = client.get(
        "/api/v1/admin/activity-logs", headers=admin, params={"user_id": user.id, "status": "failure"}
    ).json()
    assert [e["action"] for e in failures["data"]] == ["auth.login_failed"]
    by_resource = client.get(
        "/api/v1/admin/activity-logs", headers=admin, params={"user_id": user.id, "resource_type": "project"}
    ).json()
    assert {e["action"] for e in by_resource["data"]} == {"project.create"}
    prefix = client.get(
        "/api/v1/admin/activity-logs", headers=admin, params={"user_id": user.id, "action": "auth.*"}
    )
    prefixed = {e["action"] for e in prefix.json()["data"]}
    assert "auth.login_failed" in prefixed and all(a.startswith("auth.") for a in prefixed)
    paged = client.get(
        "/api/v1/admin/activity-logs", headers=admin, params={"user_id": user.id, "skip": 1, "limit": 1}
    ).json()
    assert len(paged["data"]) == 1 and paged["total"] >= 3 and paged["skip"] == 1
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    empty = client.get(
        "/api/v1/admin/activity-logs", headers=admin, params={"user_id": user.id, "start_date": future}
    )
    assert empty.json()["data"] == [] and empty.json()["total"] == 0

    for params in (
        {"limit": 0},
        {"limit": 5000},
        {"skip": -1},
        {"status": "maybe"},
        {"start_date": "yesterday"},
    ):
        assert_error_shape(client.get("/api/v1/admin/activity-logs", headers=admin, params=params), 422)
    assert_error_shape(
        client.get(
            "/api/v1/admin/activity-logs", headers=admin, params={"start_date": future, "end_date": since}
        ),
        400,
    )
    assert_error_shape(client.get("/api/v1/admin/activity-logs/user_missing", headers=admin), 404)


def test_dev_role_production_approval_expires_by_itself(
    client: httpx.Client, admin_token: str, api_server: ApiServer, start_api: Callable[..., ApiServer]
) -> None:
    admin = bearer(admin_token)
    assert_error_shape(
        client.put(
            "/api/v1/admin/settings/dev-role-production",
            headers=admin,
            json={"allow": True, "duration_hours": 0},
        ),
        422,
    )
    off = client.put("/api/v1/admin/settings/dev-role-production", headers=admin, json={"allow": False})
    assert off.status_code == 200 and off.json()["data"]["allowed"] is False

    name = f"dev_{secrets.token_hex(4)}"
    created = client.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": name,
            "email": f"{name}@example.com",
            "password": "Secret1234",
            "role": "developer",
        },
    )
    assert created.status_code == 201
    production = start_api(AETL_ENV="production")
    with httpx.Client(base_url=production.url, timeout=30) as prod:
        dev = login(prod, name, "Secret1234")["access_token"]
        refused = prod.get("/api/v1/projects", headers=bearer(dev))
        assert_error_shape(refused, 403, "PERMISSION_DENIED")
        assert refused.json()["error"]["details"]["reason"] == "dev_role_not_approved"

        on = prod.put(
            "/api/v1/admin/settings/dev-role-production",
            headers=admin,
            json={"allow": True, "duration_hours": 2},
        )
        assert on.status_code == 200, on.text
        data = on.json()["data"]
        assert data["allowed"] is True and data["environment"] == "production" and data["duration_hours"] == 2
        expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
        assert timedelta(hours=1, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=2)
        assert "Auto-expires in 2 hours" in on.json()["message"]
        assert prod.get("/api/v1/projects", headers=bearer(dev)).status_code == 200

        # the approval lapses by itself: nothing has to switch it off
        _sql(api_server, "UPDATE system_settings SET expires_at = now() - interval '1 second'")
        assert (
            prod.get("/api/v1/admin/settings/dev-role-production", headers=admin).json()["data"]["allowed"]
            is False
        )
        assert_error_shape(prod.get("/api/v1/projects", headers=bearer(dev)), 403)
    client.delete(f"/api/v1/users/{created.json()['data']['id']}", headers=admin)


def test_old_pipeline_deletions_are_purged_with_their_versions(
    client: httpx.Client, admin_token: str, api_server: ApiServer
) -> None:
    """Pipelines are a kind of the deletion registry: counted, purged by age (never deployed here, so
    Dagster, down for this server, is not involved)."""
    admin = bearer(admin_token)
    body = {
        "name": f"Purged {secrets.token_hex(3)}",
        "sources": [{"id": "orders", "type": "clickhouse", "table": "db.orders"}],
        "targets": [{"id": "out", "type": "clickhouse", "database": "db", "table": "out"}],
    }
    old, recent = (client.post("/api/v1/pipelines", headers=admin, json=body) for _ in range(2))
    assert old.status_code == recent.status_code == 201, old.text
    old_id, recent_id = old.json()["id"], recent.json()["id"]
    for pipeline_id in (old_id, recent_id):
        assert client.delete(f"/api/v1/pipelines/{pipeline_id}", headers=admin).status_code == 204
    _sql(api_server, "UPDATE pipelines SET deleted_at = now() - interval '400 days' WHERE id = :i", i=old_id)
    listed = client.get("/api/v1/admin/deleted-entities", headers=admin, params={"entity_type": "pipelines"})
    assert {old_id, recent_id} <= {i["entity_id"] for i in listed.json()["items"]}

    request = {"older_than_days": 365, "entity_types": ["pipelines"]}
    dry = client.post("/api/v1/admin/cleanup-old-deletions", headers=admin, json=request)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["breakdown"]["pipelines"] >= 1
    assert _sql(api_server, "SELECT id FROM pipelines WHERE id = :i", i=old_id)
    done = client.post(
        "/api/v1/admin/cleanup-old-deletions", headers=admin, json={**request, "dry_run": False}
    )
    assert done.status_code == 200 and done.json()["breakdown"]["pipelines"] >= 1
    assert not _sql(api_server, "SELECT id FROM pipelines WHERE id = :i", i=old_id)
    assert not _sql(api_server, "SELECT id FROM pipeline_versions WHERE pipeline_id = :i", i=old_id)
    assert _sql(api_server, "SELECT id FROM pipelines WHERE id = :i", i=recent_id)
    restored = client.post(f"/api/v1/admin/pipelines/{recent_id}/restore", headers=admin)
    assert restored.status_code == 200, restored.text
    assert client.get(f"/api/v1/pipelines/{recent_id}", headers=admin).status_code == 200
    assert_error_shape(client.post(f"/api/v1/admin/pipelines/{old_id}/restore", headers=admin), 404)
