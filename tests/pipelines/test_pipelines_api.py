"""Pipelines through the API: both specs' bodies, versions, compare/restore/activate, roles, bad input."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pipeline_helpers import Caller

AI_ETL_BODY: dict[str, Any] = {
    "project_id": "project_456",
    "name": "Orders by day",
    "description": "Manual pipeline creation",
    "sources": [{"id": "source_1", "type": "clickhouse", "config": {"database": "shop", "table": "orders"}}],
    "transformations": [
        {
            "id": "transform_1",
            "type": "sql",
            "code": "SELECT day, sum(amount) AS amount FROM source_1 GROUP BY day",
        }
    ],
    "targets": [
        {"id": "target_1", "type": "clickhouse", "config": {"table": "orders_daily", "mode": "replace"}}
    ],
    "schedule": "0 3 * * *",
}
AGGREGATOR_BODY: dict[str, Any] = {
    "name": "Orders by day",
    "description": "Manual pipeline creation",
    "source_config": {"type": "clickhouse", "database": "shop", "table": "orders"},
    "transformation_config": {"sql": "SELECT day, sum(amount) AS amount FROM source_1 GROUP BY day"},
    "destination_config": {"type": "clickhouse", "table": "orders_daily", "mode": "replace"},
    "schedule": "0 3 * * *",
}


def create(api: httpx.Client, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/pipelines", headers=caller.headers, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def active_version(api: httpx.Client, caller: Caller, pipeline_id: str) -> dict[str, Any]:
    response = api.get(f"/pipeline-versions/pipelines/{pipeline_id}/versions/active", headers=caller.headers)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["error"]["code"] == code, body
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    if field is not None:
        assert body["errors"][0]["field"] == field, body
    return dict(body)


def test_both_specs_create_bodies_make_the_same_document(api: httpx.Client, engineer: Caller) -> None:
    first = create(api, engineer, AI_ETL_BODY)
    second = create(api, engineer, AGGREGATOR_BODY)
    assert first["status"] == "draft" and first["version"] == 1 and first["project_id"] == "project_456"
    assert first["id"].startswith("pipe_") and first["created_at"].endswith("Z")
    one, two = active_version(api, engineer, first["id"]), active_version(api, engineer, second["id"])
    assert one["document"] == two["document"]
    assert one["content_hash"] == two["content_hash"]
    assert one["document"]["targets"][0]["table"] == "orders_daily"
    # the response speaks both specs: sources/... and source_config/...
    detail = api.get(f"/pipelines/{second['id']}", headers=engineer.headers).json()
    assert detail["sources"][0]["table"] == "orders" and detail["source_config"]["table"] == "orders"
    assert detail["destination_config"]["mode"] == "replace"
    assert detail["dagster_job_name"] == detail["airflow_dag_id"] == f"pipeline_{second['id']}"


def test_update_makes_a_version_and_the_same_update_makes_none(api: httpx.Client, engineer: Caller) -> None:
    pipeline = create(api, engineer, AI_ETL_BODY)
    url = f"/pipelines/{pipeline['id']}"
    changed = api.put(url, headers=engineer.headers, json={"name": "Renamed", "schedule": "0 4 * * *"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2 and changed.json()["version_created"] is True
    assert changed.json()["name"] == "Renamed" and changed.json()["schedule"] == "0 4 * * *"
    again = api.put(url, headers=engineer.headers, json={"name": "Renamed", "schedule": "0 4 * * *"})
    assert (
        again.status_code == 200 and again.json()["version"] == 2 and again.json()["version_created"] is False
    )
    versions = api.get(f"/pipeline-versions/pipelines/{pipeline['id']}/versions", headers=engineer.headers)
    assert [v["version_number"] for v in versions.json()["data"]] == [2, 1]
    # aggregator shape on update replaces the target
    agg = api.put(
        url, headers=engineer.headers, json={"destination_config": {"table": "other", "mode": "append"}}
    )
    assert agg.status_code == 200 and agg.json()["version"] == 3
    assert (
        agg.json()["targets"] == [{**agg.json()["targets"][0], "table": "other", "mode": "append"}]
        and agg.json()["targets"][0]["id"] == "target_1"
    )


def test_compare_restore_activate(api: httpx.Client, engineer: Caller) -> None:
    pipeline = create(api, engineer, AI_ETL_BODY)
    v1 = active_version(api, engineer, pipeline["id"])
    api.put(
        f"/pipelines/{pipeline['id']}",
        headers=engineer.headers,
        json={"schedule": "*/5 * * * *", "description": None, "parameters": {"day": "2026-01-01"}},
    )
    v2 = active_version(api, engineer, pipeline["id"])
    assert v2["version_number"] == 2

    compared = api.get(f"/pipeline-versions/versions/{v1['id']}/compare/{v2['id']}", headers=engineer.headers)
    assert compared.status_code == 200, compared.text
    data = compared.json()["data"]
    changes = {c["path"]: c for c in data["changes"]}
    assert changes["schedule"] == {
        "path": "schedule",
        "change": "changed",
        "old": "0 3 * * *",
        "new": "*/5 * * * *",
    }
    # the canonical document keeps every field: a dropped description is a change to null
    assert changes["description"] == {
        "path": "description",
        "change": "changed",
        "old": "Manual pipeline creation",
        "new": None,
    }
    assert changes["parameters.day"] == {
        "path": "parameters.day",
        "change": "added",
        "old": None,
        "new": "2026-01-01",
    }
    assert data["summary"] == {"added": 1, "removed": 0, "changed": 2} and data["identical"] is False

    restored = api.post(f"/pipeline-versions/versions/{v1['id']}/restore", headers=engineer.headers)
    assert restored.status_code == 200, restored.text
    v3 = restored.json()["data"]
    assert v3["version_number"] == 3 and v3["is_active"] and v3["content_hash"] == v1["content_hash"]
    assert v3["document"] == v1["document"]

    activated = api.post(f"/pipeline-versions/versions/{v2['id']}/activate", headers=engineer.headers)
    assert activated.status_code == 200 and activated.json()["data"]["is_active"] is True
    assert active_version(api, engineer, pipeline["id"])["id"] == v2["id"]
    detail = api.get(f"/pipelines/{pipeline['id']}", headers=engineer.headers).json()
    assert detail["version"] == 2 and detail["latest_version"] == 3 and detail["schedule"] == "*/5 * * * *"

    summary = api.get(
        f"/pipeline-versions/pipelines/{pipeline['id']}/versions/summary", headers=engineer.headers
    )
    body = summary.json()["data"]
    assert body["total_versions"] == 3 and body["active_version"]["version_number"] == 2
    assert body["latest_version"]["version_number"] == 3 and body["deployed_version"] is None

    named = api.post(
        f"/pipeline-versions/pipelines/{pipeline['id']}/versions",
        headers=engineer.headers,
        json={"version_name": "before the rewrite", "change_description": "checkpoint"},
    )
    assert named.status_code == 201, named.text
    assert (
        named.json()["data"]["version_number"] == 4
        and named.json()["data"]["version_name"] == "before the rewrite"
    )

    other = create(api, engineer, AGGREGATOR_BODY)
    across = api.get(
        f"/pipeline-versions/versions/{v1['id']}/compare/{active_version(api, engineer, other['id'])['id']}",
        headers=engineer.headers,
    )
    assert_error(across, 422, "VALIDATION_ERROR")


def test_list_pages_with_both_specs_parameters(api: httpx.Client, engineer: Caller) -> None:
    project = f"paging_{secrets.token_hex(4)}"
    ids = [create(api, engineer, {**AI_ETL_BODY, "project_id": project})["id"] for _ in range(3)]
    page = api.get("/pipelines", headers=engineer.headers, params={"project_id": project, "limit": 2})
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 3 and body["limit"] == 2 and body["offset"] == 0 and len(body["items"]) == 2
    rest = api.get("/pipelines", headers=engineer.headers, params={"project_id": project, "skip": 2})
    assert rest.json()["offset"] == 2 and len(rest.json()["items"]) == 1
    seen = [i["id"] for i in body["items"]] + [i["id"] for i in rest.json()["items"]]
    assert sorted(seen) == sorted(ids)
    assert body["items"][0]["status"] == "draft" and body["items"][0]["last_run"] is None
    drafts = api.get(
        "/pipelines", headers=engineer.headers, params={"project_id": project, "is_active": "true"}
    )
    assert drafts.json()["total"] == 0


def test_cached_list_answers_still_show_writes_and_logouts_at_once(
    api: httpx.Client, admin: Caller, make_caller: Callable[[str], Caller]
) -> None:
    # GET /pipelines is answered from the response cache for a moment (api/core/response_cache.py);
    # a write or a logout in between must show on the very next request
    caller = make_caller("engineer")
    project = f"cache_{secrets.token_hex(4)}"
    params = {"project_id": project}

    def hits() -> float:
        response = api.get("/health/metrics", headers=admin.headers)
        assert response.status_code == 200, response.text
        text = response.text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("aetl_http_response_cache_hits_total{")
        )

    # back-to-back reads are served from the cache (an answer computed while the log-in's request was
    # still finishing is not kept: the end of every write drops what was computed meanwhile)
    before = hits()
    for _ in range(5):
        assert api.get("/pipelines", headers=caller.headers, params=params).json()["total"] == 0
        if hits() > before:
            break
    assert hits() > before, "no read of the same URL by the same caller came from the cache"
    created = create(api, caller, {**AI_ETL_BODY, "project_id": project})
    listed = api.get("/pipelines", headers=caller.headers, params=params).json()
    assert [i["id"] for i in listed["items"]] == [created["id"]]
    assert api.get("/pipelines", headers=caller.headers, params=params).json() == listed
    assert api.post("/auth/logout", headers=caller.headers).status_code == 204
    assert api.get("/pipelines", headers=caller.headers, params=params).status_code == 401


def test_delete_is_soft_and_hides_the_pipeline(api: httpx.Client, engineer: Caller) -> None:
    pipeline = create(api, engineer, AI_ETL_BODY)
    deleted = api.delete(f"/pipelines/{pipeline['id']}", headers=engineer.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(api.get(f"/pipelines/{pipeline['id']}", headers=engineer.headers), 404, "RESOURCE_NOT_FOUND")
    assert_error(
        api.delete(f"/pipelines/{pipeline['id']}", headers=engineer.headers), 404, "RESOURCE_NOT_FOUND"
    )


def test_run_of_a_pipeline_never_deployed_is_a_conflict(api: httpx.Client, engineer: Caller) -> None:
    pipeline = create(api, engineer, AI_ETL_BODY)
    for path in ("run", "execute"):
        assert_error(
            api.post(f"/pipelines/{pipeline['id']}/{path}", headers=engineer.headers),
            409,
            "DUPLICATE_RESOURCE",
        )
    assert_error(
        api.post(f"/mvp/triggers/manual/{pipeline['id']}", headers=engineer.headers),
        409,
        "DUPLICATE_RESOURCE",
    )


# -- roles -----------------------------------------------------------------------------------------

ROLES = (
    "admin",
    "developer",
    "architect",
    "designer",
    "engineer",
    "executor",
    "analyst",
    "executive",
    "viewer",
)
AUTHORS = {"admin", "developer", "architect", "designer", "engineer"}
RUNNERS = AUTHORS | {"executor", "analyst"}
MISSING = "pipe_does_not_exist"

# (method, path, body, roles allowed); allowed callers get 404 for the missing pipeline, others 403
ROUTES: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("GET", f"/pipelines/{MISSING}", None, set(ROLES)),
    ("PUT", f"/pipelines/{MISSING}", {"name": "x"}, AUTHORS),
    ("DELETE", f"/pipelines/{MISSING}", None, AUTHORS),
    ("POST", f"/pipelines/{MISSING}/deploy", None, AUTHORS),
    ("POST", f"/pipelines/{MISSING}/run", None, RUNNERS),
    ("POST", f"/pipelines/{MISSING}/execute", None, RUNNERS),
    ("GET", f"/pipelines/{MISSING}/runs", None, set(ROLES)),
    ("GET", f"/pipelines/{MISSING}/history", None, set(ROLES)),
    ("GET", f"/pipelines/{MISSING}/status", None, set(ROLES)),
    ("POST", f"/pipelines/{MISSING}/runs/some_run/terminate", None, RUNNERS),
    (
        "POST",
        "/mvp/triggers/create",
        {"name": "t", "pipeline_id": MISSING, "config": {"cron_expression": "0 2 * * *"}},
        AUTHORS,
    ),
    ("POST", f"/mvp/triggers/manual/{MISSING}", None, RUNNERS),
    ("GET", f"/pipeline-versions/pipelines/{MISSING}/versions", None, set(ROLES)),
    ("GET", f"/pipeline-versions/pipelines/{MISSING}/versions/summary", None, set(ROLES)),
    ("GET", f"/pipeline-versions/pipelines/{MISSING}/versions/active", None, set(ROLES)),
    ("POST", f"/pipeline-versions/pipelines/{MISSING}/versions", {"version_name": "x"}, AUTHORS),
    ("POST", "/pipeline-versions/versions/pver_missing/activate", None, AUTHORS),
    ("POST", "/pipeline-versions/versions/pver_missing/restore", None, AUTHORS),
    ("GET", "/pipeline-versions/versions/pver_missing/compare/pver_other", None, set(ROLES)),
]


@pytest.mark.parametrize("role", ROLES)
def test_every_route_per_role(api: httpx.Client, make_caller: Callable[[str], Caller], role: str) -> None:
    caller = make_caller(role)
    for method, path, body, allowed in ROUTES:
        response = api.request(method, path, headers=caller.headers, json=body)
        if role in allowed:
            assert_error(response, 404, "RESOURCE_NOT_FOUND")
        else:
            assert_error(response, 403, "PERMISSION_DENIED")
    listed = api.get("/pipelines", headers=caller.headers)
    assert listed.status_code == 200
    created = api.post("/pipelines", headers=caller.headers, json=AI_ETL_BODY)
    if role in AUTHORS:
        assert created.status_code == 201, created.text
    else:
        assert_error(created, 403, "PERMISSION_DENIED")


def test_no_token_is_401(api: httpx.Client) -> None:
    assert_error(api.get("/pipelines"), 401, "AUTH_FAILED")
    assert_error(api.post("/pipelines", json=AI_ETL_BODY), 401, "AUTH_FAILED")


# -- bad input -------------------------------------------------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    return {**AI_ETL_BODY, **changes}


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown connector",
        _with(sources=[{"id": "s", "connector_id": "conn_missing", "table": "t"}]),
        "sources.0.connector_id",
    ),
    (
        "unknown connector, aggregator",
        {**AGGREGATOR_BODY, "source_config": {"connector_id": "conn_x", "table": "t"}},
        "source_config.connector_id",
    ),
    ("bad cron", _with(schedule="every day at 2"), "schedule"),
    ("bad timezone", _with(schedule_timezone="Mars/Olympus"), "schedule_timezone"),
    ("SQL in the name", _with(name="x'; DROP TABLE pipelines; --"), "name"),
    ("SQL in a table name", _with(targets=[{"table": "t; DROP TABLE users"}]), "targets.0.table"),
    ("platform table as target", _with(targets=[{"table": "calendar_days"}]), "targets.0"),
    ("system database as target", _with(targets=[{"database": "system", "table": "t"}]), "targets.0"),
    ("1 MB description", _with(description="x" * 1_000_000), "description"),
    ("sources of the wrong type", _with(sources="orders"), "sources"),
    ("schedule of the wrong type", _with(schedule=5), "schedule"),
    ("no target", _with(targets=[]), "targets"),
    ("unknown field", _with(colour="blue"), "colour"),
    (
        "credentials in a source",
        _with(sources=[{"type": "clickhouse", "table": "t", "config": {"password": "x"}}]),
        "sources.0",
    ),
    ("both shapes", {**AI_ETL_BODY, "source_config": {"type": "clickhouse", "table": "t"}}, "source_config"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
def test_bad_create_bodies_are_422_naming_the_field_and_write_nothing(
    api: httpx.Client, admin: Caller, engineer: Caller, case: str, body: dict[str, Any], field: str
) -> None:
    before = api.get("/pipelines", headers=admin.headers, params={"limit": 1}).json()["total"]
    response = api.post("/pipelines", headers=engineer.headers, json=body)
    error = assert_error(response, 422, "VALIDATION_ERROR", field)
    assert "Traceback" not in response.text and len(response.text) < 5000, case
    assert error["errors"][0]["code"] == "VAL_001"
    assert api.get("/pipelines", headers=admin.headers, params={"limit": 1}).json()["total"] == before


def test_bad_update_trigger_and_paging_input(api: httpx.Client, engineer: Caller) -> None:
    pipeline = create(api, engineer, AI_ETL_BODY)
    url = f"/pipelines/{pipeline['id']}"
    assert_error(
        api.put(url, headers=engineer.headers, json={"schedule": "61 * * * *"}),
        422,
        "VALIDATION_ERROR",
        "schedule",
    )
    assert_error(
        api.put(url, headers=engineer.headers, json={"status": "running"}), 422, "VALIDATION_ERROR", "status"
    )
    assert_error(
        api.put(url, headers=engineer.headers, json={"status": "active"}), 409, "DUPLICATE_RESOURCE", "status"
    )
    trigger = {
        "name": "t",
        "pipeline_id": pipeline["id"],
        "trigger_type": "cron",
        "config": {"cron_expression": "bad"},
    }
    refused = api.post("/mvp/triggers/create", headers=engineer.headers, json=trigger)
    assert_error(refused, 422, "VALIDATION_ERROR", "config.cron_expression")
    assert active_version(api, engineer, pipeline["id"])["version_number"] == 1  # nothing written
    for params in ({"limit": 0}, {"limit": "abc"}, {"offset": -1}, {"offset": 10**30}, {"skip": 10**19},
                   {"status": "exploded"}):  # fmt: skip
        assert_error(api.get("/pipelines", headers=engineer.headers, params=params), 422, "VALIDATION_ERROR")
    assert_error(
        api.get(f"{url}/runs", headers=engineer.headers, params={"limit": 10**20}), 422, "VALIDATION_ERROR"
    )
    assert_error(
        api.post(f"{url}/run", headers=engineer.headers, json={"parameters": {"p": {"nested": 1}}}),
        422,
        "VALIDATION_ERROR",
    )


def test_create_trigger_adds_a_version_with_the_schedule(api: httpx.Client, engineer: Caller) -> None:
    pipeline = create(api, engineer, AI_ETL_BODY)
    response = api.post(
        "/mvp/triggers/create",
        headers=engineer.headers,
        json={"name": "Daily Sales Trigger", "pipeline_id": pipeline["id"], "trigger_type": "cron",
              "config": {"cron_expression": "0 2 * * *"}, "enabled": True},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["trigger_id"].startswith("trigger_") and body["status"] == "active" and body["version"] == 2
    assert body["next_run"].endswith("T02:00:00.000Z")
    triggers = api.get(f"/pipelines/{pipeline['id']}", headers=engineer.headers).json()["triggers"]
    assert [(t["id"], t["cron"], t["enabled"]) for t in triggers] == [(body["trigger_id"], "0 2 * * *", True)]
