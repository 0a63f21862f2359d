"""The OpenAPI document is complete: every operation documents a typed success response."""

from __future__ import annotations

import httpx


def test_every_operation_has_a_response_schema(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    missing = []
    count = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            count += 1
            success = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            assert success, f"{method.upper()} {path} documents no success response"
            for code, response in success.items():
                if code == "204":
                    continue
                content = response.get("content", {})
                if not any("schema" in media and media["schema"] for media in content.values()):
                    missing.append(f"{method.upper()} {path} {code}")
            if path.startswith("/api/v1") and "422" in op["responses"]:
                ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), f"{method.upper()} {path} documents another 422 shape"
    assert count >= 30
    assert not missing, missing
    for name in ("/api/v1/auth/login", "/api/v1/users/me", "/api/v1/roles/{role_name}", "/health/detailed"):
        assert name in spec["paths"]
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200
