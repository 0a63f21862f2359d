"""Helpers shared by the API tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_PASSWORD = "AdminPass123"
PASSWORD = "Secret1234"


@dataclass
class ApiServer:
    url: str
    env: dict[str, str]
    database_url: str
    secret_key: str
    admin_username: str = "root_admin"
    admin_password: str = ADMIN_PASSWORD
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: httpx.Client, username: str, password: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password, **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


@dataclass
class ApiUser:
    id: str
    username: str
    email: str
    password: str
    role: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


def assert_error_shape(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The contract's error shape, with the response's X-Request-ID inside."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]
    assert body["errors"] and {"code", "field", "message"} <= set(body["errors"][0])
    assert {"code", "message", "details", "request_id"} <= set(body["error"])
    request_id = response.headers["X-Request-ID"]
    assert body["error"]["request_id"] == request_id
    if code:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return dict(body)


def run_db_setup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m api.db.setup`, the set-up step the supervisor runs, in `env`."""
    from api.core.config import REPO_ROOT

    return subprocess.run(
        [sys.executable, "-m", "api.db.setup"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
