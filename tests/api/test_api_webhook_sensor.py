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
