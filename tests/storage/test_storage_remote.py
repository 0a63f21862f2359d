"""SFTP and SMB mounts against real servers on loopback (OpenSSH, Samba): mount with real free space,
credentials never returned, refused logins, imports through the stack's runs, symlinks out refused, and a
watch sensor's evaluation over SFTP."""

from __future__ import annotations

import gzip
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from dagster import RunRequest, build_sensor_context
from file_servers import SftpServer, SmbServer, sftp_server, smb_server
from storage_helpers import Caller

from api.dagster_client import DagsterClient, RunStatus
from orchestration.defs.watches import Watch, watch_sensor
from orchestration.stack import Stack
from tests.api.api_helpers import assert_error_shape

# the session stack starts inside the first test's time; runs share 2 cores with everything else
pytestmark = pytest.mark.timeout(900)
RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpServer]:
    with sftp_server(tmp_path_factory.mktemp("sftp")) as server:
        yield server


@pytest.fixture(scope="module")
def smb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmbServer]:
    with smb_server(tmp_path_factory.mktemp("smb")) as server:
        yield server


def _import(api: httpx.Client, caller: Caller, path: str, database: str) -> httpx.Response:
    return api.post(
        "/mvp/storage/import",
        headers=caller.headers,
        json={"file_path": path, "target_table": "remote", "target_database": database},
    )


def test_sftp_mount_import_and_watch(
    api: httpx.Client,
    engineer: Caller,
    sftp: SftpServer,
    dagster: DagsterClient,
    warehouse: Client,
    database: str,
    stack: Stack,
    tmp_path: Path,
) -> None:
    (sftp.root / "in").mkdir()
    (sftp.root / "in" / "a.csv").write_text("id,city\n1,Oslo\n2,Riga\n")
    (tmp_path / "secret.csv").write_text("x\n1\n")
    os.symlink(tmp_path / "secret.csv", sftp.root / "in" / "out.csv")
    point = f"/mnt/sftp_{uuid.uuid4().hex[:6]}"
    body = {
        "storage_type": "sftp",
        "host": "127.0.0.1",
        "port": sftp.port,
        "path": str(sftp.root),
        "credentials": {"username": sftp.username, "private_key": sftp.private_key},
        "mount_point": point,
    }
    response = api.post("/mvp/storage/mount", headers=engineer.headers, json=body)
    assert response.status_code == 200, response.text
    mount = response.json()
    assert mount["status"] == "mounted" and mount["available_space_gb"] > 0
    assert "PRIVATE KEY" not in response.text and mount["config"]["username"] == sftp.username
    wrong = {
        **body,
        "mount_point": point + "_x",
        "credentials": {"username": "nobody", "password": "Nope-123"},
    }
    refused = assert_error_shape(api.post("/mvp/storage/mount", headers=engineer.headers, json=wrong), 502)
    assert refused["error"]["details"]["reason"] == "auth"

    accepted = _import(api, engineer, f"{point}/in/a.csv", database)
    assert accepted.status_code == 202, accepted.text
    assert dagster.wait_for_run(accepted.json()["run_id"], timeout=RUN_TIMEOUT).status is RunStatus.SUCCESS
    rows = warehouse.query(f"SELECT id, city, _source_file FROM {database}.remote ORDER BY id").result_rows
    assert rows == [(1, "Oslo", "in/a.csv"), (2, "Riga", "in/a.csv")]
    assert_error_shape(_import(api, engineer, f"{point}/in/out.csv", database), 422, "VALIDATION_ERROR")

    # the watch's sensor over SFTP, evaluated as the daemon would: a file quiet for QUIET_SECONDS is
    # complete at first sight, a younger one on the next look at the same size and mtime
    watch = Watch("watch_sftp_test", mount["storage_id"], "/in", "*.csv", False, True,
                  {"target_table": "remote", "target_database": database}, "active", 1)  # fmt: skip
    url = stack.settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    sensor = watch_sensor(watch, lambda: url)
    with build_sensor_context(sensor_name=sensor.name) as context:
        tick = sensor.evaluate_tick(context)
    assert tick.cursor
    if not tick.run_requests:
        with build_sensor_context(sensor_name=sensor.name, cursor=tick.cursor) as context:
            tick = sensor.evaluate_tick(context)
    requests = tick.run_requests or []
    assert [r.tags["aetl/file"] for r in requests] == ["in/a.csv"]  # the link out of the mount is not listed
    assert isinstance(requests[0], RunRequest) and requests[0].run_key
    with build_sensor_context(sensor_name=sensor.name, cursor=tick.cursor) as context:
        assert not sensor.evaluate_tick(context).run_requests


def test_smb_mount_and_gzip_import(
    api: httpx.Client,
    engineer: Caller,
    smb: SmbServer,
    dagster: DagsterClient,
    warehouse: Client,
    database: str,
) -> None:
    (smb.root / "daily").mkdir()
    with gzip.open(smb.root / "daily" / "sales.csv.gz", "wt") as handle:
        handle.write("day;amount\n2025-10-01;1.50\n2025-10-02;2.25\n")
    point = f"/mnt/smb_{uuid.uuid4().hex[:6]}"
    body = {
        "storage_type": "smb",
        "host": "127.0.0.1",
        "port": smb.port,
        "share_name": smb.share,
        "credentials": {"username": smb.username, "password": smb.password},
        "mount_point": point,
    }
    response = api.post("/mvp/storage/mount", headers=engineer.headers, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["available_space_gb"] > 0 and smb.password not in response.text
    bad = {
        **body,
        "mount_point": point + "_x",
        "credentials": {"username": smb.username, "password": "wrong-1"},
    }
    refused = assert_error_shape(api.post("/mvp/storage/mount", headers=engineer.headers, json=bad), 502)
    assert refused["error"]["details"]["reason"] == "auth" and "wrong-1" not in str(refused)
    missing = {**body, "mount_point": point + "_y", "share_name": "no_such_share"}
    assert_error_shape(api.post("/mvp/storage/mount", headers=engineer.headers, json=missing), 502)

    accepted = _import(api, engineer, f"{point}/daily/sales.csv.gz", database)
    assert accepted.status_code == 202, accepted.text
    schema = accepted.json()["inferred_schema"]
    assert schema["compression"] == "gzip" and [c["type"] for c in schema["columns"]] == ["date", "decimal"]
    assert dagster.wait_for_run(accepted.json()["run_id"], timeout=RUN_TIMEOUT).status is RunStatus.SUCCESS
    rows = warehouse.query(
        f"SELECT toString(day), toString(amount) FROM {database}.remote ORDER BY day"
    ).result_rows
    assert rows == [("2025-10-01", "1.5"), ("2025-10-02", "2.25")]
    assert_error_shape(_import(api, engineer, f"{point}/../x.csv", database), 422, "VALIDATION_ERROR")
