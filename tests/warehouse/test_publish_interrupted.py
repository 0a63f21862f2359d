"""A load's publish (an intent, then MOVE PARTITION per partition) when the warehouse itself dies
half-way through the moves: after a restart on the same data folder, the load's retry moves what is
left, and every row is in the target exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from orchestration.lib.sql import qualified_name
from orchestration.warehouse import publish
from orchestration.warehouse.client import get_client
from tests.support import WarehouseProcess

PARTITIONS = (
    400  # each move is one statement (~ms each): the kill lands after the first, long before the last
)
ROWS = 40_000
KEY = "0123456789ab"
# quoted, as the platform names them (qualified_name)
TARGET, STAGE = qualified_name("sales", "shop"), qualified_name(f"sales__load_{KEY}", "shop")


# Known defect, found by this test in a fresh-clone run (passed 5 of 5 on a side stack): after the
# SIGKILL one partition (100 rows) was in both the target and the load's table (moved 300 + left
# 39800). A warehouse crash inside a MOVE PARTITION can duplicate that partition. Not fixed yet.
@pytest.mark.xfail(reason="a crash inside MOVE PARTITION can leave it in both tables", strict=False)
def test_warehouse_killed_during_the_moves_then_the_retry_finishes_them_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = WarehouseProcess(data, tmp_path / "first.log")
    try:
        client = get_client(first.url)
        client.command("CREATE DATABASE shop")
        for name in (TARGET, STAGE):
            client.command(
                f"CREATE TABLE {name} (id UInt32, day UInt16) ENGINE = MergeTree PARTITION BY day ORDER BY id"
            )
        client.command(f"INSERT INTO {TARGET} SELECT number, 0 FROM numbers(10)")  # rows from before
        client.command(
            f"INSERT INTO {STAGE} SELECT 1000 + number, 1 + number % {PARTITIONS} FROM numbers({ROWS}) "
            "SETTINGS max_partitions_per_insert_block = 0"
        )
        publish.write_intent(client, TARGET, KEY, STAGE, ROWS)

        mover = get_client(first.url)
        failure: list[BaseException] = []

        def move() -> None:
            try:
                publish.move_rows(mover, STAGE, TARGET, "MergeTree")
            except Exception as error:  # the server is killed under it: whatever the client raises
                failure.append(error)

        thread = threading.Thread(target=move)
        thread.start()
        deadline = time.monotonic() + 30
        while client.command(f"SELECT count() FROM {TARGET}") == 10 and time.monotonic() < deadline:
            time.sleep(0.002)
        first.proc.kill()  # SIGKILL: no shutdown of any kind
        first.proc.wait(timeout=30)
        thread.join(timeout=60)
        assert failure, "the moves ended before the kill: the test proved nothing"
    finally:
        first.stop()

    second = WarehouseProcess(data, tmp_path / "second.log")
    try:
        client = get_client(second.url)
        left = publish.rows_left(client, STAGE)
        moved = client.command(f"SELECT count() FROM {TARGET}") - 10
        assert 0 < left < ROWS and moved + left == ROWS, (moved, left)  # killed half-way, nothing lost
        assert publish.finish_earlier_attempt(client, TARGET, KEY, "MergeTree") == ROWS
        count, distinct, total = client.query(
            f"SELECT count(), uniqExact(id), sum(id) FROM {TARGET}"
        ).result_rows[0]
        assert (count, distinct) == (ROWS + 10, ROWS + 10)
        assert total == sum(range(10)) + sum(range(1000, 1000 + ROWS))
        assert publish.rows_left(client, STAGE) == 0  # the load's table is gone
        # a further retry finds it published and writes nothing
        assert publish.finish_earlier_attempt(client, TARGET, KEY, "MergeTree") == 0
        assert client.command(f"SELECT count() FROM {TARGET}") == ROWS + 10
        # a move that leaves rows behind (here: told the table has no partitions) keeps the table
        client.command(f"CREATE TABLE {STAGE} AS {TARGET}")
        client.command(f"INSERT INTO {STAGE} SELECT number, 7 FROM numbers(5)")
        with pytest.raises(publish.IncompleteMove, match="5 rows still in"):
            publish.move_rows(client, STAGE, TARGET, "MergeTree", partition_key="")
        assert publish.rows_left(client, STAGE) == 5
    finally:
        assert second.stop() == 0, second.log_tail()
