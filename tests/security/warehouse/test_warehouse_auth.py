"""Only the platform's own user, with its password, may query the embedded warehouse."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from orchestration.warehouse.client import get_client
from orchestration.warehouse.credentials import ensure_platform_password, password_file
from tests.support import WarehouseProcess, warehouse_auth

FILE_PASSWD = "SELECT count() FROM file('/etc/passwd', 'LineAsString')"


def assert_authentication_failed(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["X-ClickHouse-Exception-Code"] == "516"
    assert "AUTHENTICATION_FAILED" in response.text
    assert "Code: 516" in response.text


def test_a_query_without_credentials_is_refused(warehouse_url: str) -> None:
    assert_authentication_failed(httpx.post(warehouse_url, content=b"SELECT 1"))
    assert_authentication_failed(httpx.get(warehouse_url, params={"query": "SELECT 1"}))


@pytest.mark.parametrize("how", ["basic", "headers", "params"])
def test_a_wrong_password_is_refused_whichever_way_it_comes(warehouse_url: str, how: str) -> None:
    user, _ = warehouse_auth()
    response = _post(warehouse_url, how, user, "not-the-password")
    assert_authentication_failed(response)
    assert "not-the-password" not in response.text


@pytest.mark.parametrize("how", ["basic", "headers", "params"])
def test_the_platform_password_is_accepted_whichever_way_it_comes(warehouse_url: str, how: str) -> None:
    user, password = warehouse_auth()
    response = _post(warehouse_url, how, user, password)
    assert response.status_code == 200, response.text
    assert response.text == "1\n"


def test_another_user_with_the_right_password_is_refused(warehouse_url: str) -> None:
    _, password = warehouse_auth()
    assert_authentication_failed(httpx.post(warehouse_url, content=b"SELECT 1", auth=("intruder", password)))


def test_ping_stays_open_like_clickhouse(warehouse_url: str) -> None:
    assert httpx.get(f"{warehouse_url}/ping").text == "Ok.\n"


def test_the_attack_of_the_issue_gets_no_answer_without_a_password(warehouse_url: str) -> None:
    assert_authentication_failed(httpx.post(warehouse_url, content=FILE_PASSWD.encode()))


def test_internal_clients_get_the_password_without_being_given_it(client: Client, warehouse_url: str) -> None:
    assert client.command("SELECT 42") == 42
    other = get_client(warehouse_url)
    try:
        assert other.query("SELECT currentUser()").result_rows == [("default",)]
    finally:
        other.close()


def test_the_password_is_generated_once_into_the_data_folder_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLICKHOUSE_PASSWORD", raising=False)
    first = ensure_platform_password(tmp_path)
    path = password_file(tmp_path)
    assert path.is_relative_to(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) >= 32
    assert ensure_platform_password(tmp_path) == first


def test_a_server_on_a_new_data_folder_generates_and_requires_its_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLICKHOUSE_PASSWORD"}
    env["AETL_DATA_DIR"] = str(tmp_path)
    server = WarehouseProcess(tmp_path / "warehouse", tmp_path / "warehouse.log", env=env)
    try:
        password = password_file(tmp_path).read_text().strip()
        assert stat.S_IMODE(password_file(tmp_path).stat().st_mode) == 0o600
        assert_authentication_failed(httpx.post(server.url, content=b"SELECT 1"))
        ok = httpx.post(server.url, content=b"SELECT 1", auth=("default", password))
        assert ok.text == "1\n"
        assert password not in server.log_path.read_text()
    finally:
        assert server.stop() == 0


def test_clickhouse_password_from_the_environment_wins(tmp_path: Path) -> None:
    env = {**os.environ, "AETL_DATA_DIR": str(tmp_path), "CLICKHOUSE_PASSWORD": "from-the-environment-1234"}
    server = WarehouseProcess(tmp_path / "warehouse", tmp_path / "warehouse.log", env=env)
    try:
        ok = httpx.post(server.url, content=b"SELECT 1", auth=("default", "from-the-environment-1234"))
        assert ok.text == "1\n"
        assert not password_file(tmp_path).exists()
    finally:
        assert server.stop() == 0


def test_a_non_loopback_address_without_a_password_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "AETL_DATA_DIR": str(tmp_path), "CLICKHOUSE_PASSWORD": ""}
    with pytest.raises(RuntimeError, match="without a password"):
        WarehouseProcess(tmp_path / "warehouse", tmp_path / "warehouse.log", env=env, host="0.0.0.0")


def _post(url: str, how: str, user: str, password: str) -> httpx.Response:
    if how == "basic":
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return httpx.post(url, content=b"SELECT 1", headers={"Authorization": f"Basic {token}"})
    if how == "headers":
        headers = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}
        return httpx.post(url, content=b"SELECT 1", headers=headers)
    return httpx.post(url, content=b"SELECT 1", params={"user": user, "password": password})
