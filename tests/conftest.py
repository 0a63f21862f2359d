"""Shared fixtures: one real stack (warehouse, Dagster code servers, dagster-webserver, dagster-daemon,
API) per test session, started by the same `Stack` that `make run` uses.

It runs in the test environment (AETL_ENV=test: its own databases) on the ports and data folder of
the settings (`make test` picks ports apart from a `make run` stack).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("AETL_ENV", "test")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# the tests' webhook receivers listen on 127.0.0.1 (the stack's processes inherit this)
os.environ.setdefault("AETL_WEBHOOK_ALLOW_LOOPBACK", "true")
# a run worker that ignores a cancel is killed after this grace (default 20 s; shorter keeps tests quick)
os.environ.setdefault("AETL_RUN_CANCEL_GRACE_SECONDS", "8")

from api.core.config import get_settings  # noqa: E402
from orchestration.stack import Stack  # noqa: E402


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    settings = get_settings()
    assert settings.environment == "test", "tests must run with AETL_ENV=test (own databases)"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "test-stack.log"
    with log_path.open("wb") as output:
        running = Stack(settings, output=output)
        try:
            running.setup()
            # a loaded machine (CI, several stacks side by side) may need longer than the default
            running.start(timeout=float(os.environ.get("AETL_TEST_STACK_START_TIMEOUT", "240")))
        except (RuntimeError, SystemExit) as error:
            running.stop()
            pytest.fail(f"stack did not start: {error}\n{log_path.read_text(errors='replace')[-4000:]}")
        except BaseException:
            # e.g. pytest-timeout firing during a slow start-up: never leave the processes behind
            running.stop()
            raise
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="session")
def api_url(stack: Stack) -> str:
    return stack.api_url


@pytest.fixture(scope="session")
def dagster_url(stack: Stack) -> str:
    return stack.settings.dagster_url


@pytest.fixture(scope="session")
def warehouse_url(stack: Stack) -> str:
    return stack.settings.clickhouse_url
