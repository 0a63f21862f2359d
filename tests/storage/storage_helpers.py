"""Helpers shared by the storage tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from api.dagster_client import DagsterClient, Run


@dataclass
class Caller:
    role: str
    headers: dict[str, str]


def mount_local(api: httpx.Client, caller: Caller, path: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        "/mvp/storage/mount", headers=caller.headers, json={"storage_type": "local", "path": path, **extra}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for_runs(
    dagster: DagsterClient, tags: dict[str, str], count: int, timeout: float = 240
) -> list[Run]:
    """The runs with these tags once `count` of them have finished (newest first)."""
    deadline = time.monotonic() + timeout
    runs: list[Run] = []
    while time.monotonic() < deadline:
        runs = dagster.list_runs(job_name="storage_import", tags=tags, limit=50).items
        if len([r for r in runs if r.status.finished]) >= count:
            return runs
        time.sleep(0.5)
    raise AssertionError(
        f"{count} finished runs with {tags} expected, found {[(r.run_id, r.status) for r in runs]}"
    )
