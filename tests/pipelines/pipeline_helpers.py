"""Helpers shared by the pipelines tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.dagster_client import DagsterClient
from orchestration.run_launcher.proc import descendants


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
    try:
        run = dagster.wait_for_run(run_id, timeout=timeout, poll_interval=0.5)
    except TimeoutError as error:
        raise TimeoutError(f"{error}\n{run_diagnosis(dagster, run_id)}") from None
    return run.status.value


def run_diagnosis(dagster: DagsterClient, run_id: str) -> str:
    """What a stuck run shows: its tags, its last events and, for a local worker, the worker's state."""
    run = dagster.get_run(run_id)
    events = dagster.get_run_logs(run_id).events[-25:]
    lines = [f"tags: {run.tags}", "last events:"]
    lines += [f"  {e.timestamp} {e.event_type} {e.step_key or ''} {e.message[:300]}" for e in events]
    worker = run.tags.get("aetl/run_worker")
    if worker:
        pid = json.loads(worker)["pid"]
        for name in ("status", "wchan", "stack"):
            try:
                text = Path(f"/proc/{pid}/{name}").read_text()
            except OSError as exc:
                text = f"({exc})"
            lines.append(f"worker /proc/{pid}/{name}: {text[:1500]}")
        for child in descendants(pid):
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = "?"
            lines.append(f"worker child {child}: {cmd[:300]}")
    return "\n".join(lines)
