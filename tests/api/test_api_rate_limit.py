"""Rate limits on a separate server with low limits: headers everywhere, 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from api_helpers import ADMIN_PASSWORD, ApiServer, assert_error_shape, bearer, login


def test_limits_per_tier(start_api: Callable[..., ApiServer]) -> None:
    server = start_api(AETL_RATE_LIMIT_ANONYMOUS="4", AETL_RATE_LIMIT_DEFAULT="6", AETL_RATE_LIMIT_ADMIN="12")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        admin = login(client, "root_admin", ADMIN_PASSWORD)  # anonymous request 1
        seen = []
        for _ in range(5):
            response = client.get("/api/v1/roles")  # anonymous: 401s still count
            seen.append(response.status_code)
            assert response.headers["X-RateLimit-Limit"] == "4"
        assert seen[-1] == 429 and seen.count(429) == 2
        limited = client.get("/api/v1/roles")
        body = assert_error_shape(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert body["errors"][0]["code"] == "RATE_001"
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert int(limited.headers["X-RateLimit-Reset"]) > 0

        # health probes are never refused, and still carry the headers
        probe = client.get("/health")
        assert probe.status_code == 200 and "X-RateLimit-Limit" in probe.headers

        # an authenticated admin has its own, larger budget
        statuses = [client.get("/api/v1/roles", headers=bearer(admin["access_token"])) for _ in range(13)]
        assert statuses[0].headers["X-RateLimit-Limit"] == "12"
        assert [r.status_code for r in statuses].count(429) == 1
        assert statuses[-1].status_code == 429 and "Retry-After" in statuses[-1].headers
