"""The one way the product gets a ClickHouse client: "a ClickHouse at a URL".

The URL is CLICKHOUSE_URL, else the embedded warehouse of this stack at
``http://127.0.0.1:${CLICKHOUSE_HTTP_PORT:-8123}``, reached as the platform's own user with its
password (credentials.py) without callers passing it. Nothing outside orchestration/warehouse/pool.py
imports chDB.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from orchestration.warehouse.credentials import platform_credentials_for


def default_url() -> str:
    """CLICKHOUSE_URL, or the embedded warehouse on CLICKHOUSE_HTTP_PORT (8123)."""
    url = os.environ.get("CLICKHOUSE_URL")
    if url:
        return url
    return f"http://127.0.0.1:{os.environ.get('CLICKHOUSE_HTTP_PORT', '8123')}"


def get_client(url: str | None = None, **kw: Any) -> Client:
    """A clickhouse-connect client for ``url`` (default: :func:`default_url`).

    The URL may carry user, password, database (path) and settings (query string), e.g.
    ``https://user:pw@host:8443/analytics?connect_timeout=5``; keyword arguments win.
    """
    parts = urlsplit(url or default_url())
    options: dict[str, Any] = {
        "interface": parts.scheme or "http",
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or (8443 if parts.scheme == "https" else 8123),
    }
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    platform = platform_credentials_for(url or default_url())
    if platform is not None and "username" not in kw and "password" not in kw:
        options["username"], options["password"] = platform
    database = parts.path.strip("/")
    if database:
        options["database"] = database
    options.update(dict(parse_qsl(parts.query)))
    options.update(kw)
    return clickhouse_connect.get_client(**options)
