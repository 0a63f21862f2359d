"""Cleanup of what runs and pipelines leave outside the metadata DB: Dagster runs with their event
logs and compute logs, temporary files, and warehouse tables / files that no pipeline refers to.

Runs are deleted through Dagster's own run storage (GraphQL `deleteRun`: the run and its events);
their compute-log folders go with them. Each function has an `apply` switch: the estimate is the
same walk without deleting.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.core import security
from api.core.config import get_settings
from api.dagster_client import DagsterClient, RunStatus
from orchestration.lib.sql import qualified_name, split_qualified
from orchestration.warehouse.credentials import PIPE_FOLDER

logger = logging.getLogger("api.admin")

FINISHED = (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED)
RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# python-step work folders (orchestration.movement.python_step) a killed run leaves behind
STEP_WORKDIR_PREFIX = "aetl_step_"
# a staging table untouched this long belongs to no load in progress
STAGING_MAX_AGE = timedelta(days=1)
STAGING_DATABASE = "aetl_staging"


@dataclass
class Removal:
    records: int = 0
    files: int = 0
    bytes: int = 0
    items: list[str] = field(default_factory=list)


def dagster() -> DagsterClient:
    from api.pipelines.service import dagster as pipelines_dagster

    return pipelines_dagster()


def _tree_size(path: Path) -> tuple[int, int]:
    files = size = 0
    for item in [path] if path.is_file() or path.is_fifo() else path.rglob("*"):
        try:
            if (item.is_file() or item.is_fifo()) and not item.is_symlink():
                files += 1
                size += item.stat().st_size
        except OSError:
            continue
    return files, size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def compute_logs_dir() -> Path:
    return get_settings().dagster_home / "compute_logs"


# -- execution logs ------------------------------------------------------------------------------


def execution_logs(retention_days: int, *, apply: bool) -> dict[str, Any]:
    """Finished Dagster runs created more than `retention_days` ago: the runs, their events, and their
    compute-log folders."""
    client = dagster()
    cutoff = (security.utcnow() - timedelta(days=retention_days)).timestamp()
    run_ids = client.old_run_ids(cutoff, FINISHED)
    events = files = size = 0
    for run_id in run_ids:
        events += client.run_event_count(run_id)
        folder = compute_logs_dir() / run_id
        if RUN_ID.match(run_id) and folder.exists():
            f, s = _tree_size(folder)
            files, size = files + f, size + s
        if apply:
            client.delete_run(run_id)
            if RUN_ID.match(run_id):
                _remove(folder)
    return {
        "runs": len(run_ids),
        "events": events,
        "records": len(run_ids) + events,
        "files": files,
        "bytes": size,
        "run_ids": run_ids,
    }


# -- temporary files -----------------------------------------------------------------------------


def temp_roots() -> list[Path]:
    """The embedded warehouse's spill folder, and python-step work folders in the system temp dir."""
    roots = [get_settings().warehouse_dir / "tmp"]
    return [r for r in roots if r.is_dir()]


def _temp_candidates(older_than: float) -> Iterator[Path]:
    for root in temp_roots():
        for item in root.iterdir():
            if item.is_file() and not item.is_symlink() and item.stat().st_mtime < older_than:
                yield item
    # named pipes of PostgreSQL loads (orchestration.movement.extract) a killed run worker left behind
    pipes = get_settings().data_dir / PIPE_FOLDER
    if pipes.is_dir():
        for item in pipes.iterdir():
            if item.is_fifo() and item.lstat().st_mtime < older_than:
                yield item
    # Excel exports (api.datamarts): a file is garbage once it is older than the retention and than
    # the life of its download link, so no link that still works ever loses its file
    from api.datamarts.service import EXPORT_LINK_SECONDS, exports_dir

    exports = exports_dir()
    if exports.is_dir():
        dead_before = min(older_than, time.time() - EXPORT_LINK_SECONDS)
        for item in exports.iterdir():
            if item.is_file() and not item.is_symlink() and item.stat().st_mtime < dead_before:
                yield item
    system_tmp = Path(tempfile.gettempdir())
    for folder in system_tmp.glob(f"{STEP_WORKDIR_PREFIX}*"):
        if folder.is_dir() and not folder.is_symlink():
            newest = max(
                [folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*") if p.exists())]
            )
            if newest < older_than:
                yield folder


def temp_files(retention_hours: int, *, apply: bool) -> dict[str, Any]:
    older_than = time.time() - retention_hours * 3600
    files = size = 0
    removed: list[str] = []
    for item in list(_temp_candidates(older_than)):
        f, s = _tree_size(item)
        files, size = files + f, size + s
        removed.append(item.name)
        if apply:
            _remove(item)
    return {"files": files, "bytes": size, "items": removed}


# -- orphaned data -------------------------------------------------------------------------------


def orphaned_data(session: Session, *, apply: bool) -> dict[str, Any]:
    """Warehouse tables loaded by pipelines that no longer exist (purged without their tables), their
    Dagster asset records, staging tables of loads that ended long ago, the own tables of loads that
    stopped before publishing a day ago or more (publish.abandoned_load_tables), and compute-log
    folders of runs Dagster no longer has."""
    from api.pipelines.deletion import live_target_tables
    from api.pipelines.models import Pipeline
    from orchestration.specs.pipeline_plan import dagster_name
    from orchestration.warehouse import publish
    from orchestration.warehouse.client import get_client

    client = dagster()
    known = {dagster_name(pid) for pid in session.scalars(select(Pipeline.id))}
    still_loaded = live_target_tables(session)
    session.commit()  # no DB transaction held while Dagster and the warehouse answer
    orphan_assets = [
        a
        for a in client.assets_with_prefix(["pipelines"])
        if len(a["path"]) == 3 and not a["defined"] and a["path"][1] not in known
    ]
    candidates: dict[str, None] = {}
    for asset in orphan_assets:
        table = asset["metadata"].get("table")
        if table:
            database, name = split_qualified(table)
            for t in (name, f"{name}__rejected"):
                qualified = f"`{database}`.`{t}`" if database else f"`{t}`"
                if qualified not in still_loaded:
                    candidates[qualified] = None

    warehouse = get_client(get_settings().clickhouse_url)
    tables: list[tuple[str, str, int]] = []  # (database, name, bytes)
    try:
        default_db = warehouse.database or "default"
        for qualified in candidates:
            database, name = split_qualified(qualified)
            rows = warehouse.query(
                "SELECT database, name, coalesce(total_bytes, 0) FROM system.tables "
                "WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": database or default_db, "t": name},
            ).result_rows
            tables.extend((str(r[0]), str(r[1]), int(r[2])) for r in rows)
        staging = publish.quiet_tables(
            warehouse,
            "t.database = {db:String}",
            {"db": STAGING_DATABASE},
            int(STAGING_MAX_AGE.total_seconds()),
        )
        tables.extend((database, name, size) for database, name, size, _ in staging)
        # the tables of loads and imports that stopped before publishing and were never retried
        abandoned, pending_loads = publish.abandoned_load_tables(
            warehouse, int(STAGING_MAX_AGE.total_seconds())
        )
        tables.extend(abandoned)
        if apply:
            for database, name, _ in tables:
                # names come from system.tables (any characters): quoted, never pasted in
                warehouse.command(f"DROP TABLE IF EXISTS {qualified_name(name, database)} SYNC")
    finally:
        warehouse.close()

    # compute-log folders whose run is gone from Dagster's run storage
    folders = (
        [p for p in compute_logs_dir().iterdir() if p.is_dir() and RUN_ID.match(p.name)]
        if (compute_logs_dir().is_dir())
        else []
    )
    existing: set[str] = set()
    for start in range(0, len(folders), 200):
        batch = [p.name for p in folders[start : start + 200]]
        existing.update(client.existing_run_ids(batch))
    orphan_folders = [p for p in folders if p.name not in existing]
    files = size = 0
    for folder in orphan_folders:
        f, s = _tree_size(folder)
        files, size = files + f, size + s
        if apply:
            _remove(folder)
    if apply:
        client.wipe_assets([a["path"] for a in orphan_assets])
    return {
        "tables": [f"{d}.{n}" for d, n, _ in tables],
        "table_bytes": sum(b for _, _, b in tables),
        "assets": ["/".join(a["path"]) for a in orphan_assets],
        # load tables that an intent names and that still hold rows: a retry of their load publishes them
        "pending_loads": pending_loads,
        "files": files,
        "file_bytes": size,
        "folders": [p.name for p in orphan_folders],
    }
