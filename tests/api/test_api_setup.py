"""`python -m api.db.setup` is idempotent and never overwrites the first admin."""

from __future__ import annotations

import httpx
from api_helpers import ADMIN_PASSWORD, ApiServer, login, run_db_setup


def test_setup_again_keeps_the_admin(api_server: ApiServer, client: httpx.Client) -> None:
    env = {**api_server.env, "AETL_ADMIN_PASSWORD": "Other1Password"}
    again = run_db_setup(env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "created first admin" not in again.stderr
    login(client, api_server.admin_username, ADMIN_PASSWORD)
    refused = client.post(
        "/api/v1/auth/login", json={"username": api_server.admin_username, "password": "Other1Password"}
    )
    assert refused.status_code == 401


def test_setup_reports_an_unreachable_database_in_one_line(api_server: ApiServer) -> None:
    env = {**api_server.env, "DATABASE_URL": "postgresql+psycopg://postgres:pw@127.0.0.1:1/aetl_nowhere"}
    failed = run_db_setup(env)
    assert failed.returncode == 1
    assert "setup failed" in failed.stderr and "Traceback" not in failed.stderr
    assert ":pw@" not in failed.stderr  # no credentials in the output
