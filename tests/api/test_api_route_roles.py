"""Route x role: every route of the accounts/admin/projects/webhooks domains, called by each role,
is allowed or refused exactly as the one permission table says."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from api_helpers import ApiUser, assert_error_shape

from api.core.permissions import ROLE_NAMES, role_can

# the routers whose every route must be in the table below
COVERED_TAGS = {"preferences", "dashboards", "projects", "admin", "webhooks", "datamarts"}
MISSING = "missing_0000"


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # the route's template
    resource: str
    action: str
    params: dict[str, str] = field(default_factory=dict)
    body: Callable[[], Any] | None = None
    # the route asks Dagster, which is down for this server: an allowed call gets its 503
    dagster: bool = False

    def url(self) -> str:
        out = self.path
        for name, value in self.params.items():
            out = out.replace("{" + name + "}", value)
        return out


def _unique(prefix: str) -> dict[str, str]:
    return {"name": f"{prefix} {secrets.token_hex(4)}"}


WEBHOOK_BODY = {"url": "http://127.0.0.1:9/hook", "events": ["pipeline.completed"]}

CASES = [
    Case("GET", "/api/v1/preferences", "preferences", "view"),
    Case("PUT", "/api/v1/preferences", "preferences", "edit", body=lambda: {"theme": "dark"}),
    Case("GET", "/api/v1/preferences/widgets", "preferences", "view"),
    Case(
        "PUT",
        "/api/v1/preferences/widgets/{widget_id}",
        "preferences",
        "edit",
        {"widget_id": "recent_runs"},
        lambda: {"visible": True},
    ),
    Case("GET", "/api/v1/dashboards/layouts", "dashboards", "view"),
    Case("POST", "/api/v1/dashboards/layouts", "dashboards", "create", body=lambda: _unique("layout")),
    Case("GET", "/api/v1/dashboards/layouts/{layout_id}", "dashboards", "view", {"layout_id": MISSING}),
    Case(
        "PUT",
        "/api/v1/dashboards/layouts/{layout_id}",
        "dashboards",
        "edit",
        {"layout_id": MISSING},
        lambda: {},
    ),
    Case(
        "POST", "/api/v1/dashboards/layouts/{layout_id}/clone", "dashboards", "create", {"layout_id": MISSING}
    ),
    Case("DELETE", "/api/v1/dashboards/layouts/{layout_id}", "dashboards", "delete", {"layout_id": MISSING}),
    Case("GET", "/api/v1/projects", "projects", "view"),
    Case("POST", "/api/v1/projects", "projects", "create", body=lambda: _unique("project")),
    Case("GET", "/api/v1/projects/{project_id}", "projects", "view", {"project_id": MISSING}),
    Case("PUT", "/api/v1/projects/{project_id}", "projects", "edit", {"project_id": MISSING}, lambda: {}),
    Case("DELETE", "/api/v1/projects/{project_id}", "projects", "delete", {"project_id": MISSING}),
    Case("GET", "/api/v1/admin/activity-logs", "activity_logs", "view"),
    Case("GET", "/api/v1/admin/activity-logs/{user_id}", "activity_logs", "view", {"user_id": MISSING}),
    Case("GET", "/api/v1/admin/settings/dev-role-production", "settings", "view"),
    Case(
        "PUT", "/api/v1/admin/settings/dev-role-production", "settings", "edit", body=lambda: {"allow": False}
    ),
    Case("GET", "/api/v1/admin/deleted-entities", "maintenance", "view"),
    Case("GET", "/api/v1/admin/deletion-stats", "maintenance", "view"),
    Case(
        "POST",
        "/api/v1/admin/cleanup-old-deletions",
        "maintenance",
        "execute",
        body=lambda: {"older_than_days": 36500, "dry_run": True},
    ),
    Case(
        "POST",
        "/api/v1/admin/projects/{project_id}/restore",
        "maintenance",
        "execute",
        {"project_id": MISSING},
    ),
    Case(
        "DELETE",
        "/api/v1/admin/projects/{project_id}/permanent",
        "maintenance",
        "execute",
        {"project_id": MISSING},
    ),
    Case(
        "POST",
        "/api/v1/admin/pipelines/{pipeline_id}/restore",
        "maintenance",
        "execute",
        {"pipeline_id": MISSING},
    ),
    Case("GET", "/api/v1/admin/cleanup/stats", "maintenance", "view"),
    Case(
        "POST",
        "/api/v1/admin/cleanup/temp-files",
        "maintenance",
        "execute",
        body=lambda: {"retention_hours": 87600},
    ),
    Case("POST", "/api/v1/admin/cleanup/orphaned-data", "maintenance", "execute", dagster=True),
    Case(
        "POST",
        "/api/v1/admin/cleanup/execution-logs",
        "maintenance",
        "execute",
        body=lambda: {"retention_days": 36500},
        dagster=True,
    ),
    Case("GET", "/api/v1/admin/cleanup/schedule", "maintenance", "view"),
    Case(
        "PUT",
        "/api/v1/admin/cleanup/schedule",
        "maintenance",
        "execute",
        body=lambda: {"enabled": False, "schedule": "0 3 * * *"},
    ),
    Case(
        "GET",
        "/api/v1/admin/cleanup/estimate/{cleanup_type}",
        "maintenance",
        "view",
        {"cleanup_type": "activity-logs"},
    ),
    Case("GET", "/api/v1/admin/cleanup/history", "maintenance", "view"),
    # retention of 100 years: the call is real but removes nothing other tests rely on
    Case(
        "POST",
        "/api/v1/admin/cleanup/activity-logs",
        "maintenance",
        "execute",
        body=lambda: {"retention_days": 36500},
    ),
    Case("POST", "/api/v1/admin/cleanup/expired-sessions", "maintenance", "execute"),
    Case("POST", "/api/v1/admin/cleanup/database-vacuum", "maintenance", "execute"),
    Case(
        "POST", "/api/v1/admin/cleanup/all", "maintenance", "execute", body=lambda: {"retention_days": 36500}
    ),
    Case("GET", "/api/v1/webhooks", "webhooks", "view"),
    Case("POST", "/api/v1/webhooks", "webhooks", "create", body=lambda: {**WEBHOOK_BODY, **_unique("hook")}),
    Case("GET", "/api/v1/webhooks/{webhook_id}", "webhooks", "view", {"webhook_id": MISSING}),
    Case("PUT", "/api/v1/webhooks/{webhook_id}", "webhooks", "edit", {"webhook_id": MISSING}, lambda: {}),
    Case("DELETE", "/api/v1/webhooks/{webhook_id}", "webhooks", "delete", {"webhook_id": MISSING}),
    Case("POST", "/api/v1/webhooks/{webhook_id}/test", "webhooks", "edit", {"webhook_id": MISSING}),
    Case("GET", "/api/v1/webhooks/{webhook_id}/deliveries", "webhooks", "view", {"webhook_id": MISSING}),
    # datamarts: a refused query (422) or a missing datamart (404) once the role is allowed
    Case(
        "POST",
        "/api/v1/mvp/datamarts/create",
        "datamarts",
        "create",
        body=lambda: {"name": "never_built", "source_query": "DELETE FROM t WHERE 1"},
    ),
    Case("GET", "/api/v1/mvp/datamarts/{datamart_name}", "datamarts", "view", {"datamart_name": MISSING}),
    Case(
        "DELETE", "/api/v1/mvp/datamarts/{datamart_name}", "datamarts", "delete", {"datamart_name": MISSING}
    ),
    Case(
        "POST",
        "/api/v1/mvp/export/excel/datamart/{datamart_name}",
        "datamarts",
        "export",
        {"datamart_name": MISSING},
        lambda: {"include_charts": True},
    ),  # fmt: skip
    Case(
        "POST",
        "/api/v1/mvp/datamarts/{datamart_name}/refresh",
        "datamarts",
        "refresh",
        {"datamart_name": MISSING},
        lambda: {"concurrent_mode": True},
    ),  # fmt: skip
    Case(
        "POST",
        "/api/v1/mvp/datamarts/{datamart_name}/schedule",
        "datamarts",
        "edit",
        {"datamart_name": MISSING},
        lambda: {"cron_expression": "0 3 * * *", "enabled": True},
    ),  # fmt: skip
    Case(
        "GET",
        "/api/v1/mvp/datamarts/{datamart_name}/preview",
        "datamarts",
        "preview",
        {"datamart_name": MISSING},
    ),  # fmt: skip
]


@functools.cache
def _app_routes() -> frozenset[tuple[str, str]]:
    """(method, path) of every route whose tags are covered, from the app's own OpenAPI document."""
    from api.main import create_app

    out = set()
    for path, operations in create_app().openapi()["paths"].items():
        for method, operation in operations.items():
            if COVERED_TAGS & set(operation.get("tags", [])):
                out.add((method.upper(), path))
    return frozenset(out)


def test_every_route_of_these_domains_is_in_the_matrix() -> None:
    table = {(c.method, c.path) for c in CASES}
    routes = _app_routes()
    assert routes, "no routes found"
    assert routes <= table, f"routes without a role case: {sorted(routes - table)}"
    assert table <= routes, f"cases for routes that do not exist: {sorted(table - routes)}"


@pytest.mark.timeout(1200)  # ~40 real requests per role, some of them VACUUM ANALYZE
@pytest.mark.parametrize("role", ROLE_NAMES)
def test_route_role_matrix(role: str, client: httpx.Client, make_user: Callable[..., ApiUser]) -> None:
    user = make_user(role)
    assert {(c.method, c.path) for c in CASES} <= _app_routes()
    for case in CASES:
        body = case.body() if case.body else None
        response = client.request(case.method, case.url(), headers=user.headers, json=body)
        where = f"{role} {case.method} {case.path} -> {response.status_code} {response.text[:300]}"
        if role_can(role, case.resource, case.action):
            assert response.status_code not in (401, 403), where
            if case.dagster and response.status_code == 503:
                assert_error_shape(response, 503)
                continue
            assert response.status_code < 500, where
        else:
            assert_error_shape(response, 403, "PERMISSION_DENIED")
            assert response.json()["error"]["details"] == {
                "resource": case.resource,
                "action": case.action,
                "role": role,
            }, where
