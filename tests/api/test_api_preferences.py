"""Per-user preferences, widgets and dashboard layouts: defaults, validation, isolation."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from api_helpers import ApiUser, assert_error_shape


def test_new_user_defaults_and_updates(client: httpx.Client, make_user: Callable[..., ApiUser]) -> None:
    user = make_user("viewer")
    prefs = client.get("/api/v1/preferences", headers=user.headers)
    assert prefs.status_code == 200, prefs.text
    data = prefs.json()["data"]
    assert prefs.json()["status"] == "success"
    assert {k: data[k] for k in ("theme", "language", "timezone", "notifications_enabled")} == {
        "theme": "light",
        "language": "en",
        "timezone": "UTC",
        "notifications_enabled": True,
    }
    changed = client.put(
        "/api/v1/preferences", headers=user.headers, json={"theme": "dark", "timezone": "Europe/Berlin"}
    )
    assert changed.status_code == 200, changed.text
    again = client.get("/api/v1/preferences", headers=user.headers).json()["data"]
    assert again["theme"] == "dark" and again["timezone"] == "Europe/Berlin" and again["language"] == "en"
    assert again["updated_at"].endswith("Z")

    for bad in ({"theme": "neon"}, {"timezone": "Mars/Olympus"}, {"language": "english"}, {"colour": "red"}):
        assert_error_shape(client.put("/api/v1/preferences", headers=user.headers, json=bad), 422)

    widgets = client.get("/api/v1/preferences/widgets", headers=user.headers).json()["data"]
    assert {w["widget_id"] for w in widgets} >= {"pipeline_status", "recent_runs"}
    assert all(w["visible"] for w in widgets)
    hidden = client.put(
        "/api/v1/preferences/widgets/recent_runs",
        headers=user.headers,
        json={"visible": False, "size": {"w": 3, "h": 2}, "settings": {"limit": 5}},
    )
    assert hidden.status_code == 200, hidden.text
    assert hidden.json()["data"]["visible"] is False and hidden.json()["data"]["size"] == {"w": 3, "h": 2}
    listed = {
        w["widget_id"]: w
        for w in client.get("/api/v1/preferences/widgets", headers=user.headers).json()["data"]
    }
    assert listed["recent_runs"]["settings"] == {"limit": 5} and listed["pipeline_status"]["visible"] is True
    assert_error_shape(
        client.put(
            "/api/v1/preferences/widgets/no_such_widget", headers=user.headers, json={"visible": True}
        ),
        404,
        "RESOURCE_NOT_FOUND",
    )
    assert_error_shape(
        client.put(
            "/api/v1/preferences/widgets/recent_runs", headers=user.headers, json={"size": {"w": 99, "h": 1}}
        ),
        422,
    )
    big = {"blob": "x" * 20_000}
    assert_error_shape(
        client.put("/api/v1/preferences/widgets/recent_runs", headers=user.headers, json={"settings": big}),
        422,
    )

    # another user still has the defaults
    other = make_user("viewer")
    assert client.get("/api/v1/preferences", headers=other.headers).json()["data"]["theme"] == "light"


def test_layouts_default_create_update_clone_and_isolation(
    client: httpx.Client, make_user: Callable[..., ApiUser]
) -> None:
    owner = make_user("developer")
    layouts = client.get("/api/v1/dashboards/layouts", headers=owner.headers).json()["data"]
    assert len(layouts) == 1 and layouts[0]["is_default"] and layouts[0]["layout_config"]["widgets"]

    config = {"columns": 12, "widgets": [{"widget_id": "recent_runs", "x": 0, "y": 0, "w": 12, "h": 6}]}
    created = client.post(
        "/api/v1/dashboards/layouts",
        headers=owner.headers,
        json={"name": "Ops", "layout_config": config, "is_default": True},
    )
    assert created.status_code == 201, created.text
    layout = created.json()["data"]
    assert layout["is_default"] and layout["layout_config"]["widgets"][0]["w"] == 12
    listed = client.get("/api/v1/dashboards/layouts", headers=owner.headers).json()["data"]
    assert [item["is_default"] for item in listed].count(True) == 1
    assert_error_shape(
        client.post("/api/v1/dashboards/layouts", headers=owner.headers, json={"name": "Ops"}), 409
    )

    renamed = client.put(
        f"/api/v1/dashboards/layouts/{layout['id']}", headers=owner.headers, json={"name": "Operations"}
    )
    assert renamed.status_code == 200 and renamed.json()["data"]["name"] == "Operations"
    clone = client.post(f"/api/v1/dashboards/layouts/{layout['id']}/clone", headers=owner.headers)
    assert clone.status_code == 201, clone.text
    cloned = clone.json()["data"]
    assert cloned["id"] != layout["id"] and cloned["name"] == "Operations (copy)" and not cloned["is_default"]
    assert cloned["layout_config"] == renamed.json()["data"]["layout_config"]
    second = client.post(f"/api/v1/dashboards/layouts/{layout['id']}/clone", headers=owner.headers)
    assert second.json()["data"]["name"] == "Operations (copy 2)"

    # another user neither sees nor changes nor clones it
    stranger = make_user("developer")
    theirs = client.get("/api/v1/dashboards/layouts", headers=stranger.headers).json()["data"]
    assert layout["id"] not in {item["id"] for item in theirs}
    for call in (
        lambda: client.get(f"/api/v1/dashboards/layouts/{layout['id']}", headers=stranger.headers),
        lambda: client.put(
            f"/api/v1/dashboards/layouts/{layout['id']}", headers=stranger.headers, json={"name": "x"}
        ),
        lambda: client.post(f"/api/v1/dashboards/layouts/{layout['id']}/clone", headers=stranger.headers),
        lambda: client.delete(f"/api/v1/dashboards/layouts/{layout['id']}", headers=stranger.headers),
    ):
        assert_error_shape(call(), 404, "RESOURCE_NOT_FOUND")
    assert client.get(f"/api/v1/dashboards/layouts/{layout['id']}", headers=owner.headers).json()["data"][
        "name"
    ] == ("Operations")


def test_oversized_and_malformed_layouts_are_refused(
    client: httpx.Client, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("executive")
    one_mb = {"name": "huge", "layout_config": {"columns": 12, "notes": "x" * (1024 * 1024)}}
    huge = client.post("/api/v1/dashboards/layouts", headers=user.headers, json=one_mb)
    assert huge.status_code in (413, 422)
    assert_error_shape(huge, huge.status_code)
    many = {
        "name": "many",
        "layout_config": {"widgets": [{"widget_id": "w", "x": 0, "y": 0, "w": 1, "h": 1}] * 101},
    }
    assert_error_shape(client.post("/api/v1/dashboards/layouts", headers=user.headers, json=many), 422)
    bad_cell = {
        "name": "bad",
        "layout_config": {"widgets": [{"widget_id": "w", "x": -1, "y": 0, "w": 1, "h": 1}]},
    }
    assert_error_shape(client.post("/api/v1/dashboards/layouts", headers=user.headers, json=bad_cell), 422)
    deep: dict[str, object] = {}
    node = deep
    for _ in range(20):
        node["n"] = {}
        node = node["n"]  # type: ignore[assignment]
    assert_error_shape(
        client.post(
            "/api/v1/dashboards/layouts", headers=user.headers, json={"name": "deep", "layout_config": deep}
        ),
        422,
    )
    assert_error_shape(
        client.post("/api/v1/dashboards/layouts", headers=user.headers, json={"name": ""}), 422
    )
    names = [
        item["name"] for item in client.get("/api/v1/dashboards/layouts", headers=user.headers).json()["data"]
    ]
    assert names == ["Default"]
