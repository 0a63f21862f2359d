"""Every failure answers in the contract's error shape with the request's X-Request-ID."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import httpx
from api_helpers import ApiServer, assert_error_shape, bearer

LOGIN = "/api/v1/auth/login"


def test_malformed_json(client: httpx.Client) -> None:
    response = client.post(LOGIN, content=b'{"username": "a",', headers={"Content-Type": "application/json"})
    body = assert_error_shape(response, 422, "VALIDATION_ERROR")
    assert body["errors"][0]["code"] == "VAL_001"


def test_wrong_types_and_missing_fields(client: httpx.Client) -> None:
    response = client.post(LOGIN, json={"username": ["a"], "password": 5})
    body = assert_error_shape(response, 422, "VALIDATION_ERROR")
    assert {e["field"] for e in body["errors"]} >= {"username", "password"}
    assert_error_shape(client.post(LOGIN, json={}), 422)
    assert_error_shape(client.post(LOGIN, json=[1, 2]), 422)


def test_unknown_fields_are_refused(client: httpx.Client) -> None:
    response = client.post(LOGIN, json={"username": "a", "password": "b", "is_admin": True})
    body = assert_error_shape(response, 422)
    assert body["errors"][0]["field"] == "is_admin"


def test_megabyte_string_in_a_bounded_field(client: httpx.Client) -> None:
    huge = "x" * 1_000_000
    response = client.post(LOGIN, json={"username": huge, "password": "b"})
    body = assert_error_shape(response, 422)
    assert body["errors"][0]["field"] == "username"
    assert len(response.content) < 4000  # the value is not echoed back


def test_body_over_the_limit(client: httpx.Client, api_server: ApiServer) -> None:
    limit = int(api_server.env["AETL_MAX_BODY_BYTES"])
    payload = b'{"username": "' + b"x" * (limit + 10) + b'", "password": "b"}'
    response = client.post(LOGIN, content=payload, headers={"Content-Type": "application/json"})
    body = assert_error_shape(response, 413, "VALIDATION_ERROR")
    assert body["error"]["details"]["max_body_bytes"] == limit

    def chunks():  # no Content-Length: the server counts as it reads
        yield b'{"username": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'", "password": "b"}'

    chunked = client.post(LOGIN, content=chunks(), headers={"Content-Type": "application/json"})
    assert_error_shape(chunked, 413)


def test_lying_content_length_is_refused_not_hung(api_server: ApiServer) -> None:
    url = urlparse(api_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999\r\n\r\n{}"
        )
        head = sock.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head[:200]


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error_shape(client.get("/api/v1/does-not-exist"), 404, "RESOURCE_NOT_FOUND")
    assert_error_shape(client.get("/nothing/here"), 404, "RESOURCE_NOT_FOUND")
    assert_error_shape(client.delete("/api/v1/auth/login"), 405)


def test_request_id_is_generated_or_honoured(client: httpx.Client, admin_token: str) -> None:
    generated = client.get("/health")
    assert generated.headers["X-Request-ID"].startswith("req_")
    mine = client.get("/api/v1/users/me", headers={**bearer(admin_token), "X-Request-ID": "trace-abc-123456"})
    assert mine.headers["X-Request-ID"] == "trace-abc-123456"
    error = client.get("/api/v1/users/me", headers={"X-Request-ID": "client-req-0001"})
    assert error.json()["error"]["request_id"] == "client-req-0001"
    # junk (or an injection attempt) is replaced, never echoed
    junk = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 100})
    assert junk.headers["X-Request-ID"].startswith("req_")


def test_request_id_in_the_log_line(client: httpx.Client, api_server: ApiServer) -> None:
    response = client.get("/api/v1/nowhere")
    request_id = response.json()["error"]["request_id"]
    for _ in range(20):
        if request_id in api_server.log():
            break
        time.sleep(0.1)
    lines = [line for line in api_server.log().splitlines() if request_id in line]
    assert lines and "404" in lines[0]


def test_secrets_never_in_logs(client: httpx.Client, api_server: ApiServer) -> None:
    client.post(LOGIN, json={"username": "someone", "password": "VerySecretPw123"})
    client.post("/api/v1/auth/register", json={"email": "bad", "password": "VerySecretPw123"})
    assert "VerySecretPw123" not in api_server.log()
    assert "Traceback" not in api_server.log()
