"""Shared fixtures: one real stack (warehouse, dagster-webserver, dagster-daemon, API) per test session.

The stack is started exactly as `make run` starts it (`python -m orchestration.stack run`), in the
test environment (AETL_ENV=test: its own databases), on the ports and data folder of the settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("AETL_ENV", "test")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

from api.core.config import REPO_ROOT, Settings, get_settings  # noqa: E402
from orchestration.stack import child_env  # noqa: E402

STACK_START_TIMEOUT = 240.0


@dataclass(frozen=True)
class Stack:
    settings: Settings
    api_url: str
    dagster_url: str
    warehouse_url: str
    env: dict[str, str]
    log_path: Path


def _wait_healthy(api_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STACK_START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"stack exited ({process.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            response = httpx.get(f"{api_url}/health/detailed", timeout=5)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.5)
    raise RuntimeError(f"stack not healthy after {STACK_START_TIMEOUT}s: {last}\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    settings = get_settings()
    assert settings.environment == "test", "tests must run with AETL_ENV=test (own databases)"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "test-stack.log"
    env = child_env(settings)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestration.stack", "run"],
            cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        api_url = f"http://{settings.host}:{settings.api_port}"
        try:
            _wait_healthy(api_url, process, log_path)
            yield Stack(settings, api_url, settings.dagster_url, settings.clickhouse_url, env, log_path)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="session")
def api_url(stack: Stack) -> str:
    return stack.api_url


@pytest.fixture(scope="session")
def dagster_url(stack: Stack) -> str:
    return stack.dagster_url


@pytest.fixture(scope="session")
def warehouse_url(stack: Stack) -> str:
    return stack.warehouse_url
