"""The stack supervisor: idempotent set-up, then every process of the platform in the foreground.

`python -m orchestration.stack run`    set up, start warehouse, Dagster code servers, dagster-webserver,
                                       dagster-daemon and the API; stop them all on Ctrl-C / SIGTERM
                                       (or when one of them dies)
`python -m orchestration.stack setup`  only the set-up steps (databases, migrations, admin, dbt manifest)

`Stack` is also what the tests start (whole, or only some services), so tests run the processes
exactly as `make run` does. Each child runs in its own process group, so a stop reaches what it
spawned too (code-server children, run workers): nothing is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

from api.core.config import REPO_ROOT, Settings, get_settings
from orchestration.warehouse.credentials import ensure_platform_password, masked_url

if TYPE_CHECKING:
    from orchestration.dagster_home import CodeLocation

BIN = Path(sys.executable).parent
STOP_GRACE_SECONDS = 15.0
SERVICES = ("warehouse", "dagster", "api")
CODE_SERVER_HOST = "127.0.0.1"


def log(message: str) -> None:
    # never let a closed terminal or pipe (Ctrl-C also ends `| tee`) abort a stop half-way
    with contextlib.suppress(OSError, ValueError):
        print(f"[stack {time.strftime('%H:%M:%S')}] {message}", flush=True)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment every process gets, so they all agree on URLs, ports and folders.

    The embedded warehouse's URL is never exported as CLICKHOUSE_URL: every process derives it
    from CLICKHOUSE_HTTP_PORT, and a set CLICKHOUSE_URL means "a real ClickHouse" everywhere (another
    supervisor would not start the embedded one; clients would not send the platform's password).
    """
    env = dict(os.environ)
    env.update(
        {
            "AETL_ENV": settings.environment,
            "AETL_DATA_DIR": str(settings.data_dir.resolve()),
            "API_PORT": str(settings.api_port),
            "DAGSTER_PORT": str(settings.dagster_port),
            # always this stack's own: an inherited value (another stack's) would put its code servers there
            "DAGSTER_CODE_SERVER_PORT": str(settings.dagster_code_server_port),
            "CLICKHOUSE_HTTP_PORT": str(settings.clickhouse_http_port),
            "CLICKHOUSE_USER": settings.clickhouse_user,
            "AETL_WAREHOUSE_FILE_ROOTS": settings.warehouse_file_roots,
            "AETL_WAREHOUSE_MAX_SESSIONS": str(settings.warehouse_max_sessions),
            "AETL_WAREHOUSE_MAX_MULTIPART_BYTES": str(settings.warehouse_max_multipart_bytes),
            "DATABASE_URL": settings.database_url,
            "DAGSTER_PG_URL": settings.dagster_pg_url,
            "DAGSTER_URL": settings.dagster_url,
            "DAGSTER_HOME": str(settings.dagster_home),
            "AETL_RUN_LAUNCHER": settings.run_launcher,
            # litellm would otherwise fetch its model price map from the internet on import
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.clickhouse_password_override is not None:
        env["CLICKHOUSE_PASSWORD"] = settings.clickhouse_password_override.get_secret_value()
    if settings.embedded_warehouse:
        env.pop("CLICKHOUSE_URL", None)
    else:
        env["CLICKHOUSE_URL"] = settings.clickhouse_url
    return env


def http_ok(url: str, expect_text: str | None = None) -> bool:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and (expect_text is None or response.text == expect_text)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def run_workers_ready(socket_path: Path) -> bool:
    """The warm run-worker server answers a ping on its socket (it binds only after preloading)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(2.0)
        try:
            conn.connect(str(socket_path))
            conn.sendall(b'{"op": "ping"}\n')
            return b'"pid"' in conn.recv(65536)
        except OSError:
            return False


@dataclass
class Component:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0

    def start(self, env: dict[str, str], output: IO[bytes] | None) -> None:
        log(f"starting {self.name}: {' '.join(self.argv)}")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.argv, cwd=REPO_ROOT, env=env, start_new_session=True,
            stdout=output, stderr=subprocess.STDOUT if output else None,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


def run_step(name: str, argv: list[str], env: dict[str, str], output: IO[bytes] | None = None) -> None:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env, stdout=output, stderr=output and subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"set-up step '{name}' failed (exit {result.returncode})")
    log(f"set-up: {name} ok ({time.monotonic() - started:.1f}s)")


class Stack:
    """Some or all services of the platform, set up and started the way `make run` does it.

    Start order: warehouse, code servers and the API together (none needs another to start), then
    dagster-webserver and dagster-daemon, which load the code servers' definitions.
    """

    def __init__(
        self,
        settings: Settings,
        services: Iterable[str] = SERVICES,
        output: IO[bytes] | None = None,
    ) -> None:
        self.settings = settings
        self.services = set(services)
        unknown = self.services - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services: {sorted(unknown)}")
        self.output = output
        self.env = child_env(settings)
        self.components: list[Component] = []

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.api_port}"

    def setup(self) -> None:
        """Everything the services need before they start; safe to repeat."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if "warehouse" in self.services and self.settings.embedded_warehouse:
            ensure_platform_password(self.settings.data_dir.resolve())
            (self.settings.data_dir.resolve() / "imports").mkdir(exist_ok=True)
        steps = []
        if "api" in self.services:
            steps.append(("metadata database + migrations + admin", "api.db.setup"))
        if "dagster" in self.services:
            steps.append(("dagster home + storage database", "orchestration.dagster_home"))
            steps.append(("dbt manifest", "orchestration.dbt"))
        for name, module in steps:
            run_step(name, [str(BIN / "python"), "-m", module], self.env, self.output)

    def _first_wave(self) -> list[Component]:
        settings, host = self.settings, self.settings.host
        wave: list[Component] = []
        if "warehouse" in self.services and settings.embedded_warehouse:
            wave.append(Component(
                "warehouse",
                [str(BIN / "python"), "-m", "orchestration.warehouse.server",
                 "--host", settings.warehouse_host, "--port", str(settings.clickhouse_http_port),
                 "--data-dir", str(settings.warehouse_dir)],
                lambda: http_ok(f"{settings.clickhouse_url}/ping", "Ok.\n"),
            ))  # fmt: skip
        if "dagster" in self.services:
            for location, code_host, port in self._code_servers():
                wave.append(Component(
                    f"code-server:{location.name}",
                    [str(BIN / "dagster"), "code-server", "start", "-h", code_host, "-p", str(port),
                     "-m", location.module, "-d", str(REPO_ROOT), "--location-name", location.name,
                     "--use-python-environment-entry-point"],
                    # the code server loads the definitions before it listens: open port = loaded
                    functools.partial(port_open, code_host, port),
                ))  # fmt: skip
        if "api" in self.services:
            wave.append(Component(
                "api",
                [str(BIN / "uvicorn"), "api.main:create_app", "--factory", "--host", host,
                 "--port", str(settings.api_port), "--no-access-log", "--no-proxy-headers"],
                lambda: http_ok(f"{self.api_url}/health"),
            ))  # fmt: skip
        return wave

    def _second_wave(self) -> list[Component]:
        if "dagster" not in self.services:
            return []
        from orchestration.dagster_home import render_grpc_workspace

        workspace = str(render_grpc_workspace(self.settings.dagster_home, self._code_servers()))
        settings = self.settings
        return [
            Component(
                "dagster-webserver",
                [str(BIN / "dagster-webserver"), "-h", settings.dagster_host,
                 "-p", str(settings.dagster_port), "-w", workspace],
                lambda: http_ok(f"{settings.dagster_url}/server_info"),
            ),
            # Dagster's daemon with a 1 s sensor loop instead of 5 s (orchestration/dagster_daemon.py)
            Component(
                "dagster-daemon",
                [str(BIN / "python"), "-m", "orchestration.dagster_daemon", "run", "-w", workspace],
                self._daemon_ready,
            ),
        ]  # fmt: skip

    def _background_wave(self) -> list[Component]:
        """Started once the rest is ready and not waited for: until the warm run-worker server answers,
        the launcher sends runs through the code servers, so it adds nothing to the start-up time."""
        if "dagster" not in self.services or self.settings.run_launcher != "warm":
            return []
        from orchestration.dagster_home import run_worker_socket

        socket_path = run_worker_socket(self.settings.dagster_home)
        return [
            Component(
                "run-workers",
                [str(BIN / "python"), "-m", "orchestration.run_launcher.server", "--socket", str(socket_path),
                 "--project-root", str(REPO_ROOT)],
                functools.partial(run_workers_ready, socket_path),
            )
        ]  # fmt: skip

    def wait_for_run_workers(self, timeout: float = 240.0) -> None:
        """Block until the warm run-worker server answers (tests that must see the warm path)."""
        self._wait_ready([c for c in self.components if c.name == "run-workers"], time.monotonic() + timeout)

    def _code_servers(self) -> list[tuple[CodeLocation, str, int]]:
        from orchestration.dagster_home import workspace_locations

        base = self.settings.dagster_code_server_port
        # code servers are reached by the webserver and daemon on this machine only: always loopback
        return [(loc, CODE_SERVER_HOST, base + i) for i, loc in enumerate(workspace_locations())]

    def _daemon_ready(self) -> bool:
        from api.dagster_client import DagsterClient, DagsterClientError

        try:
            with DagsterClient(self.settings.dagster_url, timeout=5) as client:
                return client.daemon_health().healthy
        except DagsterClientError:
            return False

    def busy_ports(self) -> list[str]:
        """The ports of this stack's services that something already listens on."""
        settings = self.settings
        wanted: list[tuple[str, str, int]] = []
        if "warehouse" in self.services and settings.embedded_warehouse:
            wanted.append(("warehouse", settings.warehouse_host, settings.clickhouse_http_port))
        if "dagster" in self.services:
            wanted.append(("dagster-webserver", settings.dagster_host, settings.dagster_port))
            wanted += [(f"code-server:{loc.name}", host, port) for loc, host, port in self._code_servers()]
        if "api" in self.services:
            wanted.append(("api", settings.host, settings.api_port))
        probe = {"0.0.0.0": "127.0.0.1", "::": "::1"}
        return [f"{name} {port}" for name, host, port in wanted if port_open(probe.get(host, host), port)]

    def start(self, timeout: float = 240.0) -> float:
        """Start the services and wait until each answers; returns the seconds it took.

        A port already taken is an error: a readiness check would otherwise accept whatever answers
        there (another stack's API, an old warehouse) as this stack's service.
        """
        busy = self.busy_ports()
        if busy:
            raise RuntimeError(
                f"ports already in use: {', '.join(busy)} — another stack or program runs there; "
                "stop it or choose other ports (API_PORT, DAGSTER_PORT, CLICKHOUSE_HTTP_PORT, "
                "DAGSTER_CODE_SERVER_PORT)"
            )
        started = time.monotonic()
        for wave_of in (self._first_wave, self._second_wave):
            wave = wave_of()
            for component in wave:
                component.start(self.env, self.output)
            self.components += wave
            self._wait_ready(wave, started + timeout)
        elapsed = time.monotonic() - started
        for component in self._background_wave():
            component.start(self.env, self.output)
            self.components.append(component)
        return elapsed

    def _wait_ready(self, pending: list[Component], deadline: float) -> None:
        pending = list(pending)
        while pending:
            for component in list(pending):
                if not component.alive():
                    raise RuntimeError(f"{component.name} exited during start-up")
                if component.ready():
                    log(f"{component.name} ready ({time.monotonic() - component.started_at:.1f}s)")
                    pending.remove(component)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not ready in time: {', '.join(c.name for c in pending)}")
            if pending:
                time.sleep(0.2)

    def dead_component(self) -> Component | None:
        return next((c for c in self.components if not c.alive()), None)

    def stop(self) -> None:
        """SIGTERM every process group, in reverse start order, then SIGKILL what is left."""
        for component in reversed(self.components):
            if component.alive():
                log(f"stopping {component.name}")
            component.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for component in reversed(self.components):
            if component.process is None:
                continue
            try:
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{component.name} did not stop in {STOP_GRACE_SECONDS:.0f}s; killing it")
            # the group may hold grandchildren (run workers) even after its leader exited
            component.signal_group(signal.SIGKILL)
            if component.alive():
                component.process.wait(timeout=5)
        self.components = []

    def __enter__(self) -> Stack:
        self.setup()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class StopRequested(Exception):
    pass


def stop_when_parent_dies() -> None:
    """Ask Linux for SIGTERM when our parent exits: `make run` killed by SIGTERM must not orphan us."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the parent was gone before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def ready_message(settings: Settings, seconds: float) -> str:
    """Where everything is; a warehouse URL's password never reaches the terminal or a log."""
    return (
        f"all components healthy in {seconds:.1f}s (set-up included) — "
        f"API http://{settings.host}:{settings.api_port}/docs · Dagster UI {settings.dagster_url} · "
        f"warehouse {masked_url(settings.clickhouse_url)}"
    )


def run(settings: Settings) -> int:
    started = time.monotonic()
    stack = Stack(settings)
    stack.setup()

    def on_signal(signum: int, _frame: object) -> None:
        raise StopRequested(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stop_when_parent_dies()
        stack.start()
        log(ready_message(settings, time.monotonic() - started))
        while (dead := stack.dead_component()) is None:
            time.sleep(0.5)
        code = dead.process.returncode if dead.process else None
        log(f"{dead.name} exited unexpectedly (exit {code}); stopping the stack")
        return 1
    except StopRequested as stop_signal:
        log(f"{stop_signal} received")
        return 0
    except RuntimeError as error:
        log(f"start-up failed: {error}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        log("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.stack")
    parser.add_argument("command", choices=["run", "setup"])
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "setup":
        Stack(settings).setup()
        return 0
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
