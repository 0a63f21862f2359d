"""Pipelines through the real stack: deploy into Dagster, run, runs from Dagster's storage, schedules,
delete, a broken document, live status over WebSocket."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from pipeline_helpers import Caller, wait_deployed, wait_for, wait_run_finished, warehouse_pipeline
from sqlalchemy import create_engine, text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api.dagster_client import DagsterClient, RunStatus
from orchestration.stack import Stack

pytestmark = pytest.mark.timeout(600)
LOCATION = "aetl_pipelines"


def create(api: httpx.Client, caller: Caller, body: dict[str, Any]) -> str:
    response = api.post("/pipelines", headers=caller.headers, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def deploy(api: httpx.Client, caller: Caller, pipeline_id: str) -> dict[str, Any]:
    response = api.post(f"/pipelines/{pipeline_id}/deploy", headers=caller.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pipeline_id"] == pipeline_id and body["status"] == "deploying"
    assert body["airflow_dag_id"] == body["dagster_job_name"] == f"pipeline_{pipeline_id}"
    return wait_deployed(api, caller, pipeline_id)


def run(
    api: httpx.Client, caller: Caller, pipeline_id: str, path: str = "run", **body: Any
) -> dict[str, Any]:
    response = api.post(f"/pipelines/{pipeline_id}/{path}", headers=caller.headers, json=body or None)
    assert response.status_code == 202, response.text
    data = response.json()
    return dict(data.get("data", data))


def test_deploy_run_and_runs_from_dagster(
    api: httpx.Client, engineer: Caller, dagster: DagsterClient, warehouse: Client, source_table: str
) -> None:
    database = source_table.split(".")[0]
    body = warehouse_pipeline(
        source_table,
        "orders_daily",
        schedule="0 2 * * *",
        triggers=[{"id": "hourly", "type": "cron", "cron": "0 * * * *", "enabled": False}],
    )
    pipeline_id = create(api, engineer, body)
    state = deploy(api, engineer, pipeline_id)
    assert state["deploy_status"] == "deployed", state
    assert state["status"] == "active" and state["deployed_version"] == 1

    # the asset with its upstream lineage, the job and both schedules, as Dagster has them
    contents = dagster.repository_contents(LOCATION)
    job = f"pipeline_{pipeline_id}"
    assert job in contents.jobs
    asset = f"pipelines/{pipeline_id}/{database}__orders_daily"
    assert contents.assets[asset] == [f"warehouse/{database}/orders"]
    assert f"warehouse/{database}/orders" in contents.assets  # the external upstream asset
    schedules = {s.name: s for s in contents.schedules if s.job_name == job}
    assert schedules[f"{job}__schedule"].status.value == "RUNNING"
    assert schedules[f"{job}__schedule"].cron_schedule == "0 2 * * *"
    assert schedules[f"{job}__hourly"].status.value == "STOPPED"

    started = run(api, engineer, pipeline_id, parameters={"day": "2026-01-01"})
    assert started["airflow_run_id"] == started["dagster_run_id"] == started["run_id"]
    assert started["dagster_job_name"] == job and started["version"] == 1
    assert wait_run_finished(dagster, started["run_id"]) == "SUCCESS"
    rows = warehouse.query(
        f"SELECT day, orders, amount FROM {database}.orders_daily ORDER BY day"
    ).result_rows
    assert [(str(d), n) for d, n, _ in rows] == [("2026-01-01", 4), ("2026-01-02", 3), ("2026-01-03", 3)]
    assert sum(a for _, _, a in rows) == pytest.approx(sum(i * 1.5 for i in range(10)))

    # runs / history / status equal Dagster's run storage
    dagster_run = dagster.get_run(started["run_id"])
    assert dagster_run.tags["aetl/triggered_by"] == engineer.user_id
    assert (
        dagster_run.tags["aetl/pipeline_id"] == pipeline_id
        and dagster_run.tags["aetl/pipeline_version"] == "1"
    )
    assert dagster_run.run_config["ops"][f"pipelines__{pipeline_id}__{database}__orders_daily"] == {
        "config": {"parameters": {"day": "2026-01-01"}}
    }
    runs = api.get(f"/pipelines/{pipeline_id}/runs", headers=engineer.headers).json()
    assert runs["total"] == 1 and runs["limit"] == 20 and runs["offset"] == 0
    item = runs["items"][0]
    assert (
        item["id"] == started["run_id"]
        and item["status"] == "success"
        and item["dagster_status"] == "SUCCESS"
    )
    assert item["rows_processed"] == 3
    assert item["metrics"]["loading_time_ms"] > 0 and item["metrics"]["extraction_time_ms"] is not None
    assert item["parameters"] == {"day": "2026-01-01"} and item["triggered_by"] == engineer.user_id
    assert dagster_run.started_at is not None and dagster_run.ended_at is not None
    assert item["duration_seconds"] == pytest.approx(
        (dagster_run.ended_at - dagster_run.started_at).total_seconds()
    )
    assert item["airflow_dag_id"] == job and item["airflow_run_id"] == started["run_id"]

    second = run(api, engineer, pipeline_id, path="execute")
    manual = api.post(f"/mvp/triggers/manual/{pipeline_id}", headers=engineer.headers)
    assert manual.status_code == 202 and manual.json()["status"] == "triggered"
    for run_id in (second["run_id"], manual.json()["run_id"]):
        assert wait_run_finished(dagster, run_id) == "SUCCESS"
    # replace load: the same rows again, never doubled
    assert int(warehouse.command(f"SELECT count() FROM {database}.orders_daily")) == 3

    in_dagster = dagster.list_runs(tags={"aetl/pipeline_id": pipeline_id}, limit=50).items
    history = api.get(
        f"/pipelines/{pipeline_id}/history", headers=engineer.headers, params={"limit": 2}
    ).json()
    assert history["status"] == "success" and history["data"]["total"] == len(in_dagster) == 3
    assert [r["run_id"] for r in history["data"]["items"]] == [r.run_id for r in in_dagster[:2]]
    older = api.get(f"/pipelines/{pipeline_id}/runs", headers=engineer.headers, params={"offset": 2}).json()
    assert [r["run_id"] for r in older["items"]] == [in_dagster[2].run_id]
    failed = api.get(f"/pipelines/{pipeline_id}/runs", headers=engineer.headers, params={"status": "failed"})
    assert failed.json()["total"] == 0

    status = api.get(f"/pipelines/{pipeline_id}/status", headers=engineer.headers).json()["data"]
    assert status["current_run"]["run_id"] == in_dagster[0].run_id and status["is_running"] is False
    assert {s["trigger_id"]: s["status"] for s in status["schedules"]} == {
        "schedule": "RUNNING",
        "hourly": "STOPPED",
    }
    listed = api.get("/pipelines", headers=engineer.headers, params={"limit": 200}).json()["items"]
    mine = next(p for p in listed if p["id"] == pipeline_id)
    assert mine["last_run"]["id"] == in_dagster[0].run_id and mine["last_run"]["rows_processed"] == 3


SLOW_STEP = "def transform(df):\n    import time\n    time.sleep(90)\n    return df\n"


def step_processes(step_id: str) -> list[int]:
    """Pids of running python-step processes of that step id (their work folder is in the command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if f"aetl_step_{step_id}_".encode() in command:
                found.append(int(entry.name))
    return found


def test_schedules_follow_the_api_and_delete_removes_everything(
    api: httpx.Client, engineer: Caller, dagster: DagsterClient, source_table: str
) -> None:
    body = warehouse_pipeline(source_table, "orders_sched", schedule="0 5 * * *")
    # a slow last step: the run launched before the delete is still running when the delete comes
    body["transformations"].append({"id": "slow", "type": "python", "code": SLOW_STEP})
    pipeline_id = create(api, engineer, body)
    assert deploy(api, engineer, pipeline_id)["deploy_status"] == "deployed"
    job = f"pipeline_{pipeline_id}"

    def schedule_states() -> dict[str, str]:
        contents = dagster.repository_contents(LOCATION)
        return {s.name: s.status.value for s in contents.schedules if s.job_name == job}

    assert schedule_states() == {f"{job}__schedule": "RUNNING"}
    # someone stops it in Dagster's UI: Dagster stores that state, which outranks the default status
    dagster.stop_schedule(f"{job}__schedule")
    paused = api.put(f"/pipelines/{pipeline_id}", headers=engineer.headers, json={"status": "paused"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    wait_for(lambda: schedule_states() == {f"{job}__schedule": "STOPPED"}, 120, what="schedule stopped")
    resumed = api.put(f"/pipelines/{pipeline_id}", headers=engineer.headers, json={"is_active": True})
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    # the API's word is the last one: the state stored by the UI was reset
    wait_for(lambda: schedule_states() == {f"{job}__schedule": "RUNNING"}, 120, what="schedule running")

    # a trigger on a deployed pipeline: new version, redeployed, its schedule appears stopped
    trigger = api.post(
        "/mvp/triggers/create",
        headers=engineer.headers,
        json={
            "name": "Night",
            "pipeline_id": pipeline_id,
            "config": {"cron_expression": "30 1 * * *"},
            "enabled": False,
        },
    )
    assert trigger.status_code == 201, trigger.text
    trigger_id = trigger.json()["trigger_id"]
    assert trigger.json()["status"] == "inactive" and trigger.json()["next_run"] is None
    wait_for(lambda: schedule_states().get(f"{job}__{trigger_id}") == "STOPPED", 120, what="trigger schedule")
    assert wait_deployed(api, engineer, pipeline_id)["deployed_version"] == 2

    running = run(api, engineer, pipeline_id)["run_id"]
    wait_for(lambda: dagster.get_run(running).status.value == "STARTED", 120, what="run started")
    # the delete lands while the python step's process runs: the cancel must take it down too
    wait_for(lambda: step_processes("slow"), 120, what="python step process")
    deleted = api.delete(f"/pipelines/{pipeline_id}", headers=engineer.headers)
    assert deleted.status_code == 204
    # its running run is stopped, not left to load into a table of a deleted pipeline
    assert wait_run_finished(dagster, running, timeout=60) == "CANCELED"
    wait_for(lambda: not step_processes("slow"), 15, what="python step process gone")
    wait_for(lambda: job not in dagster.repository_contents(LOCATION).jobs, 120, what="job gone")
    contents = dagster.repository_contents(LOCATION)
    assert not [a for a in contents.assets if a.startswith(f"pipelines/{pipeline_id}/")]
    assert not [s for s in contents.schedules if s.job_name == job]


def test_a_broken_document_leaves_the_others_deployable_and_running(
    api: httpx.Client, engineer: Caller, dagster: DagsterClient, stack: Stack, source_table: str
) -> None:
    good = create(api, engineer, warehouse_pipeline(source_table, "orders_good"))
    broken = create(api, engineer, warehouse_pipeline(source_table, "orders_broken"))
    # a stored version that no longer builds (e.g. written before a schema change); the API never writes one
    engine = create_engine(stack.settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE pipeline_versions SET document = CAST(:doc AS json) "
                "WHERE id = (SELECT active_version_id FROM pipelines WHERE id = :id)"
            ),
            {"doc": json.dumps({"name": "broken", "sources": [], "targets": [{"table": "x"}]}), "id": broken},
        )
    engine.dispose()
    failed = deploy(api, engineer, broken)
    assert failed["deploy_status"] == "failed" and failed["status"] == "failed"
    assert "sources" in failed["deploy_error"], failed
    assert deploy(api, engineer, good)["deploy_status"] == "deployed"
    location = next(loc for loc in dagster.code_locations() if loc.name == LOCATION)
    assert not location.load_failed
    started = run(api, engineer, good)
    assert wait_run_finished(dagster, started["run_id"]) == "SUCCESS"
    refused = api.post(f"/pipelines/{broken}/run", headers=engineer.headers)
    assert refused.status_code == 409 and refused.json()["error"]["details"]["deploy_status"] == "failed"
    # still failed after another pipeline's reload, with its reason
    detail = api.get(f"/pipelines/{broken}", headers=engineer.headers).json()
    assert detail["deploy_status"] == "failed" and "sources" in detail["deploy_error"]


def _ws_url(stack: Stack, path: str) -> str:
    return stack.api_url.replace("http://", "ws://") + path


def _read_until(
    ws: Any, done: Callable[[dict[str, Any]], bool], timeout: float = 180
) -> list[dict[str, Any]]:
    import time

    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        messages.append(message)
        if done(message):
            return messages
    raise AssertionError(f"not seen in {timeout}s; got {messages[-5:]}")


def test_websocket_streams_status_and_logs_and_resumes_from_a_cursor(
    api: httpx.Client,
    engineer: Caller,
    make_caller: Callable[[str], Caller],
    dagster: DagsterClient,
    stack: Stack,
    source_table: str,
) -> None:
    pipeline_id = create(api, engineer, warehouse_pipeline(source_table, "orders_live"))
    assert deploy(api, engineer, pipeline_id)["deploy_status"] == "deployed"
    viewer = make_caller("viewer")
    url = _ws_url(stack, f"/ws/pipeline/{pipeline_id}?token={viewer.token}")
    with connect(url, open_timeout=30) as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello["type"] == "subscribed" and hello["cursor"]
        started = run(api, engineer, pipeline_id)
        run_id = started["run_id"]
        messages = _read_until(ws, lambda m: m["type"] == "status" and m["status"] in ("SUCCESS", "FAILURE"))
    statuses = [m["status"] for m in messages if m["type"] == "status"]
    assert statuses[-1] == "SUCCESS" and "STARTED" in statuses
    assert statuses.index("STARTED") < statuses.index("SUCCESS") and len(statuses) == len(set(statuses))
    logs = [m for m in messages if m["type"] == "log"]
    assert {m["run_id"] for m in messages} == {run_id}
    assert any("rows written" in m["message"] for m in logs), [m["message"] for m in logs]
    assert messages[-1]["rows_processed"] == 3
    # Dagster's event log is the source: every event once, in order
    events = dagster.get_run_logs(run_id).events
    assert [m["event_type"] for m in logs] == [e.dagster_event_type or e.event_type for e in events][
        : len(logs)
    ]

    # reconnect from the middle: exactly the rest, nothing twice, nothing skipped
    middle = len(messages) // 2
    with connect(
        _ws_url(stack, f"/api/v1/websocket/pipeline-status?token={viewer.token}&pipeline_id={pipeline_id}"
                       f"&cursor={messages[middle - 1]['cursor']}"),
        open_timeout=30,
    ) as ws:  # fmt: skip
        assert json.loads(ws.recv(timeout=30))["type"] == "subscribed"
        rest = _read_until(ws, lambda m: m["type"] == "status" and m["status"] == "SUCCESS")
    strip = [{k: v for k, v in m.items() if k != "cursor"} for m in messages[middle:]]
    assert [{k: v for k, v in m.items() if k != "cursor"} for m in rest] == strip


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/ws/pipeline/{pid}?token=not-a-token", 4401),
        ("/ws/pipeline/{pid}", 4401),
        ("/ws/pipeline/pipe_missing?token={token}", 4404),
        ("/api/v1/websocket/pipeline-status?token={token}&cursor=%%%", 4400),
        ("/api/v1/websocket/pipeline-status?token=bad", 4401),
    ],
)
def test_websocket_refuses_with_a_clear_close_code(
    api: httpx.Client, engineer: Caller, stack: Stack, path: str, code: int
) -> None:
    pipeline_id = create(api, engineer, {**warehouse_pipeline("shop.orders", "t"), "name": "ws refusals"})
    url = _ws_url(stack, path.format(pid=pipeline_id, token=engineer.token))
    with connect(url, open_timeout=30) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def test_websocket_without_pipeline_id_follows_every_pipeline(
    api: httpx.Client, engineer: Caller, dagster: DagsterClient, stack: Stack, source_table: str
) -> None:
    pipeline_id = create(api, engineer, warehouse_pipeline(source_table, "orders_all"))
    assert deploy(api, engineer, pipeline_id)["deploy_status"] == "deployed"
    with connect(
        _ws_url(stack, f"/api/v1/websocket/pipeline-status?token={engineer.token}"), open_timeout=30
    ) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "subscribed"
        run_id = run(api, engineer, pipeline_id)["run_id"]
        messages = _read_until(ws, lambda m: m.get("run_id") == run_id and m.get("status") == "SUCCESS")
    assert any(m["type"] == "log" and m["run_id"] == run_id for m in messages)
    assert dagster.get_run(run_id).status == RunStatus.SUCCESS
