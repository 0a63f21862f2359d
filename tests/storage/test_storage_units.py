"""Pure parts of watched storage, without a stack: inference, path confinement, the sensor's rule for a
complete file and its run key."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from orchestration.defs.watches import ScanState, complete_files, file_run_key
from orchestration.storage.inference import (
    Column,
    compare_schema,
    converter,
    infer_delimited,
)
from orchestration.storage.mounts import (
    FileEntry,
    LocalStorage,
    MountConfig,
    PathRefused,
    StorageError,
    normalize_relative,
)

TEXT = (
    "id\tprice\tratio\twhen\tat\tflag\tname\n"
    '1\t10.5\t1e3\t2025-10-02\t2025-10-02 10:00:00\ttrue\t"Ann ""A"""\n'
    "2\t\t2.5\t03.10.2025\t2025-10-03T11:00:00Z\tno\tБорис\n"
)


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode(), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode(), "utf-8-sig"),
        (TEXT.encode("utf-16"), "utf-16"),
        (TEXT.encode("utf-16-le"), "utf-16-le"),
        (TEXT.encode("cp1251"), "cp1251"),
    ],
)
def test_inference_reads_encodings_dialect_header_and_types(data: bytes, encoding: str) -> None:
    inferred = infer_delimited(data, len(data), whole=True)
    assert (inferred.encoding, inferred.delimiter, inferred.header) == (encoding, "\t", True)
    assert [(c.name, c.type, c.nullable) for c in inferred.columns] == [
        ("id", "integer", False),
        ("price", "decimal", True),
        ("ratio", "float", False),
        ("when", "date", False),
        ("at", "datetime", False),
        ("flag", "bool", False),
        ("name", "string", False),
    ]
    assert inferred.columns[1].clickhouse_type() == "Nullable(Decimal(38, 1))"
    assert (inferred.estimated_rows, inferred.estimate_exact) == (2, True)


def test_inference_without_header_and_estimate_from_a_sample() -> None:
    inferred = infer_delimited(b"1,2025-01-01\n2,2025-01-02\n", None, whole=True)
    assert not inferred.header and [c.name for c in inferred.columns] == ["column_1", "column_2"]
    line = b"12345,abcdefghij\n"  # 17 bytes a row
    sample = b"n,s\n" + line * 1000
    estimate = infer_delimited(sample, len(sample) * 10, whole=False)
    assert not estimate.estimate_exact and 9_000 < estimate.estimated_rows < 11_000


def test_converters_and_schema_comparison() -> None:
    decimal = converter(Column("amount", "decimal", False, 2))
    assert str(decimal("1.25")) == "1.25"
    with pytest.raises(ValueError, match="amount"):
        decimal("1.255")
    with pytest.raises(ValueError, match="not nullable"):
        converter(Column("n", "integer", False))("")
    assert converter(Column("n", "integer", True))("") is None
    mismatch = compare_schema(
        [Column("id", "integer"), Column("day", "date"), Column("extra", "string"), Column("t", "string")],
        {"id": "Int32", "day": "Int64", "t": "Int64"},
    )
    assert mismatch.missing == ["extra"] and [c["column"] for c in mismatch.incompatible] == ["day"]
    assert "extra" in mismatch.message("x") and "day (date into Int64)" in mismatch.message("x")


def test_paths_stay_inside_the_mount(tmp_path: Path) -> None:
    assert normalize_relative("/mnt/share/a/b.csv", "/mnt/share") == "a/b.csv"
    assert normalize_relative("a//./b.csv") == "a/b.csv"
    for bad in ("../x", "a/../../x", "/etc/passwd", "/mnt/shared/x"):
        with pytest.raises(PathRefused):
            normalize_relative(bad, "/mnt/share")
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    (tmp_path / "outside.csv").write_text("a\n")
    os.symlink(tmp_path / "outside.csv", root / "in" / "link.csv")
    (root / "in" / "ok.csv").write_text("a\n1\n")
    (root / "in" / "~$lock.csv").write_text("x")
    (root / "in" / "new.csv.part").write_text("x")
    storage = LocalStorage(MountConfig(storage_type="local", path=str(root)), [tmp_path])
    assert [e.path for e in storage.list_files("in", "*.csv", False)] == ["in/ok.csv"]
    with pytest.raises(PathRefused):
        storage.stat("in/link.csv")
    with pytest.raises(StorageError, match="file roots"):
        LocalStorage(MountConfig(storage_type="local", path=str(root)), [tmp_path / "elsewhere"])


def test_a_file_is_requested_once_when_stable() -> None:
    now = 1_000_000.0
    quiet = FileEntry("q.csv", 10, now - 5)
    ready, state = complete_files([quiet], ScanState(), now)
    assert ready == [quiet]  # first sight, but not modified for 5 s: complete
    growing = FileEntry("a.csv", 10, now - 0.5)
    ready, state = complete_files([growing], ScanState(), now)
    assert ready == []  # first sight, written half a second ago: not yet known to be stable
    grown = FileEntry("a.csv", 20, now - 0.5)
    ready, state = complete_files([grown], state, now)
    assert ready == []  # size changed
    ready, state = complete_files([grown], state, now + 0.2)
    assert ready == []  # same size, but written less than a second ago
    ready, state = complete_files([grown], state, now + 0.6)
    assert ready == [grown]  # same size and mtime on two checks, the last write over a second ago
    state.requested[grown.path] = [20.0, grown.mtime]
    state = ScanState.parse(state.dump())  # the cursor survives as text
    assert complete_files([grown], state, now + 3)[0] == []
    changed = FileEntry("a.csv", 20, now + 2.5)
    _, state = complete_files([changed], state, now + 4)
    assert complete_files([changed], state, now + 5)[0] == [changed]
    assert file_run_key(grown, "h1") == file_run_key(FileEntry("a.csv", 20, grown.mtime), "h1")
    assert len({file_run_key(grown, "h1"), file_run_key(grown, "h2"), file_run_key(changed, "h1")}) == 3


def test_watches_build_into_the_pipelines_location() -> None:
    from dagster import DefaultSensorStatus, Definitions

    from orchestration.defs.pipelines import build_definitions
    from orchestration.defs.watches import Watch, build_watches
    from orchestration.specs.pipeline_plan import plan_location

    watches = [
        Watch("watch_a", "storage_a", "/in", "*.csv", False, True, {"target_table": "t"}, "active", 2),
        Watch("watch_b", "storage_a", "/", "*", True, False, {}, "paused", 5),
    ]
    merged = Definitions.merge(
        build_definitions(plan_location([])), build_watches("postgresql://unused", loader=lambda _: watches)
    )
    Definitions.validate_loadable(merged)
    assert merged.resolve_sensor_def("watch_watch_a").default_status is DefaultSensorStatus.RUNNING
    assert merged.resolve_sensor_def("watch_watch_b").default_status is DefaultSensorStatus.STOPPED
    assert merged.resolve_job_def("storage_import").tags["dagster/max_retries"] == "3"

    def broken(_: str) -> list[Watch]:
        raise OSError("metadata DB down")

    # the pipelines sharing the location load even when the watches cannot be read
    assert build_watches("postgresql://unused", loader=broken).sensors == []


def test_the_daemon_wrapper_still_finds_dagsters_sensor_loop() -> None:
    """orchestration/dagster_daemon.py shortens a private constant: an upgrade that drops it fails here."""
    from dagster._daemon import sensor

    assert isinstance(sensor.MIN_INTERVAL_LOOP_TIME, int | float)
