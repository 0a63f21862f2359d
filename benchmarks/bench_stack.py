"""A whole stack on free ports with its own data folder and databases, for the pipeline benchmarks.

Started exactly as `make run` starts it (orchestration.stack.Stack); the databases are dropped after.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.core.config import Settings  # noqa: E402
from orchestration.lib.pg import drop_pg_database  # noqa: E402
from orchestration.stack import Stack  # noqa: E402
from tests.support import isolated_settings  # noqa: E402

RUNNING_HELP = (
    "use the stack already running on the ports of the settings (environment) instead of starting one; "
    "its API must run with AETL_RATE_LIMIT_ENABLED=false"
)


@contextlib.contextmanager
def running_stack(use_running: bool = False, **env: str) -> Iterator[Stack]:
    """`env` goes to every process (e.g. AETL_RATE_LIMIT_ENABLED=false for load tests)."""
    if use_running:
        from api.core.config import get_settings

        yield Stack(get_settings())
        return
    os.environ.update(env)
    os.environ.setdefault("AETL_ENV", "test")
    with tempfile.TemporaryDirectory(prefix="aetl-bench-") as tmp:
        settings: Settings = isolated_settings(Path(tmp) / "data")
        log_path = Path(tmp) / "stack.log"
        try:
            with log_path.open("wb") as log, Stack(settings, output=log) as stack:
                yield stack
        except RuntimeError:
            print(log_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            drop_pg_database(settings.database_url)
            drop_pg_database(settings.dagster_pg_url)


def admin_headers(stack: Stack) -> dict[str, str]:
    settings = stack.settings
    response = httpx.post(
        f"{stack.api_url}/api/v1/auth/login",
        json={"username": settings.admin_username, "password": settings.admin_password.get_secret_value()},
        timeout=30,
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
