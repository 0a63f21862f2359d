"""The own tables of loads that stopped before publishing: which ones the orphaned-data clean-up drops."""

from __future__ import annotations

import threading
import time

from clickhouse_connect.driver.client import Client

from api.core.config import get_settings
from orchestration.lib.sql import qualified_name, split_qualified
from orchestration.warehouse import publish
from orchestration.warehouse.client import get_client


def test_abandoned_load_tables_are_dropped_unless_an_intent_still_needs_their_rows(
    wh: Client, target_db: str
) -> None:
    def table(name: str, rows: int, marked: bool = True) -> str:
        mark = publish.load_table_comment("x") if marked else ""
        wh.command(f"CREATE TABLE {target_db}.{name} (id UInt32) ENGINE = MergeTree ORDER BY id {mark}")
        if rows:
            wh.command(f"INSERT INTO {target_db}.{name} SELECT number FROM numbers({rows})")
        return qualified_name(name, target_db)

    target = table("sales", 5)
    never_published = table("sales__load_0123456789ab", 10)  # stopped before its intent: a retry replaces it
    pending = table("sales__load_abcdefabcdef", 20)  # intent written, not moved yet: a retry finishes it
    published = table("sales__load_fedcbafedcba", 0)  # intent written and moved, the drop was lost
    raced = table("sales__load_fedcbafedcba_2", 3)
    replace_staging = table("sales__staging_0123abcd", 4)
    import_staging = table("sales__import_0123456789", 6)
    table("sales__load_summary", 7)  # a user's table whose name only looks like one
    table("sales__load_0123456789abc", 7)
    table("sales__load_aaaaaaaaaaaa", 7, marked=False)  # a user's table with a load table's very name
    publish.write_intent(wh, target, "abcdefabcdef", pending, 20)
    publish.write_intent(wh, target, "fedcbafedcba", published, 9)

    def ours(found: tuple[list[tuple[str, str, int]], list[str]]) -> tuple[set[str], set[str]]:
        drop, kept = found
        return {qualified_name(n, d) for d, n, _ in drop if d == target_db}, {
            k for k in kept if k.startswith(f"{target_db}.")
        }

    drop, kept = ours(publish.abandoned_load_tables(wh, 0))
    assert drop == {never_published, published, raced, replace_staging, import_staging}
    assert kept == {f"{target_db}.sales__load_abcdefabcdef"}
    # younger than the age asked for: nothing yet
    assert ours(publish.abandoned_load_tables(wh, 3600)) == (set(), set())
    # once its retry has moved the rows in, the pending table is empty and goes too
    publish.move_rows(wh, pending, target, "MergeTree")
    assert wh.command(f"SELECT count() FROM {target}") == 25
    mark = publish.load_table_comment("x")
    wh.command(
        f"CREATE TABLE {pending} (id UInt32) ENGINE = MergeTree ORDER BY id {mark}"
    )  # its drop was lost
    drop, kept = ours(publish.abandoned_load_tables(wh, 0))
    assert pending in drop and kept == set()


def test_a_load_still_writing_is_not_abandoned_however_old_its_table(wh: Client, target_db: str) -> None:
    """The age is that of the last change (definition or data), and a table a running query names is
    never listed: a load into an existing table that runs longer than the sweep's age keeps its table."""
    quiet, filled_late, busy = (
        qualified_name(f"sales__load_{key}", target_db)
        for key in ("0000000000aa", "0000000000bb", "0000000000cc")
    )
    mark = publish.load_table_comment("x")
    for name in (quiet, filled_late, busy):
        wh.command(f"CREATE TABLE {name} (id UInt32) ENGINE = MergeTree ORDER BY id {mark}")
    wh.command(f"INSERT INTO {quiet} SELECT number FROM numbers(3)")
    time.sleep(3)
    wh.command(f"INSERT INTO {filled_late} SELECT number FROM numbers(3)")  # a part written just now

    def listed(age: int) -> set[str]:
        drop, _ = publish.abandoned_load_tables(wh, age)
        return {qualified_name(n, d) for d, n, _ in drop if d == target_db}

    assert listed(2) == {quiet, busy}
    # an insert in progress (~3 s, a row per ms) into the busy table, from another connection
    writer = get_client(get_settings().clickhouse_url)
    failed: list[Exception] = []

    def slow_insert() -> None:
        try:
            writer.command(
                f"INSERT INTO {busy} SELECT toUInt32(number) FROM numbers(3000) "
                "WHERE sleepEachRow(0.001) = 0 SETTINGS max_block_size = 1000"
            )
        except Exception as error:  # shown by the assertion below
            failed.append(error)

    insert = threading.Thread(target=slow_insert)
    insert.start()
    try:
        deadline = time.monotonic() + 10
        while not _running(wh, busy) and time.monotonic() < deadline and not failed:
            time.sleep(0.05)
        assert _running(wh, busy), f"the slow insert never showed in system.processes: {failed}"
        assert listed(0) == {quiet, filled_late}
    finally:
        insert.join(timeout=30)
        writer.close()
    assert wh.command(f"SELECT count() FROM {busy}") == 3000
    assert listed(0) == {quiet, filled_late, busy}  # once it is done, only the age protects it


def _running(client: Client, table: str) -> bool:
    queries = client.query("SELECT query FROM system.processes").result_rows
    return any(
        split_qualified(table)[1] in str(q[0]) and "system.processes" not in str(q[0]) for q in queries
    )
