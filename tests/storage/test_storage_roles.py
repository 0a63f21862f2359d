"""Route x role for /mvp/storage/*: every route, called by each role, is allowed or refused exactly as
the one permission table says (bodies that fail after the permission check: nothing is created)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from storage_helpers import Caller

from api.core.permissions import ROLE_NAMES, role_can
from tests.api.api_helpers import assert_error_shape

pytestmark = pytest.mark.timeout(900)  # the session stack may start inside these tests
MISSING = "missing_0000"
# (method, path template, resource action, body)
CASES: list[tuple[str, str, str, Any]] = [
    ("POST", "/api/v1/mvp/storage/mount", "create", {"storage_type": "local", "path": "relative"}),
    ("GET", "/api/v1/mvp/storage/mounts", "view", None),
    ("GET", "/api/v1/mvp/storage/mounts/{storage_id}", "view", None),
    ("DELETE", "/api/v1/mvp/storage/mounts/{storage_id}", "delete", None),
    (
        "POST",
        "/api/v1/mvp/storage/watch",
        "create",
        {"storage_id": MISSING, "import_config": {"target_table": "t"}},
    ),
    ("GET", "/api/v1/mvp/storage/watches", "view", None),
    ("GET", "/api/v1/mvp/storage/watches/{watch_id}", "view", None),
    ("POST", "/api/v1/mvp/storage/watches/{watch_id}/pause", "edit", None),
    ("POST", "/api/v1/mvp/storage/watches/{watch_id}/resume", "edit", None),
    ("DELETE", "/api/v1/mvp/storage/watches/{watch_id}", "delete", None),
    ("POST", "/api/v1/mvp/storage/import", "create", {"file_path": "/nowhere/x.csv", "target_table": "t"}),
    ("GET", "/api/v1/mvp/storage/imports/{import_id}", "view", None),
]


def _storage_routes(api: httpx.Client) -> frozenset[tuple[str, str]]:
    """(method, path) of every storage route, from the running API's own OpenAPI document."""
    document = api.get(str(api.base_url).removesuffix("/api/v1/") + "/openapi.json").json()
    return frozenset(
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "storage" in operation.get("tags", [])
    )


def _url(template: str) -> str:
    for name in ("storage_id", "watch_id", "import_id"):
        template = template.replace("{" + name + "}", MISSING)
    return template.removeprefix("/api/v1")


def test_every_storage_route_is_in_the_matrix(api: httpx.Client) -> None:
    assert {(m, p) for m, p, _, _ in CASES} == _storage_routes(api)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_storage_route_role_matrix(
    role: str, api: httpx.Client, make_caller: Callable[[str], Caller]
) -> None:
    caller = make_caller(role)
    for method, path, action, body in CASES:
        response = api.request(method, _url(path), headers=caller.headers, json=body)
        where = f"{role} {method} {path} -> {response.status_code} {response.text[:300]}"
        if role_can(role, "storage", action):
            assert response.status_code in (200, 404, 422), where
        else:
            error = assert_error_shape(response, 403, "PERMISSION_DENIED")
            assert error["error"]["details"] == {"resource": "storage", "action": action, "role": role}, where
