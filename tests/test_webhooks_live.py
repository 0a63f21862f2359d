"""Pipeline webhooks end to end: a run launched through Dagster's GraphQL (as the UI does) makes the
`aetl` location's run-status sensor deliver a signed `pipeline.completed`, retried after a 500."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from api.dagster_client import DagsterClient
from api.webhooks.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from orchestration.stack import Stack
from tests.webhook_receiver import Received, webhook_receiver

# the session stack may start inside this budget (slow on a loaded 2-core machine)
pytestmark = pytest.mark.timeout(1500)


def _for_run(requests: list[Received], run_id: str) -> list[Received]:
    return [r for r in requests if json.loads(r.body)["data"].get("run_id") == run_id]


def test_run_completion_is_delivered_signed_and_retried(stack: Stack) -> None:
    settings = stack.settings
    login = httpx.post(
        f"{stack.api_url}/api/v1/auth/login",
        json={"username": settings.admin_username, "password": settings.admin_password.get_secret_value()},
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    pipeline_id = f"pipeline_{uuid.uuid4().hex[:8]}"
    with webhook_receiver(500) as receiver, DagsterClient(settings.dagster_url) as dagster:
        created = httpx.post(
            f"{stack.api_url}/api/v1/webhooks",
            headers=headers,
            json={"name": f"live {pipeline_id}", "url": receiver.url, "events": ["pipeline.completed"]},
        )
        assert created.status_code == 201, created.text
        hook = created.json()["data"]
        try:
            started = time.monotonic()
            run_id = dagster.launch_run(
                "sleep_job",
                run_config={"ops": {"sleep_op": {"config": {"seconds": 2}}}},
                tags={"aetl/pipeline_id": pipeline_id, "aetl/triggered_by": "pytest"},
            )
            deadline = time.monotonic() + 240
            while len(_for_run(receiver.requests, run_id)) < 2 and time.monotonic() < deadline:
                receiver.wait_for(len(receiver.requests) + 1, timeout=2)
            mine = _for_run(receiver.requests, run_id)
            print(f"run {run_id}: launch -> delivered {time.monotonic() - started:.1f}s")
            assert len(mine) == 2, f"got {len(mine)} deliveries for {run_id}"
            for request in mine:
                timestamp = int(request.headers[TIMESTAMP_HEADER])
                assert verify(hook["secret"], timestamp, request.body, request.headers[SIGNATURE_HEADER])
                payload = json.loads(request.body)
                assert payload["event"] == "pipeline.completed"
                assert payload["data"]["job_name"] == "sleep_job"
                assert payload["data"]["pipeline_id"] == pipeline_id
                assert payload["data"]["status"] == "success"
                assert payload["data"]["duration_seconds"] >= 2
            assert [r.headers["X-AETL-Attempt"] for r in mine] == ["1", "2"]
            assert mine[0].headers["X-AETL-Delivery"] == mine[1].headers["X-AETL-Delivery"]

            log = httpx.get(f"{stack.api_url}/api/v1/webhooks/{hook['id']}/deliveries", headers=headers)
            [delivery] = [d for d in log.json()["data"]["items"] if d["payload"]["data"]["run_id"] == run_id]
            assert delivery["status"] == "success" and delivery["attempts"] == 2
            assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 200]
        finally:
            httpx.delete(f"{stack.api_url}/api/v1/webhooks/{hook['id']}", headers=headers)


def test_run_event_data_is_built_from_tags() -> None:
    from orchestration.defs.webhooks import run_event_data

    data = run_event_data(
        run_id="r1",
        job_name="sleep_job",
        tags={"aetl/pipeline_id": "p1", "dagster/code_location": "aetl"},
        status="success",
        start=10.0,
        end=12.5,
    )
    assert data["pipeline_id"] == "p1" and data["duration_seconds"] == 2.5 and data["dagster_run_id"] == "r1"
    assert (
        run_event_data(run_id="r", job_name="j", tags={}, status="started", start=1.0, end=None)[
            "pipeline_id"
        ]
        is None
    )
