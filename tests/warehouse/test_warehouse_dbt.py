"""dbt-clickhouse builds the project's dbt_project/ against the embedded warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from clickhouse_connect.driver.client import Client

from tests.support import warehouse_auth

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_dbt_build_passes(warehouse_url: str, client: Client, tmp_path: Path) -> None:
    schema = f"dbt_{uuid.uuid4().hex[:10]}"
    url = urlsplit(warehouse_url)
    env = {
        **os.environ,
        "CLICKHOUSE_HOST": url.hostname or "127.0.0.1",
        "CLICKHOUSE_HTTP_PORT": str(url.port),
        "CLICKHOUSE_USER": warehouse_auth()[0],
        "CLICKHOUSE_PASSWORD": warehouse_auth()[1],
        "DBT_SCHEMA": schema,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
    }
    dbt = Path(sys.executable).parent / "dbt"
    cmd = [str(dbt), "build", "--project-dir", "dbt_project", "--profiles-dir", "dbt_project"]
    try:
        for attempt in (1, 2):  # the second build replaces existing tables and views
            proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, (
                f"dbt build #{attempt} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
            )
            assert "ERROR=0" in proc.stdout
        rows = client.query(
            f"SELECT order_date, order_count, revenue FROM {schema}.orders_daily ORDER BY order_date"
        )
        assert len(rows.result_rows) == 4
        assert sum(r[1] for r in rows.result_rows) == 10
        assert client.command(f"SELECT count() FROM {schema}.stg_demo__orders") == 10
        # a dictionary whose source is the warehouse itself, read back from inside it
        per_status = client.command(
            f"SELECT sum(dictGet('{schema}.order_status_lookup', 'order_count', tuple(status))) "
            f"FROM (SELECT DISTINCT status FROM {schema}.stg_demo__orders)"
        )
        assert per_status == 10
        definition = client.command(f"SHOW CREATE DICTIONARY {schema}.order_status_lookup")
        assert warehouse_auth()[1] not in str(definition)  # the password is not stored with it
        # nor written by dbt into its own debug log (it logs every statement it sends)
        debug_log = (tmp_path / "logs" / "dbt.log").read_text(errors="replace")
        assert "order_status_lookup" in debug_log and warehouse_auth()[1] not in debug_log
    finally:
        client.command(f"DROP DATABASE IF EXISTS {schema}")


def test_dbt_debug_connects(warehouse_url: str, tmp_path: Path) -> None:
    url = urlsplit(warehouse_url)
    env = {
        **os.environ,
        "CLICKHOUSE_HOST": url.hostname or "127.0.0.1",
        "CLICKHOUSE_HTTP_PORT": str(url.port),
        "CLICKHOUSE_USER": warehouse_auth()[0],
        "CLICKHOUSE_PASSWORD": warehouse_auth()[1],
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
    }
    dbt = Path(sys.executable).parent / "dbt"
    proc = subprocess.run(
        [str(dbt), "debug", "--project-dir", "dbt_project", "--profiles-dir", "dbt_project"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
