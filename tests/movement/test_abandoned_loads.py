"""The own tables of loads that stopped before publishing: which ones the orphaned-data clean-up drops."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from orchestration.lib.sql import qualified_name
from orchestration.warehouse import publish


def test_abandoned_load_tables_are_dropped_unless_an_intent_still_needs_their_rows(
    wh: Client, target_db: str
) -> None:
    def table(name: str, rows: int) -> str:
        wh.command(f"CREATE TABLE {target_db}.{name} (id UInt32) ENGINE = MergeTree ORDER BY id")
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
    wh.command(f"CREATE TABLE {pending} (id UInt32) ENGINE = MergeTree ORDER BY id")  # its drop was lost
    drop, kept = ours(publish.abandoned_load_tables(wh, 0))
    assert pending in drop and kept == set()
