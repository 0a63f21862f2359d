"""Restoring the tag rows of runs that a crash left without them.

Dagster's SQL run storage writes a new run in two statements, the run's row and then its tag rows
(`SqlRunStorage._core_add_run`), and dagster-postgres runs every statement in autocommit mode: a
process killed between the two leaves a run whose body carries its tags but that no tag-filtered
query finds (a pipeline's run list, a watch's imports, Dagster's own run-key check of a sensor).
Found by the watched-folder crash test: the daemon was SIGKILLed while its sensor created a file's
run; the restarted daemon resumed the tick and ran it, the file's rows were loaded, and the run
was missing from every list by tag.

The daemon (orchestration/dagster_daemon.py) runs `RunTagsRepair.once` every few seconds: each run is
looked at once, GRACE_SECONDS after it was created (a creator that is alive writes the tags
milliseconds after the row), and the tags its body has and the tag table lacks are written. Tags
added later (`add_run_tags`, e.g. the launcher's worker tag) do not hide the missing ones: the check
compares keys, not "has any tag row". After a start the runs of the last START_WINDOW_SECONDS are
looked at (the crash happened before the start).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("aetl.run_tags_repair")

GRACE_SECONDS = 30.0
START_WINDOW_SECONDS = 3600.0
INTERVAL_SECONDS = 10.0
BATCH = 500


class RunTagsRepair:
    def __init__(
        self, storage: Any, grace_seconds: float = GRACE_SECONDS, start_window: float = START_WINDOW_SECONDS
    ) -> None:  # fmt: skip
        self.storage = storage
        self.grace = timedelta(seconds=grace_seconds)
        self.start_window = timedelta(seconds=start_window)
        self.last_id: int | None = None  # runs up to this id (the table's serial) were looked at

    def once(self, now: datetime | None = None) -> dict[str, list[str]]:
        """Look at the runs old enough that were not looked at yet; {run id: tag keys restored}."""
        import sqlalchemy as db
        from dagster._core.storage.dagster_run import DagsterRun
        from dagster._core.storage.runs.schema import RunsTable, RunTagsTable
        from dagster._serdes import deserialize_value

        moment = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)  # stored naive UTC
        with self.storage.connect() as conn:
            if self.last_id is None:  # first call: from the first run of the window, else from the newest
                first = conn.execute(
                    db.select(db.func.min(RunsTable.c.id)).where(
                        RunsTable.c.create_timestamp > moment - self.start_window
                    )
                ).scalar()
                newest = conn.execute(db.select(db.func.max(RunsTable.c.id))).scalar()
                self.last_id = int(first) - 1 if first is not None else int(newest or 0)
            rows = conn.execute(
                db.select(
                    RunsTable.c.id, RunsTable.c.run_id, RunsTable.c.run_body, RunsTable.c.create_timestamp
                )
                .where(RunsTable.c.id > self.last_id)
                .order_by(RunsTable.c.id.asc())
                .limit(BATCH)
            ).fetchall()
        ready = []
        for row_id, run_id, body, created in rows:
            if created is not None and created > moment - self.grace:
                break  # too young (and so is every later one): next time
            ready.append((row_id, run_id, body))
        if not ready:
            return {}
        restored: dict[str, list[str]] = {}
        with self.storage.connect() as conn:
            stored: dict[str, set[str]] = {}
            for run_id, key in conn.execute(
                db.select(RunTagsTable.c.run_id, RunTagsTable.c.key).where(
                    RunTagsTable.c.run_id.in_([run_id for _, run_id, _ in ready])
                )
            ).fetchall():
                stored.setdefault(run_id, set()).add(key)
            for _, run_id, body in ready:
                tags = deserialize_value(body, DagsterRun).tags_for_storage()
                missing = sorted(set(tags or {}) - stored.get(run_id, set()))
                if missing:
                    conn.execute(
                        RunTagsTable.insert(),
                        [{"run_id": run_id, "key": k, "value": tags[k]} for k in missing],
                    )
                    restored[run_id] = missing
                    log.warning("run %s lacked the rows of its tags %s (a crash as it was created): restored",
                                run_id, missing)  # fmt: skip
        self.last_id = ready[-1][0]
        return restored


def start_thread(instance_factory: Any, interval: float = INTERVAL_SECONDS) -> threading.Thread | None:
    """RunTagsRepair.once every `interval` seconds in a daemon thread, on the instance's run storage
    when it is a SQL one (else None)."""
    from dagster._core.storage.runs.sql_run_storage import SqlRunStorage

    instance = instance_factory()
    storage = instance.run_storage
    if not isinstance(storage, SqlRunStorage):
        return None
    repair = RunTagsRepair(storage)

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                repair.once()
            except Exception as error:  # never stop the daemon; try again next time
                log.warning("run tags repair failed: %s: %s", type(error).__name__, error)

    thread = threading.Thread(target=loop, name="aetl-run-tags-repair", daemon=True)
    thread.start()
    return thread
