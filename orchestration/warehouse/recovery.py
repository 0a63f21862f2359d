"""Start-up repair of a MOVE PARTITION that a crash cut in two, before the engine opens the folder.

ClickHouse moves a partition between two MergeTree tables (`ALTER TABLE src MOVE PARTITION … TO TABLE
dst`, what publish.move_rows runs) by hard-linking the source's parts into the destination under new
names, then committing, on disk, first the destination's parts (a rename out of `tmp_move_from_…`),
then an empty part in the source that covers the moved ones (a rename out of `tmp_empty_…`). Its own
code says "It doesn't look atomic": a process killed between those two renames restarts with the
partition in both tables (measured: SIGKILL of the warehouse during 400 moves left one 100-row
partition in the target and in the load's table; the retry then published it a second time).

That state is recognisable on disk, and only while the engine is down: a committed part of a load's
own table (publish.LOAD_TABLE_PATTERN, marked with publish.LOAD_TABLE_MARK; such tables only ever give
their parts away) whose files are the very files (same inode) of a committed part of another table.
It was moved already; it goes to the load table's `detached/` folder as `ignored_<name>`, which
the engine does not load. When the covering part had been committed too, the part was outdated
anyway (the engine removes such parts minutes after a move) and detaching it changes nothing: that
is logged at INFO, a part that was in both tables at WARNING. A part in `detached/` stays visible
in system.detached_parts until the load's table is dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestration.warehouse.publish import LOAD_TABLE_MARK, LOAD_TABLE_PATTERN

log = logging.getLogger("aetl.warehouse")

# parts being written or removed, and parts the engine does not load
NOT_COMMITTED = ("tmp", "delete_tmp", "detached")
ATTACH_UUID = re.compile(r"ATTACH TABLE _ UUID '([0-9a-f-]{36})'")


@dataclass(frozen=True)
class Repair:
    table: str  # database.table of the load's table (names as stored on disk)
    part: str  # its part that was moved already
    twin: str  # the part of the other table that holds the same files
    covered_by: str | None  # a committed part of the load's table that covers it: it was outdated

    def __str__(self) -> str:
        moved = f"part {self.part} was moved already (it is {self.twin})"
        if self.covered_by:
            return f"{self.table}: {moved} and outdated (covered by {self.covered_by}); detached"
        return f"{self.table}: {moved}, not removed: it was in both tables; detached as ignored_{self.part}"


def _block_range(name: str) -> tuple[str, int, int, int] | None:
    """(partition id, min block, max block, level) of a part named
    `<partition>_<min>_<max>_<level>[_<mutation>]` (partition ids have no `_`), or None."""
    fields = name.split("_")
    if len(fields) not in (4, 5) or not all(f.isdigit() for f in fields[1:]):
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def _covering(part: Path) -> str | None:
    """A committed part of the same table whose block range contains `part`'s at a higher level: the
    engine would load `part` as outdated."""
    mine = _block_range(part.name)
    if mine is None:
        return None
    for other in _committed_parts(part.parent):
        theirs = _block_range(other.name)
        if (
            theirs is not None
            and other != part
            and theirs[0] == mine[0]
            and theirs[1] <= mine[1]
            and theirs[2] >= mine[2]
            and theirs[3] > mine[3]
        ):
            return other.name
    return None


def repair_interrupted_moves(data_dir: str | Path) -> list[Repair]:
    """Detach the parts of load tables that a crash left in place after moving them (see above).
    Does nothing when another process holds the folder (the engine's own lock file, `status`)."""
    root = Path(data_dir)
    if not (root / "metadata").is_dir():
        return []  # a new folder
    with _folder_lock(root) as locked:
        if not locked:
            log.warning("data folder %s is in use by another process: no start-up repair", root)
            return []
        return _repair(root)


@contextlib.contextmanager
def _folder_lock(root: Path) -> Iterator[bool]:
    """The engine's lock (flock on <folder>/status, as ClickHouse's StatusFile takes it), held while the
    parts are looked at and released before the engine opens the folder."""
    path = root / "status"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _repair(root: Path) -> list[Repair]:
    loads = dict(_load_tables(root))
    # files shared with another part -> the load tables' parts made of them
    moved_out: dict[tuple[int, int], list[Path]] = {}
    for table_dir in loads:
        for part in _committed_parts(table_dir):
            stat = (part / "checksums.txt").stat()
            if stat.st_nlink > 1:
                moved_out.setdefault((stat.st_dev, stat.st_ino), []).append(part)
    if not moved_out:
        return []
    repairs = []
    for table_dir in (root / "store").glob("*/*"):
        if table_dir in loads:
            continue  # a twin in another load table says nothing about which of the two is the source
        for part in _committed_parts(table_dir):
            stat = (part / "checksums.txt").stat()
            for source in moved_out.pop((stat.st_dev, stat.st_ino), []):
                covered_by = _covering(source)
                detached = source.parent / "detached"
                detached.mkdir(exist_ok=True)
                os.rename(source, _free_name(detached, f"ignored_{source.name}"))
                _sync_dir(detached)
                _sync_dir(source.parent)
                twin = f"{part.parent.name}/{part.name}"
                repair = Repair(loads[source.parent], source.name, twin, covered_by)
                # an outdated part is routine (the engine removes those a few minutes after a move)
                log.log(
                    logging.INFO if covered_by else logging.WARNING,
                    "start-up repair of an interrupted MOVE PARTITION: %s",
                    repair,
                )
                repairs.append(repair)
    return repairs


def _load_tables(root: Path) -> Iterator[tuple[Path, str]]:
    """(data folder, database.table) of every load table (Atomic databases: metadata/<db>/<table>.sql
    names the table's UUID, its data is store/<first 3 of the UUID>/<UUID>/)."""
    pattern = re.compile(LOAD_TABLE_PATTERN)
    for sql in (root / "metadata").glob("*/*.sql"):
        if not pattern.search(sql.stem):
            continue
        try:
            text = sql.read_text(errors="replace")
        except OSError:
            continue
        found = ATTACH_UUID.match(text)
        if found is None or f"COMMENT '{LOAD_TABLE_MARK}" not in text:
            continue
        uuid = found.group(1)
        table_dir = root / "store" / uuid[:3] / uuid
        if table_dir.is_dir():
            yield table_dir, f"{sql.parent.name}.{sql.stem}"


def _committed_parts(table_dir: Path) -> Iterator[Path]:
    try:
        entries = list(table_dir.iterdir())
    except OSError:
        return
    for part in entries:
        if part.name.startswith(NOT_COMMITTED) or not part.is_dir():
            continue
        if (part / "checksums.txt").is_file():
            yield part


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `name_2`, `name_3` … when taken (a rename onto a folder that exists fails,
    and the warehouse would not start)."""
    candidate, n = folder / name, 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{name}_{n}"
    return candidate


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
