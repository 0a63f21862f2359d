"""Watched folders: one Dagster sensor per watch stored in the metadata DB, one job that imports a file.

Read at code-location load like the deployed pipelines (this module is merged into `aetl_pipelines`,
which the API reloads after a watch is created or removed). A sensor lists its folder, and a file
becomes one run only once it is complete: not modified for two seconds (or seen with the same size
and mtime on two checks in a row, the last write over a second ago) and not named like a temporary
file. The run key is the file's identity (path, size, mtime, content
hash): Dagster never starts two runs with one run key for a sensor, whatever happens to the cursor,
the daemon or the code server, so each version of a file is imported once; a run that died is
retried by the daemon (`dagster/max_retries`), and the import itself replaces the file's rows, so a
retry never doubles them.
"""

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    DefaultSensorStatus,
    Definitions,
    Failure,
    Field,
    OpExecutionContext,
    Output,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    job,
    op,
)

from orchestration.storage.mounts import FileEntry

logger = logging.getLogger("aetl.watches")

IMPORT_JOB = "storage_import"
TAG_WATCH = "aetl/watch_id"
TAG_STORAGE = "aetl/storage_id"
TAG_IMPORT = "aetl/import_id"
TAG_FILE = "aetl/file"
TAG_FILE_HASH = "aetl/file_sha256"
# a file younger than this is left for the next check even when its size did not change
SETTLE_SECONDS = 1.0
# a file not modified for this long is complete on its first sighting (no second check needed)
QUIET_SECONDS = 2.0

WATCHES_SQL = """
SELECT w.id, w.storage_id, w.watch_path, w.file_pattern, w.recursive, w.auto_import, w.import_config,
       w.status, w.poll_interval_seconds
FROM storage_watches w JOIN storage_mounts m ON m.id = w.storage_id
WHERE w.deleted_at IS NULL AND m.deleted_at IS NULL
ORDER BY w.created_at, w.id
"""


@dataclass(frozen=True)
class Watch:
    watch_id: str
    storage_id: str
    watch_path: str
    file_pattern: str
    recursive: bool
    auto_import: bool
    import_config: dict[str, Any]
    status: str
    poll_interval_seconds: int

    @property
    def sensor_name(self) -> str:
        return sensor_name(self.watch_id)


def sensor_name(watch_id: str) -> str:
    return "watch_" + re.sub(r"[^A-Za-z0-9_]", "_", watch_id)


def file_run_key(entry: FileEntry, digest: str) -> str:
    identity = f"{entry.path}\0{entry.size}\0{int(entry.mtime * 1_000_000)}\0{digest}"
    return "file_" + hashlib.sha256(identity.encode()).hexdigest()[:40]


@dataclass
class ScanState:
    """The sensor's cursor: each file as seen at the last check, and the versions already requested."""

    seen: dict[str, list[float]] = field(default_factory=dict)
    requested: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, cursor: str | None) -> "ScanState":
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            return cls(dict(data.get("seen", {})), dict(data.get("requested", {})))
        except (ValueError, AttributeError):
            return cls()

    def dump(self) -> str:
        return json.dumps({"seen": self.seen, "requested": self.requested}, separators=(",", ":"))


def complete_files(
    entries: list[FileEntry], state: ScanState, now: float
) -> tuple[list[FileEntry], ScanState]:
    """The files that are complete and not yet requested in this version, and the next cursor state.

    Complete: not modified for QUIET_SECONDS (a writer still writing moves the mtime), or the same
    size and mtime as at the previous check and not modified in the last SETTLE_SECONDS.
    """
    ready = []
    seen: dict[str, list[float]] = {}
    requested = {p: v for p, v in state.requested.items() if any(e.path == p for e in entries)}
    for entry in entries:
        identity = [float(entry.size), entry.mtime]
        seen[entry.path] = identity
        quiet = now - entry.mtime >= QUIET_SECONDS
        stable = state.seen.get(entry.path) == identity and now - entry.mtime >= SETTLE_SECONDS
        if not (quiet or stable):
            continue
        if requested.get(entry.path) == identity:
            continue
        ready.append(entry)
    return ready, ScanState(seen, requested)


def import_run_config(
    storage_id: str, path: str, import_config: dict[str, Any], inferred: dict[str, Any] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "storage_id": storage_id,
        "path": path,
        "table": import_config["target_table"],
        "database": import_config.get("target_database") or "",
        "create_table": bool(import_config.get("create_table_if_not_exists", True)),
        "sheet": import_config.get("sheet") or "",
    }
    if inferred is not None:
        config["inferred"] = inferred
    return {"ops": {"import_file": {"config": config}}}


def _database_url() -> str:
    from orchestration.defs.pipelines import metadata_database_url

    return metadata_database_url()


@op(
    config_schema={
        "storage_id": str,
        "path": str,
        "table": str,
        "database": Field(str, is_required=False, default_value=""),
        "create_table": Field(bool, is_required=False, default_value=True),
        "sheet": Field(str, is_required=False, default_value=""),
        "inferred": Field(dict, is_required=False),
    },
    required_resource_keys={"clickhouse"},
)
def import_file(context: OpExecutionContext) -> Output[int]:
    """Import one file of a mount into its table; its rows replace what an earlier load of it left."""
    from clickhouse_connect.driver.exceptions import ClickHouseError
    from dagster import AssetKey, AssetMaterialization

    from orchestration.storage.importer import ImportFailed
    from orchestration.storage.importer import import_file as run_import
    from orchestration.storage.inference import Inferred
    from orchestration.storage.mounts import StorageError, connected
    from orchestration.storage.store import load_mount

    config = context.op_config
    try:
        mount, mount_point = load_mount(_database_url(), config["storage_id"])
    except (LookupError, ValueError) as error:
        raise Failure(description=str(error)) from None
    inferred = Inferred.from_config(config["inferred"]) if config.get("inferred") else None
    client = context.resources.clickhouse.get_client()
    try:
        with connected(mount, _local_roots()) as storage:
            result = run_import(
                storage,
                config["path"],
                client,
                table=config["table"],
                database=config["database"] or None,
                create_table=config["create_table"],
                inferred=inferred,
                source_name=config["path"],
                load_id=context.run.root_run_id or context.run_id,
                run_id=context.run_id,
                log=context.log,
            )
    except ImportFailed as error:
        raise Failure(description=str(error), metadata={"details": json.dumps(error.details)}) from None
    except StorageError as error:
        raise Failure(description=f"storage {config['storage_id']}: {error.message}") from None
    except ClickHouseError as error:
        text = str(error).strip().splitlines()[0][:500] if str(error).strip() else type(error).__name__
        raise Failure(description=f"warehouse error: {text}") from None
    finally:
        client.close()
    metadata = {**result.as_metadata(), "file": f"{mount_point.rstrip('/')}/{config['path']}"}
    context.log_event(
        AssetMaterialization(
            asset_key=AssetKey(["storage", *result.table.replace("`", "").split(".")]), metadata=metadata
        )
    )
    return Output(result.rows_loaded, metadata=metadata)


def _local_roots() -> list[Any]:
    from orchestration.connectors.config import file_roots

    return file_roots()


@job(
    name=IMPORT_JOB,
    description="Import one file of a mounted storage into a warehouse table (watches, /mvp/storage/import)",
    # a run whose worker died is started again by the daemon; the import replaces the file's rows
    tags={"dagster/max_retries": "3"},
)
def storage_import_job() -> None:
    import_file()


def watch_sensor(watch: Watch, database_url: Callable[[], str] = _database_url) -> SensorDefinition:
    def evaluate(context: SensorEvaluationContext) -> Any:
        from orchestration.storage.importer import content_hash
        from orchestration.storage.mounts import StorageError, connected, normalize_relative
        from orchestration.storage.store import load_mount

        url = database_url()
        try:
            mount, _ = load_mount(url, watch.storage_id)
            with connected(mount, _local_roots()) as storage:
                # stored as "/<folder of the mount>"
                folder = normalize_relative(watch.watch_path.lstrip("/"))
                entries = storage.list_files(folder, watch.file_pattern, watch.recursive)
                state = ScanState.parse(context.cursor)
                ready, state = complete_files(entries, state, time.time())
                requests = []
                for entry in ready:
                    digest = content_hash(storage, entry.path)
                    state.requested[entry.path] = [float(entry.size), entry.mtime]
                    if not watch.auto_import:
                        continue
                    requests.append(
                        RunRequest(
                            run_key=file_run_key(entry, digest),
                            run_config=import_run_config(watch.storage_id, entry.path, watch.import_config),
                            tags={
                                TAG_WATCH: watch.watch_id,
                                TAG_STORAGE: watch.storage_id,
                                TAG_FILE: entry.path[-250:],
                                TAG_FILE_HASH: digest,
                            },
                        )
                    )
        except (StorageError, LookupError, ValueError) as error:
            return SkipReason(f"storage {watch.storage_id}: {getattr(error, 'message', str(error))}")
        _record_scan(url, watch.watch_id, len(ready))
        context.update_cursor(state.dump())
        if not requests:
            return SkipReason(f"{len(entries)} files, none new and complete")
        return requests

    return SensorDefinition(
        name=watch.sensor_name,
        evaluation_fn=evaluate,
        job=storage_import_job,
        minimum_interval_seconds=max(1, watch.poll_interval_seconds),
        default_status=DefaultSensorStatus.RUNNING
        if watch.status == "active"
        else DefaultSensorStatus.STOPPED,
        description=f"Watch {watch.watch_id}: {watch.watch_path} ({watch.file_pattern}), {watch.storage_id}",
        tags={TAG_WATCH: watch.watch_id},
    )


def _record_scan(database_url: str, watch_id: str, new_files: int) -> None:
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=5) as connection:
            connection.execute(
                "UPDATE storage_watches SET files_detected = files_detected + %s, last_checked_at = now() "
                "WHERE id = %s",
                (new_files, watch_id),
            )
    except psycopg.Error as error:  # the scan still counts; the figure catches up next time
        logger.warning("could not record the scan of %s: %s", watch_id, type(error).__name__)


def load_watches(database_url: str) -> list[Watch]:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as connection:
        exists = connection.execute("SELECT to_regclass('public.storage_watches') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        rows = connection.execute(WATCHES_SQL).fetchall()
    return [
        Watch(
            watch_id=r[0],
            storage_id=r[1],
            watch_path=r[2],
            file_pattern=r[3],
            recursive=bool(r[4]),
            auto_import=bool(r[5]),
            import_config=r[6] if isinstance(r[6], dict) else json.loads(r[6] or "{}"),
            status=r[7],
            poll_interval_seconds=int(r[8]),
        )
        for r in rows
    ]


def build_watches(database_url: str, loader: Callable[[str], list[Watch]] = load_watches) -> Definitions:
    """The import job and one sensor per stored watch; a watch that cannot build is left out and logged."""
    sensors = []
    try:
        watches = loader(database_url)
    except Exception as error:  # noqa: BLE001 - the pipelines sharing this location must still load
        logger.warning("watches not loaded: %s", type(error).__name__)
        watches = []
    for watch in watches:
        try:
            sensors.append(watch_sensor(watch, lambda: database_url))
        except Exception as error:  # noqa: BLE001
            logger.warning("watch %s left out: %s", watch.watch_id, error)
    return Definitions(jobs=[storage_import_job], sensors=sensors)
