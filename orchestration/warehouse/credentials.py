"""The platform's own warehouse user and its password (no chDB import: every process uses this).

The password is ``CLICKHOUSE_PASSWORD`` if set (an explicitly empty value means "no password",
allowed on loopback only), else the file ``$AETL_DATA_DIR/secrets/clickhouse_password``, generated
at set-up with mode 0600. Internal clients find it here, so callers never pass it around and it
never appears in a URL, an argv, a log line or Dagster run config.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD_FILE = Path("secrets") / "clickhouse_password"
# under the data folder: named pipes through which run workers stream rows to the local warehouse
PIPE_FOLDER = "pipes"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def data_root() -> Path:
    return Path(os.environ.get("AETL_DATA_DIR") or REPO_ROOT / ".data").resolve()


def password_file(data_dir: Path | None = None) -> Path:
    return (data_dir or data_root()) / PASSWORD_FILE


def platform_user() -> str:
    return os.environ.get("CLICKHOUSE_USER") or "default"


def platform_password(data_dir: Path | None = None) -> str | None:
    """CLICKHOUSE_PASSWORD, else the generated file; None when neither exists yet."""
    from_env = os.environ.get("CLICKHOUSE_PASSWORD")
    if from_env is not None:
        return from_env
    try:
        return password_file(data_dir).read_text().strip()
    except FileNotFoundError:
        return None


def ensure_platform_password(data_dir: Path | None = None) -> str:
    """The platform password, generating the file (0600, folder 0700) on first use."""
    existing = platform_password(data_dir)
    if existing is not None:
        return existing
    path = password_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    generated = secrets.token_urlsafe(32)
    try:
        # O_EXCL: two processes starting at once agree on the first one's password
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(generated + "\n")
    return generated


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return True
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def platform_credentials_for(url: str) -> tuple[str, str] | None:
    """(user, password) to send to ``url`` when it is this platform's embedded warehouse.

    Only a loopback URL without credentials of its own, and only when no real ClickHouse is
    configured (CLICKHOUSE_URL): the platform's password must never be sent to another server.
    """
    if os.environ.get("CLICKHOUSE_URL"):
        return None
    parts = urlsplit(url)
    if parts.username or parts.password or not is_loopback_host(parts.hostname):
        return None
    password = platform_password()
    if password is None:
        return None
    return platform_user(), password


def masked_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = quote(parts.username or "", safe="")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    with contextlib.suppress(ValueError):
        if parts.port:
            host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
