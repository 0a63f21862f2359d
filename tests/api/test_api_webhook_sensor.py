"""The run-status sensors of orchestration/defs/webhooks.py on a real (ephemeral) Dagster instance:
a real `sleep_job` run, the sensor evaluated on its success event, a signed delivery to a local
receiver that answers 500 first, and the delivery log in the API's database.

(tests/test_webhooks_live.py proves the same through the whole stack: daemon, GraphQL launch.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import httpx
import pytest
from api_helpers import ApiServer, ApiUser
from dagster import DagsterInstance, build_run_status_sensor_context

from api.core.config import get_settings
from api.webhooks.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.webhook_receiver import webhook_receiver


@pytest.fixture()
def api_settings(api_server: ApiServer) -> Iterator[None]:
    """This process's settings pointed at the test API's database and keys (as a code server's are)."""
    keys = ("DATABASE_URL", "AETL_ENCRYPTION_KEY", "AETL_SECRET_KEY", "AETL_WEBHOOK_ALLOW_LOOPBACK")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: api_server.env[k] for k in keys})
    get_settings.cache_clear()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


@pytest.mark.timeout(600)
def test_sensor_delivers_signed_pipeline_completed_with_retry(
    client: httpx.Client, make_user: Callable[..., ApiUser], api_settings: None
) -> None:
    from orchestration.defs.maintenance import sleep_job
    from orchestration.defs.webhooks import defs

    sensor = defs.get_sensor_def("webhooks_pipeline_completed")
    dev = make_user("developer")
    with webhook_receiver(500) as receiver, DagsterInstance.ephemeral() as instance:
        hook = client.post(
            "/api/v1/webhooks",
            headers=dev.headers,
            json={"name": "sensor", "url": receiver.url, "events": ["pipeline.completed"]},
        ).json()["data"]
        result = sleep_job.execute_in_process(
            run_config={"ops": {"sleep_op": {"config": {"seconds": 1}}}},
            instance=instance,
            tags={"aetl/pipeline_id": "pipeline_sensor_test"},
        )
        assert result.success
        context = build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=result.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
        )
        sensor(context)  # type: ignore[operator]
        # evaluating the same event again (a re-run tick) sends nothing more
        sensor(context)  # type: ignore[operator]
        requests = receiver.wait_for(2, timeout=30)
    assert len(requests) == 2
    assert [r.headers["X-AETL-Attempt"] for r in requests] == ["1", "2"]
    for request in requests:
        assert verify(
            hook["secret"],
            int(request.headers[TIMESTAMP_HEADER]),
            request.body,
            request.headers[SIGNATURE_HEADER],
        )
        payload = json.loads(request.body)
        assert payload["event"] == "pipeline.completed"
        assert payload["data"]["job_name"] == "sleep_job"
        assert payload["data"]["pipeline_id"] == "pipeline_sensor_test"
        assert payload["data"]["run_id"] == result.run_id and payload["data"]["status"] == "success"
    log = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=dev.headers).json()["data"]
    assert log["total"] == 1
    assert [a["status_code"] for a in log["items"][0]["attempt_log"]] == [500, 200]


@pytest.mark.timeout(600)
def test_consecutive_failures_trigger_an_alert_and_the_next_success_resolves_it(
    client: httpx.Client, make_user: Callable[..., ApiUser], api_settings: None
) -> None:
    """Threshold 3 (the default): failures 1-2 say nothing, the 3rd triggers, a 4th does not trigger
    again, the success resolves with the same alert_id; evaluating a tick twice sends nothing more."""
    from orchestration.defs.maintenance import sleep_job
    from orchestration.defs.webhooks import defs

    failed_sensor = defs.get_sensor_def("webhooks_pipeline_failed")
    completed_sensor = defs.get_sensor_def("webhooks_pipeline_completed")
    dev = make_user("developer")
    pipeline_id = f"pipeline_alert_{os.getpid()}"
    with webhook_receiver() as receiver, DagsterInstance.ephemeral() as instance:
        hook = client.post(
            "/api/v1/webhooks",
            headers=dev.headers,
            json={"name": "alerts", "url": receiver.url, "events": ["alert.triggered", "alert.resolved"]},
        ).json()["data"]

        def run_and_sense(fail: bool) -> str:
            result = sleep_job.execute_in_process(
                run_config={"ops": {"sleep_op": {"config": {"seconds": 0, "fail": fail}}}},
                instance=instance,
                tags={"aetl/pipeline_id": pipeline_id},
                raise_on_error=False,
            )
            assert result.success is not fail
            sensor = failed_sensor if fail else completed_sensor
            event = result.get_run_failure_event() if fail else result.get_run_success_event()
            context = build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_event=event,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
            )
            sensor(context)  # type: ignore[operator]
            sensor(context)  # type: ignore[operator]
            return result.run_id

        failures = [run_and_sense(fail=True) for _ in range(2)]
        assert receiver.wait_for(1, timeout=2) == []
        failures.append(run_and_sense(fail=True))
        triggered = receiver.wait_for(1, timeout=30)
        assert len(triggered) == 1
        failures.append(run_and_sense(fail=True))  # the streak goes on: no second alert
        success = run_and_sense(fail=False)
        requests = receiver.wait_for(2, timeout=30)
    assert len(requests) == 2
    payloads = [json.loads(r.body) for r in requests]
    for request in requests:
        assert verify(
            hook["secret"],
            int(request.headers[TIMESTAMP_HEADER]),
            request.body,
            request.headers[SIGNATURE_HEADER],
        )
    assert [p["event"] for p in payloads] == ["alert.triggered", "alert.resolved"]
    fired, resolved = payloads[0]["data"], payloads[1]["data"]
    assert fired["alert_id"] == resolved["alert_id"] == f"{pipeline_id}:{failures[0]}"
    assert fired["consecutive_failures"] == 3 and fired["run_id"] == failures[2]
    assert fired["pipeline_id"] == pipeline_id and fired["rule"] == "consecutive_run_failures"
    assert resolved["consecutive_failures"] == 4 and resolved["resolved_by_run_id"] == success


def test_alert_rule_is_pure() -> None:
    from orchestration.defs.webhooks import alert_for

    assert alert_for("p", [("r2", "FAILURE"), ("r1", "FAILURE")], 3) is None
    fired = alert_for("p", [("r3", "FAILURE"), ("r2", "FAILURE"), ("r1", "FAILURE"), ("r0", "SUCCESS")], 3)
    assert fired is not None and fired[0] == "alert.triggered" and fired[1]["alert_id"] == "p:r1"
    assert (
        alert_for("p", [("r4", "FAILURE"), ("r3", "FAILURE"), ("r2", "FAILURE"), ("r1", "FAILURE")], 3)
        is None
    )
    resolved = alert_for("p", [("r5", "SUCCESS"), ("r4", "FAILURE"), ("r3", "FAILURE"), ("r2", "FAILURE")], 3)
    assert resolved is not None and resolved[0] == "alert.resolved" and resolved[1]["alert_id"] == "p:r2"
    assert alert_for("p", [("r5", "SUCCESS"), ("r4", "FAILURE"), ("r3", "SUCCESS")], 3) is None
    assert alert_for("p", [("r5", "SUCCESS")], 1) is None
