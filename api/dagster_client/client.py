"""DagsterClient: the one place that speaks GraphQL to dagster-webserver.

Built on one `httpx.Client` (thread-safe, pooled connections), so a single instance serves all API
worker threads; dagster-graphql's own client is not thread-safe. Every GraphQL error union member
becomes an exception of `api.dagster_client.errors`; answers are pydantic models.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from api.dagster_client import queries
from api.dagster_client.errors import (
    DagsterClientError,
    DagsterInvalidRequest,
    DagsterNotFound,
    DagsterRunError,
    DagsterUnavailable,
    error_for_typename,
)
from api.dagster_client.models import (
    AssetMaterialization,
    CodeLocation,
    DaemonHealth,
    DaemonStatus,
    InstigationStatus,
    LocationReload,
    RepositoryContents,
    Run,
    RunEvent,
    RunLogs,
    RunPage,
    RunStats,
    RunStatus,
    Schedule,
    Sensor,
    from_epoch,
)

DEFAULT_LOCATION = "aetl"
DEFAULT_REPOSITORY = "__repository__"
logger = logging.getLogger("api.dagster_client")
# how long a stopped sensor must stay STOPPED before stop_sensor trusts it (daemon loop: 1 s)
SENSOR_STOP_SETTLE_S = 1.5
AssetKeyLike = str | Sequence[str]


def asset_key_path(key: AssetKeyLike) -> list[str]:
    """`"a/b"` or `["a", "b"]` -> `["a", "b"]` (Dagster's own string form uses `/`)."""
    return key.split("/") if isinstance(key, str) else list(key)


def tags_to_graphql(tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"key": str(k), "value": str(v)} for k, v in (tags or {}).items()]


def build_execution_params(
    job_name: str,
    *,
    location: str,
    repository: str,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    asset_selection: Iterable[AssetKeyLike] | None = None,
) -> dict[str, Any]:
    """The `ExecutionParams` input of `launchRun` (pure: unit-tested without a server)."""
    selector: dict[str, Any] = {
        "jobName": job_name,
        "repositoryName": repository,
        "repositoryLocationName": location,
    }
    if asset_selection is not None:
        selector["assetSelection"] = [{"path": asset_key_path(k)} for k in asset_selection]
    return {
        "selector": selector,
        "runConfigData": dict(run_config or {}),
        "executionMetadata": {"tags": tags_to_graphql(tags)},
    }


def build_runs_filter(
    job_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    statuses: Iterable[RunStatus | str] | None = None,
    run_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The `RunsFilter` input of `runsOrError`; tag filters match all given tags."""
    runs_filter: dict[str, Any] = {}
    if job_name:
        runs_filter["pipelineName"] = job_name
    if tags:
        runs_filter["tags"] = tags_to_graphql(tags)
    if statuses:
        runs_filter["statuses"] = [RunStatus(s).value for s in statuses]
    if run_ids:
        runs_filter["runIds"] = list(run_ids)
    return runs_filter


def parse_run(data: Mapping[str, Any]) -> Run:
    stats_data = data.get("stats") or {}
    stats = None
    if stats_data.get("__typename") == "RunStatsSnapshot":
        stats = RunStats(
            steps_succeeded=stats_data["stepsSucceeded"],
            steps_failed=stats_data["stepsFailed"],
            materializations=stats_data["materializations"],
            expectations=stats_data["expectations"],
            enqueued_time=from_epoch(stats_data.get("enqueuedTime")),
            launch_time=from_epoch(stats_data.get("launchTime")),
            start_time=from_epoch(stats_data.get("startTime")),
            end_time=from_epoch(stats_data.get("endTime")),
        )
    run_config = data.get("runConfig") or {}
    if isinstance(run_config, str):
        run_config = json.loads(run_config)
    created = from_epoch(data["creationTime"])
    assert created is not None
    return Run(
        run_id=data["runId"],
        job_name=data["jobName"],
        status=RunStatus(data["status"]),
        created_at=created,
        started_at=from_epoch(data.get("startTime")),
        ended_at=from_epoch(data.get("endTime")),
        updated_at=from_epoch(data.get("updateTime")),
        tags={t["key"]: t["value"] for t in data.get("tags") or []},
        run_config=run_config,
        asset_selection=["/".join(k["path"]) for k in data.get("assetSelection") or []],
        can_terminate=bool(data.get("canTerminate")),
        root_run_id=data.get("rootRunId"),
        parent_run_id=data.get("parentRunId"),
        stats=stats,
    )


def parse_run_with_metadata(data: Mapping[str, Any]) -> Run:
    run = parse_run(data)
    metadata = [
        {e["label"]: parse_metadata_entry(e) for e in m.get("metadataEntries") or []}
        for m in data.get("assetMaterializations") or []
    ]
    return run.model_copy(update={"materialization_metadata": metadata})


def build_latest_runs_query(count: int) -> str:
    """One request for the newest run of each of `count` tag values (aliases r0, r1, ...)."""
    params = ", ".join(f"$v{i}: String!" for i in range(count))
    fields = "\n".join(
        f"  r{i}: runsOrError(filter: {{tags: [{{key: $key, value: $v{i}}}]}}, limit: 1) "
        "{ __typename ... on Runs { results { ...RunFields "
        "assetMaterializations { metadataEntries { ...MetadataEntryFields } } } } ... on Error { message } }"
        for i in range(count)
    )
    return (
        f"query LatestRuns($key: String!, {params}) {{\n{fields}\n}}\n"
        + queries.RUN_FIELDS
        + queries.METADATA_ENTRY_FIELDS
    )


def parse_event(data: Mapping[str, Any]) -> RunEvent:
    timestamp = from_epoch(data.get("timestamp"), millis=True)
    assert timestamp is not None
    return RunEvent(
        event_type=data["__typename"],
        dagster_event_type=data.get("eventType"),
        message=data.get("message") or "",
        timestamp=timestamp,
        level=data.get("level") or "INFO",
        step_key=data.get("stepKey"),
        error=(data.get("error") or {}).get("message"),
    )


def parse_metadata_entry(entry: Mapping[str, Any]) -> Any:
    """The plain value of one metadata entry (ints beyond 32 bits come as `intRepr`)."""
    kind = entry["__typename"]
    if kind == "IntMetadataEntry":
        return entry["intValue"] if entry.get("intValue") is not None else int(entry["intRepr"])
    if kind == "JsonMetadataEntry":
        return json.loads(entry["jsonString"])
    for name in ("floatValue", "text", "boolValue", "mdStr", "path", "url", "timestamp", "runId"):
        if name in entry:
            return entry[name]
    return None


def parse_schedule(data: Mapping[str, Any], location: str) -> Schedule:
    ticks = (data.get("futureTicks") or {}).get("results") or []
    return Schedule(
        name=data["name"],
        location=location,
        job_name=data["pipelineName"],
        cron_schedule=data["cronSchedule"],
        execution_timezone=data.get("executionTimezone"),
        description=data.get("description"),
        status=InstigationStatus(data["scheduleState"]["status"]),
        default_status=InstigationStatus(data["defaultStatus"]),
        next_tick_at=from_epoch(ticks[0]["timestamp"]) if ticks else None,
    )


def parse_sensor(data: Mapping[str, Any], location: str) -> Sensor:
    return Sensor(
        name=data["name"],
        location=location,
        job_names=[t["pipelineName"] for t in data.get("targets") or []],
        description=data.get("description"),
        status=InstigationStatus(data["sensorState"]["status"]),
        default_status=InstigationStatus(data["defaultStatus"]),
        min_interval_seconds=data["minIntervalSeconds"],
    )


def raise_for_result(result: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> None:
    """Raise the mapped exception when a GraphQL `...OrError` result is an error member."""
    typename = result.get("__typename", "")
    details = dict(context or {})
    details["dagster_error"] = typename
    if typename == "RunConfigValidationInvalid":
        details["errors"] = [
            {"message": e.get("message"), "reason": e.get("reason"), "path": e.get("path")}
            for e in result.get("errors") or []
        ]
        message = "; ".join(e["message"] for e in details["errors"]) or "invalid run config"
        raise DagsterInvalidRequest(f"Invalid run config: {message}", details)
    if typename == "InvalidStepError":
        raise DagsterInvalidRequest(f"Invalid step key {result.get('invalidStepKey')!r}", details)
    if typename == "InvalidOutputError":
        raise DagsterInvalidRequest(f"Invalid output {result.get('invalidOutputName')!r}", details)
    message = result.get("message") or typename
    if typename == "PythonError":
        # An exception inside Dagster: its text stays in the log, the caller gets a plain sentence.
        raise DagsterRunError("Dagster failed while handling the request", details, internal_message=message)
    raise error_for_typename(typename)(message, details)


@dataclass(frozen=True)
class RepositoryAddress:
    location: str
    repository: str

    def selector(self) -> dict[str, str]:
        return {"repositoryName": self.repository, "repositoryLocationName": self.location}


@dataclass
class WorkspaceIndex:
    """Where each job, asset, schedule and sensor lives, so callers use names only."""

    jobs: dict[str, list[RepositoryAddress]] = field(default_factory=dict)
    assets: dict[str, RepositoryAddress] = field(default_factory=dict)
    schedules: dict[str, tuple[RepositoryAddress, dict[str, Any]]] = field(default_factory=dict)
    sensors: dict[str, tuple[RepositoryAddress, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_repositories(cls, nodes: Iterable[Mapping[str, Any]]) -> WorkspaceIndex:
        index = cls()
        for node in nodes:
            address = RepositoryAddress(node["location"]["name"], node["name"])
            for job in node.get("jobs") or []:
                index.jobs.setdefault(job["name"], []).append(address)
            for asset in node.get("assetNodes") or []:
                index.assets["/".join(asset["assetKey"]["path"])] = address
            for schedule in node.get("schedules") or []:
                index.schedules[schedule["name"]] = (address, schedule)
            for sensor in node.get("sensors") or []:
                index.sensors[sensor["name"]] = (address, sensor)
        return index


class DagsterClient:
    """Thread-safe GraphQL client of one dagster-webserver (`base_url` like http://127.0.0.1:3000).

    Jobs, schedules and sensors are addressed by name across all code locations of the workspace
    (`aetl`, `aetl_datamarts`, ...); the client finds their location and caches the map until a miss
    or a reload.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        *,
        location: str = DEFAULT_LOCATION,
        repository: str = DEFAULT_REPOSITORY,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.location = location
        self.repository = repository
        self._index: WorkspaceIndex | None = None
        self._index_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DagsterClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------

    def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL document; returns `data` or raises a DagsterClientError."""
        try:
            response = self._http.post("/graphql", json={"query": query, "variables": dict(variables or {})})
        except httpx.TimeoutException as error:
            raise DagsterUnavailable(
                "Dagster did not answer in time",
                {"reason": type(error).__name__},
                internal_message=f"{self.base_url}: {error!r}",
            ) from error
        except httpx.TransportError as error:
            raise DagsterUnavailable(
                "Dagster is unreachable",
                {"reason": type(error).__name__},
                internal_message=f"{self.base_url}: {error!r}",
            ) from error
        if response.status_code >= 500:
            raise DagsterUnavailable(f"Dagster answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as error:
            raise DagsterUnavailable(f"Dagster answered HTTP {response.status_code} without JSON") from error
        if body.get("errors"):
            # A query the schema refuses is our bug, not the caller's: the details go to the log only.
            messages = "; ".join(str(e.get("message", "")) for e in body["errors"])
            raise DagsterClientError("Dagster refused the GraphQL request", internal_message=messages)
        if response.status_code >= 400 or not isinstance(body.get("data"), dict):
            raise DagsterClientError(f"Dagster answered HTTP {response.status_code}", {})
        return body["data"]

    # -- runs ------------------------------------------------------------------------------------

    def launch_run(
        self,
        job_name: str,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        repository_location: str | None = None,
        repository_name: str | None = None,
        asset_selection: Iterable[AssetKeyLike] | None = None,
    ) -> str:
        """Submit a run (queued by the daemon's run coordinator); returns its run id."""
        if repository_location:
            address = RepositoryAddress(repository_location, repository_name or self.repository)
        else:
            address = self.locate_job(job_name, asset_selection)
        params = build_execution_params(
            job_name,
            location=address.location,
            repository=address.repository,
            run_config=run_config,
            tags=tags,
            asset_selection=asset_selection,
        )
        result = self.execute(queries.LAUNCH_RUN, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise_for_result(result, {"job_name": job_name})
        return str(result["run"]["runId"])

    def get_run(self, run_id: str) -> Run:
        result = self.execute(queries.GET_RUN, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise_for_result(result, {"run_id": run_id})
        return parse_run(result)

    def list_runs(
        self,
        job_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        statuses: Iterable[RunStatus | str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        run_ids: Iterable[str] | None = None,
    ) -> RunPage:
        """Newest first; `cursor` is the `next_cursor` of the previous page."""
        variables = {
            "filter": build_runs_filter(job_name, tags, statuses, run_ids),
            "cursor": cursor,
            "limit": limit,
        }
        result = self.execute(queries.LIST_RUNS, variables)["runsOrError"]
        if result["__typename"] != "Runs":
            raise_for_result(result)
        runs = [parse_run(r) for r in result["results"]]
        next_cursor = runs[-1].run_id if runs and len(runs) >= limit else None
        return RunPage(items=runs, next_cursor=next_cursor)

    def list_runs_with_metadata(
        self,
        job_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        statuses: Iterable[RunStatus | str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        offset: int = 0,
    ) -> RunPage:
        """Like list_runs, with each run's materialization metadata, the total count and an offset.

        Dagster pages by cursor only: an offset first reads the ids of the runs it skips.
        """
        runs_filter = build_runs_filter(job_name, tags, statuses)
        if offset > 0:
            skipped = self.execute(
                queries.LIST_RUN_IDS, {"filter": runs_filter, "cursor": cursor, "limit": offset}
            )["runsOrError"]
            if skipped["__typename"] != "Runs":
                raise_for_result(skipped)
            if len(skipped["results"]) < offset:
                total = self._count_runs(runs_filter)
                return RunPage(items=[], next_cursor=None, total=total)
            cursor = skipped["results"][-1]["runId"]
        variables = {"filter": runs_filter, "cursor": cursor, "limit": limit}
        result = self.execute(queries.LIST_RUNS_WITH_METADATA, variables)["runsOrError"]
        if result["__typename"] != "Runs":
            raise_for_result(result)
        runs = [parse_run_with_metadata(r) for r in result["results"]]
        next_cursor = runs[-1].run_id if runs and len(runs) >= limit else None
        return RunPage(items=runs, next_cursor=next_cursor, total=int(result.get("count") or 0))

    def _count_runs(self, runs_filter: dict[str, Any]) -> int:
        result = self.execute(queries.LIST_RUNS_WITH_METADATA, {"filter": runs_filter, "limit": 0})
        return int(result["runsOrError"].get("count") or 0)

    def get_run_with_metadata(self, run_id: str) -> Run:
        result = self.execute(queries.LIST_RUNS_WITH_METADATA, {"filter": {"runIds": [run_id]}, "limit": 1})[
            "runsOrError"
        ]
        if result["__typename"] != "Runs":
            raise_for_result(result, {"run_id": run_id})
        if not result["results"]:
            raise DagsterNotFound(f"Run {run_id!r} not found", {"run_id": run_id})
        return parse_run_with_metadata(result["results"][0])

    def latest_runs(self, tag_key: str, values: Sequence[str]) -> dict[str, Run | None]:
        """The newest run (with metadata) of each tag value, in one request."""
        values = list(dict.fromkeys(values))
        if not values:
            return {}
        variables: dict[str, Any] = {"key": tag_key, **{f"v{i}": v for i, v in enumerate(values)}}
        data = self.execute(build_latest_runs_query(len(values)), variables)
        out: dict[str, Run | None] = {}
        for i, value in enumerate(values):
            result = data[f"r{i}"]
            if result["__typename"] != "Runs":
                raise_for_result(result)
            results = result["results"]
            out[value] = parse_run_with_metadata(results[0]) if results else None
        return out

    def wait_for_run(self, run_id: str, timeout: float = 300.0, poll_interval: float = 0.25) -> Run:
        """Poll until the run has finished (SUCCESS, FAILURE or CANCELED); TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.status.finished:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} still {run.status.value} after {timeout:g}s")
            time.sleep(poll_interval)

    def get_run_logs(self, run_id: str, cursor: str | None = None, limit: int = 1000) -> RunLogs:
        """Structured event log of a run, oldest first; pass back `cursor` to get only newer events."""
        variables = {"runId": run_id, "afterCursor": cursor, "limit": limit}
        result = self.execute(queries.RUN_LOGS, variables)["logsForRun"]
        if result["__typename"] != "EventConnection":
            raise_for_result(result, {"run_id": run_id})
        return RunLogs(
            run_id=run_id,
            events=[parse_event(e) for e in result["events"]],
            cursor=result.get("cursor"),
            has_more=bool(result.get("hasMore")),
        )

    def terminate_run(
        self, run_id: str, force: bool = False, starting_grace: float = 15.0, watch_queued: float = 5.0
    ) -> RunStatus:
        """Ask the run to stop; queued runs are canceled at once, started ones get SIGTERM.

        Dagster refuses to terminate a run that is STARTING (its worker is booting, a few seconds), so
        that state is retried for up to `starting_grace` seconds. `force` marks the run canceled at once.

        A run canceled in the queue can still be launched: the daemon reads it QUEUED, the cancel marks
        it CANCELED, the daemon then writes STARTING over it and starts the worker (Dagster's own note,
        dagster-io/dagster#3323). So for `watch_queued` seconds after such a cancel a background thread
        looks at the run again and terminates it once more if it was launched after all.
        """
        status = self._terminate(run_id, force, starting_grace)
        if status == RunStatus.CANCELED and not force and watch_queued > 0:
            threading.Thread(
                target=self._cancel_again_if_launched, args=(run_id, watch_queued, starting_grace),
                name=f"aetl-cancel-watch-{run_id[:8]}", daemon=True,
            ).start()  # fmt: skip
        return status

    def _cancel_again_if_launched(self, run_id: str, watch: float, starting_grace: float) -> None:
        deadline = time.monotonic() + watch
        while time.monotonic() < deadline:
            time.sleep(0.25)
            try:
                status = self.get_run(run_id).status
                if status in (RunStatus.STARTING, RunStatus.STARTED):
                    logger.warning("run %s was launched after its cancel in the queue: stopping it", run_id)
                    self._terminate(run_id, False, starting_grace)
                    return
            except Exception as exc:  # noqa: BLE001 - best effort: the run's status tells the rest
                logger.warning("watching the canceled run %s failed: %s", run_id, exc)
                return

    def _terminate(self, run_id: str, force: bool, starting_grace: float) -> RunStatus:
        policy = "MARK_AS_CANCELED_IMMEDIATELY" if force else "SAFE_TERMINATE"
        deadline = time.monotonic() + starting_grace
        while True:
            result = self.execute(queries.TERMINATE_RUN, {"runId": run_id, "terminatePolicy": policy})
            result = result["terminateRun"]
            if result["__typename"] == "TerminateRunSuccess":
                return RunStatus(result["run"]["status"])
            starting = (result.get("run") or {}).get("status") == RunStatus.STARTING.value
            if result["__typename"] == "TerminateRunFailure" and starting and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise_for_result(result, {"run_id": run_id})

    # -- code locations --------------------------------------------------------------------------

    def reload_location(self, name: str | None = None) -> LocationReload:
        """Reload a code location (new deployed specs -> new definitions). Raises if it fails to load."""
        name = name or self.location
        result = self.execute(queries.RELOAD_LOCATION, {"name": name})["reloadRepositoryLocation"]
        if result["__typename"] != "WorkspaceLocationEntry":
            raise_for_result(result, {"location": name})
        with self._index_lock:
            self._index = None  # the location's jobs, schedules and sensors may have changed
        location = result.get("locationOrLoadError") or {}
        if location.get("__typename") == "PythonError":
            raise DagsterRunError(
                f"Code location {name!r} failed to load",
                {"location": name, "dagster_error": "PythonError"},
                internal_message=f"Code location {name!r} failed to load: {location.get('message', '')}",
            )
        return LocationReload(
            name=result["name"],
            load_status=result["loadStatus"],
            repositories=[r["name"] for r in location.get("repositories") or []],
        )

    def repository_contents(self, location: str, repository: str = DEFAULT_REPOSITORY) -> RepositoryContents:
        """Jobs, schedules and assets (with upstream keys) of one location, read fresh (no cache)."""
        selector = {"repositoryName": repository, "repositoryLocationName": location}
        result = self.execute(queries.LOCATION_REPOSITORY, {"selector": selector})["repositoryOrError"]
        if result["__typename"] != "Repository":
            raise_for_result(result, {"location": location})
        return RepositoryContents(
            location=location,
            jobs=[j["name"] for j in result["jobs"]],
            schedules=[
                Schedule(
                    name=s["name"],
                    location=location,
                    job_name=s["pipelineName"],
                    cron_schedule=s["cronSchedule"],
                    execution_timezone=s.get("executionTimezone"),
                    status=InstigationStatus(s["scheduleState"]["status"]),
                    default_status=InstigationStatus(s["defaultStatus"]),
                )
                for s in result["schedules"]
            ],
            assets={
                "/".join(a["assetKey"]["path"]): ["/".join(d["path"]) for d in a["dependencyKeys"]]
                for a in result["assetNodes"]
            },
        )

    def code_locations(self) -> list[CodeLocation]:
        """Every code location with its load state (health reports show the ones that failed)."""
        result = self.execute(queries.CODE_LOCATIONS)["workspaceOrError"]
        if result["__typename"] != "Workspace":
            raise_for_result(result)
        locations = []
        for entry in result["locationEntries"]:
            loaded = entry.get("locationOrLoadError") or {}
            failed = loaded.get("__typename") == "PythonError"
            locations.append(
                CodeLocation(
                    name=entry["name"],
                    load_status=entry["loadStatus"],
                    repositories=[r["name"] for r in loaded.get("repositories") or []],
                    load_failed=failed,
                    load_error_detail=loaded.get("message") if failed else None,
                )
            )
        return locations

    # -- workspace ------------------------------------------------------------------------------

    def workspace_index(self, refresh: bool = False) -> WorkspaceIndex:
        """Jobs, assets, schedules and sensors of every loaded code location (cached)."""
        with self._index_lock:
            if self._index is not None and not refresh:
                return self._index
        result = self.execute(queries.WORKSPACE_INDEX)["repositoriesOrError"]
        if result["__typename"] != "RepositoryConnection":
            raise_for_result(result)
        index = WorkspaceIndex.from_repositories(result["nodes"])
        with self._index_lock:
            self._index = index
        return index

    def _default_address(self) -> RepositoryAddress:
        return RepositoryAddress(self.location, self.repository)

    def locate_job(
        self, job_name: str, asset_selection: Iterable[AssetKeyLike] | None = None
    ) -> RepositoryAddress:
        """The location of a job; for asset jobs (`__ASSET_JOB` exists in every location), of the assets."""
        keys = ["/".join(asset_key_path(k)) for k in asset_selection or []]
        for refresh in (False, True):
            index = self.workspace_index(refresh=refresh)
            if keys and keys[0] in index.assets:
                return index.assets[keys[0]]
            addresses = index.jobs.get(job_name, [])
            default = self._default_address()
            if default in addresses or len(addresses) == 1:
                return default if default in addresses else addresses[0]
            if len(addresses) > 1:
                # never guess between locations: the caller must say which one it means
                raise DagsterInvalidRequest(
                    f"Job {job_name!r} exists in several code locations; name the location",
                    {"job_name": job_name, "locations": sorted(a.location for a in addresses)},
                )
        # Unknown everywhere: Dagster's own PipelineNotFoundError answers for the default location.
        return self._default_address()

    def _find(self, kind: str, name: str) -> tuple[RepositoryAddress, dict[str, Any]]:
        for refresh in (False, True):
            found = getattr(self.workspace_index(refresh=refresh), kind).get(name)
            if found:
                return found
        raise DagsterNotFound(f"{kind[:-1].capitalize()} {name!r} not found", {kind[:-1]: name})

    # -- schedules and sensors -------------------------------------------------------------------

    def list_schedules(self) -> list[Schedule]:
        index = self.workspace_index(refresh=True)
        return [parse_schedule(data, address.location) for address, data in index.schedules.values()]

    def get_schedule(self, name: str) -> Schedule:
        address, _ = self._find("schedules", name)
        selector = {**address.selector(), "scheduleName": name}
        result = self.execute(queries.GET_SCHEDULE, {"scheduleSelector": selector})["scheduleOrError"]
        if result["__typename"] != "Schedule":
            raise_for_result(result, {"schedule": name})
        return parse_schedule(result, address.location)

    def start_schedule(self, name: str) -> Schedule:
        address, _ = self._find("schedules", name)
        selector = {**address.selector(), "scheduleName": name}
        result = self.execute(queries.START_SCHEDULE, {"scheduleSelector": selector})["startSchedule"]
        if result["__typename"] != "ScheduleStateResult":
            raise_for_result(result, {"schedule": name})
        return self.get_schedule(name)

    def stop_schedule(self, name: str) -> Schedule:
        _, data = self._find("schedules", name)
        result = self.execute(queries.STOP_SCHEDULE, {"id": data["id"]})["stopRunningSchedule"]
        if result["__typename"] != "ScheduleStateResult":
            raise_for_result(result, {"schedule": name})
        return self.get_schedule(name)

    def reset_schedule(self, name: str) -> Schedule:
        """Forget a start/stop made in Dagster (UI or API): the schedule's default status applies again."""
        address, _ = self._find("schedules", name)
        selector = {**address.selector(), "scheduleName": name}
        result = self.execute(queries.RESET_SCHEDULE, {"scheduleSelector": selector})["resetSchedule"]
        if result["__typename"] != "ScheduleStateResult":
            raise_for_result(result, {"schedule": name})
        return self.get_schedule(name)

    def list_sensors(self) -> list[Sensor]:
        index = self.workspace_index(refresh=True)
        return [parse_sensor(data, address.location) for address, data in index.sensors.values()]

    def get_sensor(self, name: str) -> Sensor:
        address, _ = self._find("sensors", name)
        selector = {**address.selector(), "sensorName": name}
        result = self.execute(queries.GET_SENSOR, {"sensorSelector": selector})["sensorOrError"]
        if result["__typename"] != "Sensor":
            raise_for_result(result, {"sensor": name})
        return parse_sensor(result, address.location)

    def start_sensor(self, name: str) -> Sensor:
        address, _ = self._find("sensors", name)
        selector = {**address.selector(), "sensorName": name}
        result = self.execute(queries.START_SENSOR, {"sensorSelector": selector})["startSensor"]
        if result["__typename"] != "Sensor":
            raise_for_result(result, {"sensor": name})
        return self.get_sensor(name)

    def stop_sensor(self, name: str, settle_seconds: float = SENSOR_STOP_SETTLE_S) -> Sensor:
        """Stop the sensor and make it stick.

        Dagster's sensor daemon marks the start of each tick by writing back the sensor state it read
        just before (`mark_sensor_state_for_tick`), so a stop that lands in between is overwritten
        with RUNNING. The stop is repeated until the sensor has stayed STOPPED for `settle_seconds`
        (longer than one daemon loop), at most 5 times.
        """
        _, data = self._find("sensors", name)
        stops = 0
        while True:
            result = self.execute(queries.STOP_SENSOR, {"id": data["id"]})["stopSensor"]
            if result["__typename"] != "StopSensorMutationResult":
                raise_for_result(result, {"sensor": name})
            stops += 1
            stopped_at = time.monotonic()
            sensor = self.get_sensor(name)
            stopped = InstigationStatus.STOPPED
            while sensor.status == stopped and time.monotonic() - stopped_at < settle_seconds:
                time.sleep(0.2)
                sensor = self.get_sensor(name)
            if sensor.status == InstigationStatus.STOPPED or stops >= 5:
                if stops > 1:
                    logger.info("sensor %s stopped after %d attempts (a tick overwrote it)", name, stops)
                return sensor

    # -- assets and instance ---------------------------------------------------------------------

    def asset_materializations(self, asset_key: AssetKeyLike, limit: int = 20) -> list[AssetMaterialization]:
        """Latest materializations first, with their metadata (row counts etc.) as plain values."""
        path = asset_key_path(asset_key)
        variables = {"assetKey": {"path": path}, "limit": limit}
        result = self.execute(queries.ASSET_MATERIALIZATIONS, variables)["assetOrError"]
        if result["__typename"] != "Asset":
            raise_for_result(result, {"asset_key": "/".join(path)})
        if not result.get("hasDefinitionOrRecord"):
            # Dagster answers any key with an empty Asset; neither defined nor ever materialized = unknown.
            raise DagsterNotFound(
                f"Asset {'/'.join(path)!r} not found",
                {"asset_key": "/".join(path), "dagster_error": "AssetNotFoundError"},
            )
        items = []
        for event in result["assetMaterializations"]:
            timestamp = from_epoch(event["timestamp"], millis=True)
            assert timestamp is not None
            items.append(
                AssetMaterialization(
                    asset_key=path,
                    run_id=event["runId"],
                    timestamp=timestamp,
                    partition=event.get("partition"),
                    step_key=event.get("stepKey"),
                    metadata={e["label"]: parse_metadata_entry(e) for e in event["metadataEntries"]},
                )
            )
        return items

    # -- maintenance ---------------------------------------------------------------------------

    def old_run_ids(
        self, created_before: float, statuses: Iterable[RunStatus | str], limit: int = 10_000
    ) -> list[str]:
        """Ids of runs created before the epoch second `created_before`, in the given statuses."""
        runs_filter = build_runs_filter(statuses=statuses) | {"createdBefore": created_before}
        ids: list[str] = []
        cursor: str | None = None
        while len(ids) < limit:
            page = min(500, limit - len(ids))
            result = self.execute(
                queries.OLD_RUN_IDS, {"filter": runs_filter, "cursor": cursor, "limit": page}
            )["runsOrError"]
            if result["__typename"] != "Runs":
                raise_for_result(result)
            batch = [r["runId"] for r in result["results"]]
            ids.extend(batch)
            if len(batch) < page:
                break
            cursor = batch[-1]
        return ids

    def existing_run_ids(self, run_ids: Sequence[str]) -> set[str]:
        """Which of these run ids Dagster's run storage still holds."""
        if not run_ids:
            return set()
        result = self.execute(
            queries.LIST_RUN_IDS, {"filter": {"runIds": list(run_ids)}, "limit": len(run_ids)}
        )["runsOrError"]
        if result["__typename"] != "Runs":
            raise_for_result(result)
        return {r["runId"] for r in result["results"]}

    def run_event_count(self, run_id: str) -> int:
        """How many events the run's event log holds (what deleting the run removes with it)."""
        count, cursor = 0, None
        while True:
            result = self.execute(
                queries.RUN_EVENT_COUNT, {"runId": run_id, "afterCursor": cursor, "limit": 5000}
            )["logsForRun"]
            if result["__typename"] != "EventConnection":
                raise_for_result(result, {"run_id": run_id})
            count += len(result["events"])
            if not result["hasMore"] or not result["events"]:
                return count
            cursor = result["cursor"]

    def delete_run(self, run_id: str) -> None:
        """Deletes the run and its event log from Dagster's run storage."""
        result = self.execute(queries.DELETE_RUN, {"runId": run_id})["deleteRun"]
        if result["__typename"] != "DeletePipelineRunSuccess":
            raise_for_result(result, {"run_id": run_id})

    def assets_with_prefix(self, prefix: Sequence[str]) -> list[dict[str, Any]]:
        """Assets (defined or only recorded) under a key prefix: key path, whether a location defines
        it, and the metadata text of its latest materialization."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            result = self.execute(
                queries.ASSETS_BY_PREFIX, {"prefix": list(prefix), "cursor": cursor, "limit": 500}
            )["assetsOrError"]
            if result["__typename"] != "AssetConnection":
                raise_for_result(result)
            for node in result["nodes"]:
                latest = (node.get("assetMaterializations") or [None])[0]
                metadata = {
                    e["label"]: e["text"]
                    for e in (latest or {}).get("metadataEntries", [])
                    if e["__typename"] == "TextMetadataEntry"
                }
                out.append(
                    {
                        "path": list(node["key"]["path"]),
                        "defined": node.get("definition") is not None,
                        "metadata": metadata,
                        "materialized": latest is not None,
                    }
                )
            if len(result["nodes"]) < 500 or not result.get("cursor"):
                return out
            cursor = result["cursor"]

    def wipe_assets(self, keys: Sequence[AssetKeyLike]) -> None:
        """Forgets the assets' materialization history (an asset no definition and no table keeps)."""
        if not keys:
            return
        selectors = [{"assetKey": {"path": asset_key_path(k)}} for k in keys]
        result = self.execute(queries.WIPE_ASSETS, {"selectors": selectors})["wipeAssets"]
        if result["__typename"] != "AssetWipeSuccess":
            raise_for_result(result)

    def daemon_health(self) -> DaemonHealth:
        statuses = self.execute(queries.DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return DaemonHealth(
            daemons=[
                DaemonStatus(
                    daemon_type=s["daemonType"],
                    required=s["required"],
                    healthy=s["healthy"],
                    last_heartbeat_at=from_epoch(s.get("lastHeartbeatTime")),
                    last_heartbeat_errors=[e["message"] for e in s.get("lastHeartbeatErrors") or []],
                )
                for s in statuses
            ]
        )

    def ping(self) -> str:
        """Dagster's version; raises DagsterUnavailable when the webserver is down."""
        return str(self.execute(queries.VERSION)["version"])
