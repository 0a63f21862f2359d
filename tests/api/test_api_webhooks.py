"""Webhooks: CRUD, refused targets, signed test deliveries with retries, the delivery log."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from api_helpers import ApiServer, ApiUser, assert_error_shape

from api.webhooks.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from tests.webhook_receiver import webhook_receiver


def test_webhook_crud_secret_shown_once_and_refused_targets(
    client: httpx.Client, api_server: ApiServer, make_user: Callable[..., ApiUser]
) -> None:
    dev = make_user("developer")
    body = {
        "name": "ops",
        "url": "http://127.0.0.1:9/hook",
        "events": ["pipeline.completed", "pipeline.failed"],
    }
    created = client.post("/api/v1/webhooks", headers=dev.headers, json=body)
    assert created.status_code == 201, created.text
    hook = created.json()["data"]
    secret = hook["secret"]
    assert secret.startswith("whsec_") and hook["events"] == ["pipeline.completed", "pipeline.failed"]
    got = client.get(f"/api/v1/webhooks/{hook['id']}", headers=dev.headers)
    assert got.status_code == 200 and "secret" not in got.json()["data"] and secret not in got.text
    assert secret not in client.get("/api/v1/webhooks", headers=dev.headers).text
    engine = sa.create_engine(api_server.database_url)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT secret_encrypted FROM webhooks WHERE id = :i"), {"i": hook["id"]}
        ).scalar()
    engine.dispose()
    assert stored and secret not in stored

    updated = client.put(f"/api/v1/webhooks/{hook['id']}", headers=dev.headers, json={"is_active": False})
    assert updated.status_code == 200 and updated.json()["data"]["is_active"] is False
    rotated = client.put(f"/api/v1/webhooks/{hook['id']}", headers=dev.headers, json={"rotate_secret": True})
    assert rotated.json()["data"]["secret"] not in (None, secret)

    for url in (
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://127.0.0.1/",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00::1]/hook",
        "http://user:pw@127.0.0.1/hook",
        "http://no-such-host.invalid/hook",
    ):
        bad = client.post("/api/v1/webhooks", headers=dev.headers, json={**body, "url": url})
        assert_error_shape(bad, 400, "VALIDATION_ERROR")
        assert bad.json()["errors"][0]["field"] == "url"
    for bad_body in (
        {**body, "events": []},
        {**body, "events": ["pipeline.exploded"]},
        {**body, "url": "x" * 3000},
    ):
        assert_error_shape(client.post("/api/v1/webhooks", headers=dev.headers, json=bad_body), 422)
    assert_error_shape(
        client.put(f"/api/v1/webhooks/{hook['id']}", headers=dev.headers, json={"url": "file:///tmp/x"}), 400
    )

    # another developer does not see it; the admin does
    other = make_user("developer")
    assert_error_shape(client.get(f"/api/v1/webhooks/{hook['id']}", headers=other.headers), 404)
    assert hook["id"] not in client.get("/api/v1/webhooks", headers=other.headers).text
    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=dev.headers).status_code == 200
    assert_error_shape(client.get(f"/api/v1/webhooks/{hook['id']}", headers=dev.headers), 404)


def test_test_delivery_is_signed_retried_and_logged(
    client: httpx.Client, make_user: Callable[..., ApiUser]
) -> None:
    dev = make_user("developer")
    with webhook_receiver(500, 503) as receiver:
        created = client.post(
            "/api/v1/webhooks",
            headers=dev.headers,
            json={"name": "retry", "url": receiver.url, "events": ["pipeline.completed"]},
        ).json()["data"]
        result = client.post(f"/api/v1/webhooks/{created['id']}/test", headers=dev.headers)
        assert result.status_code == 200, result.text
        delivery = result.json()["data"]
        requests = receiver.wait_for(3, timeout=10)
    assert (
        delivery["status"] == "success" and delivery["attempts"] == 3 and delivery["response_status"] == 200
    )
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 200]
    assert all(a["latency_ms"] >= 0 for a in delivery["attempt_log"])
    assert [r.headers["X-AETL-Attempt"] for r in requests] == ["1", "2", "3"]
    last = requests[-1]
    timestamp = int(last.headers[TIMESTAMP_HEADER])
    assert verify(created["secret"], timestamp, last.body, last.headers[SIGNATURE_HEADER])
    assert not verify("whsec_wrong", timestamp, last.body, last.headers[SIGNATURE_HEADER])
    # a replayed request with an old timestamp is refused by a verifying receiver
    assert not verify(
        created["secret"], timestamp - 3600, last.body, sign(created["secret"], timestamp - 3600, last.body)
    )
    payload = json.loads(last.body)
    assert payload["event"] == "webhook.test" and payload["timestamp"].endswith("Z")
    assert payload["data"]["webhook_id"] == created["id"]

    log = client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=dev.headers)
    assert log.status_code == 200
    page = log.json()["data"]
    assert page["total"] == 1 and page["items"][0]["id"] == delivery["id"]
    assert_error_shape(
        client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=dev.headers, params={"limit": 0}),
        422,
    )

    # a receiver that keeps failing: every attempt logged, then failed
    with webhook_receiver(500, 500, 500, 500, 500) as receiver:
        client.put(f"/api/v1/webhooks/{created['id']}", headers=dev.headers, json={"url": receiver.url})
        failed = client.post(f"/api/v1/webhooks/{created['id']}/test", headers=dev.headers).json()["data"]
    assert failed["status"] == "failed" and failed["attempts"] == 4 and failed["error"] == "HTTP 500"
    failures = client.get(
        f"/api/v1/webhooks/{created['id']}/deliveries", headers=dev.headers, params={"status": "failed"}
    ).json()["data"]
    assert [d["id"] for d in failures["items"]] == [failed["id"]]


def test_connector_created_is_delivered_signed_without_its_configuration(
    client: httpx.Client, admin_token: str
) -> None:
    admin = {"Authorization": f"Bearer {admin_token}"}
    name = f"csv_{uuid.uuid4().hex[:8]}"
    with webhook_receiver() as receiver:
        hook = client.post(
            "/api/v1/webhooks",
            headers=admin,
            json={"name": f"connectors {name}", "url": receiver.url, "events": ["connector.created"]},
        ).json()["data"]
        try:
            created = client.post(
                "/api/v1/connectors",
                headers=admin,
                json={"name": name, "type": "csv", "config": {"delimiter": ";"}},
            )
            assert created.status_code == 201, created.text
            connector_id = created.json()["id"]
            deadline = time.monotonic() + 30
            mine: list[Any] = []
            while not mine and time.monotonic() < deadline:
                receiver.wait_for(len(receiver.requests) + 1, timeout=1)
                mine = [
                    r for r in receiver.requests if json.loads(r.body)["data"]["connector_id"] == connector_id
                ]
            assert len(mine) == 1
            request = mine[0]
            assert verify(
                hook["secret"],
                int(request.headers[TIMESTAMP_HEADER]),
                request.body,
                request.headers[SIGNATURE_HEADER],
            )
            payload = json.loads(request.body)
            assert payload["event"] == "connector.created"
            assert payload["data"] | {"created_at": None} == {
                "connector_id": connector_id,
                "name": name,
                "type": "csv",
                "created_by": payload["data"]["created_by"],
                "created_at": None,
            }
            assert "delimiter" not in request.body.decode()
            log = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=admin).json()["data"]
            assert [d["event"] for d in log["items"]] == ["connector.created"]
        finally:
            client.delete(f"/api/v1/webhooks/{hook['id']}", headers=admin)
