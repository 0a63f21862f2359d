"""Helpers shared by the test folders: free ports, isolated settings, warehouse and stack processes.

Every process a test starts is started by the same code `make run` uses (`orchestration.stack.Stack`),
except `WarehouseProcess`, which the warehouse life-cycle tests need to restart on one data folder.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

import httpx

from api.core.config import REPO_ROOT, Settings
from orchestration.dagster_home import workspace_locations
from orchestration.lib.pg import drop_pg_database
from orchestration.stack import SERVICES, Stack
from orchestration.warehouse.credentials import ensure_platform_password, platform_user

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
START_TIMEOUT = 60.0


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(span: int = 1, avoid: Collection[int] = ()) -> int:
    """The first of `span` consecutive free ports outside the kernel's ephemeral range (none in `avoid`).

    A port the kernel hands out (bind to 0) can be handed out again to anyone's outgoing connection
    or to a code server's gRPC child before our server binds it; below the range it cannot. The code
    servers take one port each from a base: ask for as many as there are code locations.
    """
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randrange(20000, min(low, 32000) - span)
        wanted = range(port, port + span)
        if any(p in avoid for p in wanted) or not all(_bindable(p) for p in wanted):
            continue
        with socket.socket() as probe:
            # nothing may listen right after the range either (another stack's next code server)
            if probe.connect_ex(("127.0.0.1", port + span)) != 0:
                return port
    raise RuntimeError("no free port found below the ephemeral range")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def warehouse_auth() -> tuple[str, str]:
    """The platform's warehouse user and password, as this test process (and its servers) know them."""
    return platform_user(), ensure_platform_password()


def basic_auth_header() -> str:
    """`Authorization: Basic …` line for tests that write raw HTTP on a socket."""
    import base64

    user, password = warehouse_auth()
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def unique_pg_url(prefix: str) -> str:
    """A database of its own (test naming), for a fixture that drops it afterwards."""
    return f"{PG_SERVER}/{prefix}_{uuid.uuid4().hex[:10]}"


def isolated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Test settings on free ports, a data folder and databases of their own."""
    taken: list[int] = []

    def port(span: int = 1) -> int:  # distinct from the ports this stack already took
        first = free_port(span, avoid=taken)
        taken.extend(range(first, first + span))
        return first

    values: dict[str, object] = {
        "AETL_ENV": "test",
        "API_PORT": port(),
        "DAGSTER_PORT": port(),
        "DAGSTER_CODE_SERVER_PORT": port(len(workspace_locations())),
        "CLICKHOUSE_HTTP_PORT": port(),
        "AETL_DATA_DIR": data_dir,
        "DATABASE_URL": unique_pg_url("aetl_test").replace("postgresql://", "postgresql+psycopg://"),
        "DAGSTER_PG_URL": unique_pg_url("aetl_dagster_test"),
        # the same password as this test process's warehouse clients read
        "CLICKHOUSE_PASSWORD": ensure_platform_password(),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def isolated_stack(
    data_dir: Path, services: tuple[str, ...] = SERVICES, **overrides: object
) -> Iterator[Stack]:
    """Set up and start some services on isolated settings; stop them and drop their databases after."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = isolated_settings(data_dir, **overrides)
    with (data_dir / "stack.log").open("wb") as output:
        try:
            with Stack(settings, services, output=output) as stack:
                yield stack
        except RuntimeError as error:
            tail = (data_dir / "stack.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{error}\n{tail}") from None
        finally:
            drop_pg_database(settings.database_url)
            drop_pg_database(settings.dagster_pg_url)


class WarehouseProcess:
    """`python -m orchestration.warehouse.server` as a child process, ready when /ping answers."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration.warehouse.server", "--host", host,
             "--port", str(self.port), "--data-dir", str(data_dir)],
            cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"warehouse exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).text == "Ok.\n":
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"warehouse did not answer /ping in {START_TIMEOUT}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM and wait: the server must exit cleanly and release the data folder."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# -- callers of the session stack's API (the client's base URL ends in /api/v1) -------------------

USER_PASSWORD = "Secret1234"


def login(api: httpx.Client, username: str, password: str) -> str:
    """An access token for the user."""
    response = api.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def admin_token(api: httpx.Client, settings: Settings) -> str:
    return login(api, settings.admin_username, settings.admin_password.get_secret_value())


def new_user(api: httpx.Client, admin_headers: dict[str, str], role: str, prefix: str) -> tuple[str, str]:
    """A new user of the role (own rate-limit budget), logged in: (user id, access token)."""
    name = f"{prefix}_{role}_{secrets.token_hex(4)}"
    created = api.post(
        "/users",
        headers=admin_headers,
        json={"username": name, "email": f"{name}@example.com", "password": USER_PASSWORD, "role": role},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["id"]), login(api, name, USER_PASSWORD)
