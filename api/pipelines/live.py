"""Live status over WebSocket: every run state change and log line of a pipeline's runs.

`WS /ws/pipeline/{pipeline_id}?token=` (ai-etl) and `WS /api/v1/websocket/pipeline-status?token=
[&pipeline_id=]` (aggregator; without pipeline_id: every pipeline). Both follow Dagster's event log
of each run with its cursor, so nothing is sent twice; every message carries `cursor`, and a client
that reconnects with `?cursor=<last cursor>` gets exactly what it missed.

Messages: `{"type": "status", "run_id", "pipeline_id", "status" (Dagster: QUEUED, STARTING, STARTED,
SUCCESS, FAILURE, CANCELING, CANCELED), "state" (ai-etl word), "timestamp", "cursor"}` (finished runs
also carry `rows_processed` and `metrics`), and `{"type": "log", "run_id", "pipeline_id", "level",
"message", "event_type", "step_key", "timestamp", "cursor"}`.
Close codes: 4401 missing/bad/expired token, 4403 not allowed, 4404 unknown pipeline, 4400 bad cursor,
1011 Dagster unreachable for too long.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from api.auth.service import resolve_principal
from api.core.errors import AppError, NotFound, PermissionDenied
from api.dagster_client import DagsterClientError, RunStatus
from api.db.session import new_session
from api.pipelines import service
from orchestration.specs.pipeline_plan import TAG_PIPELINE

logger = logging.getLogger("api.pipelines.live")

POLL_SECONDS = 0.5
RECENT_RUNS = 20
# Dagster event types that are a run state change
RUN_EVENT_STATUS = {
    "RUN_ENQUEUED": RunStatus.QUEUED,
    "RUN_STARTING": RunStatus.STARTING,
    "RUN_START": RunStatus.STARTED,
    "RUN_SUCCESS": RunStatus.SUCCESS,
    "RUN_FAILURE": RunStatus.FAILURE,
    "RUN_CANCELING": RunStatus.CANCELING,
    "RUN_CANCELED": RunStatus.CANCELED,
}

FINISHED = frozenset(s.value for s in RunStatus if s.finished)

root_router = APIRouter(tags=["websocket"])
api_router = APIRouter(tags=["websocket"])


class BadCursor(ValueError):
    pass


@dataclass
class Follow:
    """What a client has seen: runs created since `since`, and per run the log cursor and last status."""

    since: float
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def encode(self) -> str:
        raw = json.dumps({"s": self.since, "r": self.runs}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Follow:
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            runs = {
                str(k): {"c": v.get("c"), "k": int(v.get("k") or 0), "s": v.get("s")}
                for k, v in dict(data["r"]).items()
            }
            return cls(since=float(data["s"]), runs=runs)
        except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as error:
            raise BadCursor(str(error)) from None


def authorize(token: str | None, pipeline_id: str | None) -> None:
    """Raises the AppError that decides the close code."""
    session = new_session()
    try:
        principal = resolve_principal(session, bearer=token, api_key=None)
        if not principal.can("pipelines", "view"):
            raise PermissionDenied("Permission denied: pipelines.view")
        if pipeline_id is not None:
            service.get_pipeline(session, pipeline_id)
    finally:
        session.close()


def close_code(error: AppError) -> int:
    if isinstance(error, NotFound):
        return 4404
    if isinstance(error, PermissionDenied):
        return 4403
    return 4401 if error.status_code == 401 else 4400


def poll(follow: Follow, pipeline_id: str | None) -> list[dict[str, Any]]:
    """New messages since `follow` (which it advances); blocking: run it in a thread.

    A run's position is (log cursor of the batch, events of the batch already sent), so each message
    carries the exact point after itself: a reconnect with it repeats nothing and skips nothing.
    """
    client = service.dagster()
    recent = [r for r in service.recent_runs(pipeline_id, RECENT_RUNS) if TAG_PIPELINE in r.tags]
    messages: list[dict[str, Any]] = []
    for run in sorted(recent, key=lambda r: r.created_at):
        seen = follow.runs.get(run.run_id)
        if seen is None:
            if run.created_at.timestamp() < follow.since:
                continue  # it was there before the client subscribed
            seen = follow.runs[run.run_id] = {"c": None, "k": 0, "s": None}
        elif seen["s"] in FINISHED and run.status.finished:
            continue
        owner = run.tags[TAG_PIPELINE]
        while True:
            logs = client.get_run_logs(run.run_id, cursor=seen["c"], limit=500)
            start, skip = seen["c"], int(seen.get("k") or 0)
            for index, event in enumerate(logs.events):
                if index < skip:
                    continue
                base = {"run_id": run.run_id, "pipeline_id": owner, "timestamp": event.timestamp.isoformat()}
                status = RUN_EVENT_STATUS.get(event.dagster_event_type or "")
                if status is not None and status.value != seen["s"]:
                    seen.update(c=start, k=index, s=status.value)
                    message: dict[str, Any] = {
                        "type": "status",
                        **base,
                        "status": status.value,
                        "state": service.RUN_STATUS_NAMES[status],
                    }
                    if status.finished:
                        rows, metrics = service.run_figures(client.get_run_with_metadata(run.run_id))
                        message.update(rows_processed=rows, metrics=metrics)
                    messages.append({**message, "cursor": follow.encode()})
                seen.update(c=start, k=index + 1)
                messages.append(
                    {
                        "type": "log",
                        **base,
                        "level": event.level,
                        "message": event.message or (event.error or ""),
                        "event_type": event.dagster_event_type or event.event_type,
                        "step_key": event.step_key,
                        "cursor": follow.encode(),
                    }
                )
            if logs.cursor is not None and logs.events:
                seen.update(c=logs.cursor, k=0)
            if not logs.has_more:
                break
    # forget finished runs that left the recent window, so the cursor stays small
    keep = {r.run_id for r in recent}
    follow.runs = {k: v for k, v in follow.runs.items() if k in keep or v["s"] not in FINISHED}
    return messages


async def stream(
    websocket: WebSocket, pipeline_id: str | None, token: str | None, cursor: str | None
) -> None:
    await websocket.accept()
    try:
        await asyncio.to_thread(authorize, token, pipeline_id)
        follow = Follow.decode(cursor) if cursor else Follow(since=time.time())
    except AppError as error:
        await websocket.close(code=close_code(error), reason=error.message[:120])
        return
    except BadCursor:
        await websocket.close(code=4400, reason="bad cursor")
        return
    await websocket.send_json({"type": "subscribed", "pipeline_id": pipeline_id, "cursor": follow.encode()})
    closed = asyncio.Event()

    async def watch_close() -> None:
        try:
            while True:
                await websocket.receive_text()  # clients may ping; anything else is ignored
        except (WebSocketDisconnect, RuntimeError):
            closed.set()

    watcher = asyncio.create_task(watch_close())
    failing_since: float | None = None
    try:
        while not closed.is_set():
            try:
                messages = await asyncio.to_thread(poll, follow, pipeline_id)
                failing_since = None
            except DagsterClientError as error:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > 30:
                    await websocket.close(code=1011, reason="Dagster is unreachable")
                    return
                logger.warning("live status poll failed: %s", error.message)
                messages = []
            for message in messages:
                await websocket.send_json(message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), timeout=POLL_SECONDS)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        watcher.cancel()
        if websocket.application_state == WebSocketState.CONNECTED and not closed.is_set():
            with contextlib.suppress(RuntimeError):
                await websocket.close()


@root_router.websocket("/ws/pipeline/{pipeline_id}")
async def pipeline_updates(
    websocket: WebSocket, pipeline_id: str, token: str | None = None, cursor: str | None = None
) -> None:
    await stream(websocket, pipeline_id, token, cursor)


@api_router.websocket("/websocket/pipeline-status")
async def pipeline_status_updates(
    websocket: WebSocket, token: str | None = None, pipeline_id: str | None = None, cursor: str | None = None
) -> None:
    await stream(websocket, pipeline_id, token, cursor)
