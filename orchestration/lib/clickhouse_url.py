"""Derivations from the one warehouse URL (pure, no Dagster import: the supervisor uses them too)."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from orchestration.warehouse.credentials import platform_credentials_for


def default_clickhouse_url() -> str:
    """The embedded warehouse of this stack when CLICKHOUSE_URL is not set."""
    return f"http://127.0.0.1:{os.environ.get('CLICKHOUSE_HTTP_PORT', '8123')}"


def dbt_env_for_clickhouse(url: str) -> dict[str, str]:
    """Environment for dbt-clickhouse's profiles.yml so dbt reaches the same warehouse as the resource."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    env = {
        "CLICKHOUSE_HOST": parts.hostname or "127.0.0.1",
        "CLICKHOUSE_HTTP_PORT": str(parts.port or (8443 if secure else 8123)),
        "CLICKHOUSE_SECURE": "true" if secure else "false",
        # dbt's file log at debug level holds every statement, and dbt-clickhouse writes the
        # password into dictionary sources: keep statements out of dbt.log
        "DBT_LOG_LEVEL_FILE": "info",
    }
    if parts.username:
        env["CLICKHOUSE_USER"] = unquote(parts.username)
    if parts.password:
        env["CLICKHOUSE_PASSWORD"] = unquote(parts.password)
    platform = platform_credentials_for(url)
    if platform is not None:  # the embedded warehouse: its user and password, read here in the worker
        env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"] = platform
    return env
