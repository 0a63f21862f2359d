"""The /roles endpoints show the same table the permission checks enforce."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from api_helpers import ApiUser, bearer

from api.core.permissions import ROLES

EXPECTED_LEVELS = {
    "admin": 100,
    "developer": 90,
    "architect": 90,
    "designer": 50,
    "engineer": 50,
    "executor": 40,
    "analyst": 40,
    "executive": 30,
    "viewer": 10,
}


def test_roles_list_and_detail(client: httpx.Client, admin_token: str) -> None:
    roles = client.get("/api/v1/roles", headers=bearer(admin_token)).json()["data"]
    assert {r["name"]: r["level"] for r in roles} == EXPECTED_LEVELS
    assert [r["level"] for r in roles] == sorted((r["level"] for r in roles), reverse=True)
    detail = {
        name: client.get(f"/api/v1/roles/{name}", headers=bearer(admin_token)).json()["data"]
        for name in EXPECTED_LEVELS
    }
    assert detail["developer"]["permissions"] == detail["architect"]["permissions"]
    assert detail["designer"]["permissions"] == detail["engineer"]["permissions"]
    executor, analyst = detail["executor"]["permissions"], detail["analyst"]["permissions"]
    assert analyst["datamarts"]["preview"] and analyst["datamarts"]["export"]
    assert not executor["datamarts"]["preview"] and not executor["datamarts"]["export"]
    assert {k: v for k, v in analyst.items() if k != "datamarts"} == {
        k: v for k, v in executor.items() if k != "datamarts"
    }
    assert all(all(actions.values()) for actions in detail["admin"]["permissions"].values())
    assert client.get("/api/v1/roles/wizard", headers=bearer(admin_token)).status_code == 404


@pytest.mark.parametrize("role", list(ROLES))
def test_features_access_matches_enforcement(
    role: str, client: httpx.Client, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user(role)
    access = client.get("/api/v1/roles/features/access", headers=user.headers).json()["data"]
    assert access["role"] == role
    nav = client.get("/api/v1/roles/navigation/items", headers=user.headers).json()["data"]
    assert nav == access["navigation"]
    assert nav["users"] == access["features"]["users"]["view"]

    # what the table says is what the checks do
    users_list = client.get("/api/v1/users", headers=user.headers)
    assert (users_list.status_code == 200) == access["features"]["users"]["view"]
    perms = client.get(f"/api/v1/roles/{role}/permissions", headers=user.headers)
    assert (perms.status_code == 200) == access["features"]["roles"]["view"]
    if perms.status_code == 200:
        assert perms.json()["data"]["permissions"] == access["features"]
    else:
        assert perms.status_code == 403
