"""Helpers shared by the pipelines tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from api.dagster_client import DagsterClient


@dataclass
class Caller:
    role: str
    user_id: str
    headers: dict[str, str]
    token: str


def warehouse_pipeline(source: str, target_table: str, **extra: Any) -> dict[str, Any]:
    """ai-etl body of a warehouse -> warehouse pipeline (SQL step, replace load)."""
    database = source.split(".")[0]
    body: dict[str, Any] = {
        "name": f"Daily orders {target_table}",
        "description": "warehouse to warehouse",
        "sources": [{"id": "orders", "type": "clickhouse", "table": source}],
        "transformations": [
            {"id": "daily", "type": "sql", "sql": "SELECT day, count() AS orders, sum(amount) AS amount "
             "FROM orders GROUP BY day"}
        ],
        "targets": [{"id": "out", "type": "clickhouse", "database": database, "table": target_table,
                     "mode": "replace", "order_by": ["day"]}],
    }  # fmt: skip
    body.update(extra)
    return body


def wait_for(check: Callable[[], Any], timeout: float = 120, interval: float = 0.5, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not after {timeout}s: {what} (last: {last!r})")


def wait_deployed(
    api: httpx.Client, caller: Caller, pipeline_id: str, timeout: float = 180
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        data = api.get(f"/pipelines/{pipeline_id}/status", headers=caller.headers).json()["data"]
        return data if data["deploy_status"] in ("deployed", "failed") else None

    result: dict[str, Any] = wait_for(done, timeout, what=f"deploy of {pipeline_id}")
    return result


def wait_run_finished(dagster: DagsterClient, run_id: str, timeout: float = 240) -> str:
    run = dagster.wait_for_run(run_id, timeout=timeout, poll_interval=0.5)
    return run.status.value
