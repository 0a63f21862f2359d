"""The stack supervisor: idempotent set-up, then every process of the platform in the foreground.

`python -m orchestration.stack run`    set up, start warehouse + dagster-webserver + dagster-daemon + API,
                                       stop them all on Ctrl-C / SIGTERM (or when one of them dies)
`python -m orchestration.stack setup`  only the set-up steps (databases, migrations, admin, dbt manifest)

Each child runs in its own process group so a stop reaches its children too (dagster-webserver
and the daemon spawn code-server and run processes); nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.core.config import REPO_ROOT, Settings, get_settings

BIN = Path(sys.executable).parent
STOP_GRACE_SECONDS = 15.0


def log(message: str) -> None:
    print(f"[stack {time.strftime('%H:%M:%S')}] {message}", flush=True)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment every process gets, so they all agree on URLs, ports and folders."""
    env = dict(os.environ)
    env.update(
        {
            "AETL_ENV": settings.environment,
            "AETL_DATA_DIR": str(settings.data_dir.resolve()),
            "API_PORT": str(settings.api_port),
            "DAGSTER_PORT": str(settings.dagster_port),
            "CLICKHOUSE_HTTP_PORT": str(settings.clickhouse_http_port),
            "CLICKHOUSE_URL": settings.clickhouse_url,
            "DATABASE_URL": settings.database_url,
            "DAGSTER_PG_URL": settings.dagster_pg_url,
            "DAGSTER_URL": settings.dagster_url,
            "DAGSTER_HOME": str(settings.dagster_home),
            # litellm would otherwise fetch its model price map from the internet on import
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def http_ok(url: str, expect_status: int = 200) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == expect_status
    except httpx.HTTPError:
        return False


@dataclass
class Component:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        log(f"starting {self.name}: {' '.join(self.argv)}")
        self.process = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=env, start_new_session=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


def components(settings: Settings) -> list[Component]:
    host = settings.host
    items: list[Component] = []
    if settings.embedded_warehouse:
        items.append(
            Component(
                "warehouse",
                [
                    str(BIN / "python"), "-m", "orchestration.warehouse.server",
                    "--host", host, "--port", str(settings.clickhouse_http_port),
                    "--data-dir", str(settings.warehouse_dir),
                ],
                lambda: http_ok(f"{settings.clickhouse_url}/ping"),
            )
        )
    items += [
        Component(
            "dagster-webserver",
            [
                str(BIN / "dagster-webserver"), "-h", host, "-p", str(settings.dagster_port),
                "-w", str(REPO_ROOT / "workspace.yaml"),
            ],
            lambda: http_ok(f"{settings.dagster_url}/server_info"),
        ),
        Component(
            "dagster-daemon",
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
            lambda: True,
        ),
        Component(
            "api",
            [
                str(BIN / "uvicorn"), "api.main:create_app", "--factory",
                "--host", host, "--port", str(settings.api_port), "--no-access-log",
            ],
            lambda: http_ok(f"http://{host}:{settings.api_port}/health"),
        ),
    ]
    return items


def run_step(name: str, argv: list[str], env: dict[str, str]) -> None:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"set-up step '{name}' failed (exit {result.returncode})")
    log(f"set-up: {name} ok ({time.monotonic() - started:.1f}s)")


def setup(settings: Settings) -> None:
    """Everything `run` needs before processes start; safe to repeat."""
    env = child_env(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    py = str(BIN / "python")
    run_step("metadata database + migrations + admin", [py, "-m", "api.db.setup"], env)
    run_step("dagster home + storage database", [py, "-m", "orchestration.dagster_home"], env)
    run_step("dbt manifest", [py, "-m", "orchestration.dbt"], env)


def wait_ready(items: list[Component], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(items)
    while pending:
        for item in list(pending):
            if not item.alive():
                raise RuntimeError(f"{item.name} exited during start-up")
            if item.ready():
                log(f"{item.name} ready")
                pending.remove(item)
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(i.name for i in pending)}")
        if pending:
            time.sleep(0.2)


def stop(items: list[Component]) -> None:
    """SIGTERM every process group, in reverse start order, then SIGKILL what is left."""
    for item in reversed(items):
        if item.alive():
            log(f"stopping {item.name}")
        item.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for item in reversed(items):
        if item.process is None:
            continue
        try:
            item.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{item.name} did not stop in {STOP_GRACE_SECONDS:.0f}s; killing it")
        # the group may hold grandchildren (code servers, run workers) even after the leader exits
        item.signal_group(signal.SIGKILL)
        if item.alive():
            item.process.wait(timeout=5)


class StopRequested(Exception):
    pass


def run(settings: Settings, start_timeout: float = 180.0) -> int:
    started = time.monotonic()
    setup(settings)
    env = child_env(settings)
    items = components(settings)

    def on_signal(signum: int, _frame: object) -> None:
        raise StopRequested(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        warehouse = [i for i in items if i.name == "warehouse"]
        for item in warehouse:  # the others connect to it as they start
            item.start(env)
        wait_ready(warehouse, start_timeout)
        rest = [i for i in items if i.name != "warehouse"]
        for item in rest:
            item.start(env)
        wait_ready(rest, start_timeout)
        log(
            f"all components healthy in {time.monotonic() - started:.1f}s — "
            f"API http://{settings.host}:{settings.api_port}/docs · "
            f"Dagster UI {settings.dagster_url} · warehouse {settings.clickhouse_url}"
        )
        while True:
            for item in items:
                if not item.alive():
                    code = item.process.returncode if item.process else None
                    log(f"{item.name} exited unexpectedly (exit {code}); stopping the stack")
                    return 1
            time.sleep(0.5)
    except StopRequested as stop_signal:
        log(f"{stop_signal} received")
        return 0
    except RuntimeError as error:
        log(f"start-up failed: {error}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop(items)
        log("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.stack")
    parser.add_argument("command", choices=["run", "setup"])
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "setup":
        setup(settings)
        return 0
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
