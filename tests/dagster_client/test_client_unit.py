"""The client without a Dagster: documents vs the installed schema, input builders, error mapping."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from graphql import GraphQLSchema, parse, validate

from api.dagster_client import (
    DagsterClient,
    DagsterConflict,
    DagsterInvalidRequest,
    DagsterNotFound,
    DagsterRunError,
    DagsterUnavailable,
    RunStatus,
)
from api.dagster_client.client import (
    RepositoryAddress,
    WorkspaceIndex,
    build_execution_params,
    build_runs_filter,
    parse_metadata_entry,
    parse_run,
    raise_for_result,
)
from api.dagster_client.queries import ALL_DOCUMENTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def graphql_schema() -> GraphQLSchema:
    from dagster_graphql.schema import create_schema

    return create_schema().graphql_schema


@pytest.mark.parametrize("name", sorted(ALL_DOCUMENTS))
def test_documents_validate_against_the_installed_schema(graphql_schema: GraphQLSchema, name: str) -> None:
    assert validate(graphql_schema, parse(ALL_DOCUMENTS[name])) == []


def test_execution_params() -> None:
    params = build_execution_params(
        "warehouse_job",
        location="aetl",
        repository="__repository__",
        run_config={"ops": {"x": {"config": {"a": 1}}}},
        tags={"aetl/pipeline_id": "p_1"},
        asset_selection=["calendar_days", ["raw", "orders"]],
    )
    assert params == {
        "selector": {
            "jobName": "warehouse_job",
            "repositoryName": "__repository__",
            "repositoryLocationName": "aetl",
            "assetSelection": [{"path": ["calendar_days"]}, {"path": ["raw", "orders"]}],
        },
        "runConfigData": {"ops": {"x": {"config": {"a": 1}}}},
        "executionMetadata": {"tags": [{"key": "aetl/pipeline_id", "value": "p_1"}]},
    }


def test_runs_filter() -> None:
    assert build_runs_filter() == {}
    assert build_runs_filter("j", {"a": "1"}, ["SUCCESS", RunStatus.FAILURE]) == {
        "pipelineName": "j",
        "tags": [{"key": "a", "value": "1"}],
        "statuses": ["SUCCESS", "FAILURE"],
    }
    with pytest.raises(ValueError):
        build_runs_filter(statuses=["DONE"])


def test_parse_run_converts_times_and_tags() -> None:
    run = parse_run(
        {
            "runId": "r1", "jobName": "j", "status": "SUCCESS", "creationTime": 1700000000.5,
            "startTime": 1700000001.0, "endTime": 1700000004.0, "tags": [{"key": "k", "value": "v"}],
            "runConfig": {"ops": {}}, "assetSelection": [{"path": ["a", "b"]}], "canTerminate": False,
            "stats": {"__typename": "PythonError", "message": "boom"},
        }
    )  # fmt: skip
    assert run.status is RunStatus.SUCCESS and run.status.finished
    assert run.created_at.isoformat() == "2023-11-14T22:13:20.500000+00:00"
    assert run.duration_seconds == 3.0
    assert run.tags == {"k": "v"} and run.asset_selection == ["a/b"] and run.stats is None


def test_metadata_values() -> None:
    assert parse_metadata_entry(
        {"__typename": "IntMetadataEntry", "intValue": None, "intRepr": "9999999999"}
    ) == (9999999999)
    assert parse_metadata_entry({"__typename": "JsonMetadataEntry", "jsonString": '{"a": 1}'}) == {"a": 1}
    assert parse_metadata_entry({"__typename": "TextMetadataEntry", "text": "t"}) == "t"


@pytest.mark.parametrize(
    ("result", "error", "status", "code"),
    [
        ({"__typename": "RunNotFoundError", "message": "no"}, DagsterNotFound, 404, "RESOURCE_NOT_FOUND"),
        ({"__typename": "PipelineNotFoundError", "message": "m"}, DagsterNotFound, 404, "RESOURCE_NOT_FOUND"),
        ({"__typename": "InvalidSubsetError", "message": "m"}, DagsterInvalidRequest, 422,
         "VALIDATION_ERROR"),
        ({"__typename": "RunConflict", "message": "dup"}, DagsterConflict, 409, "DUPLICATE_RESOURCE"),
        ({"__typename": "SomethingNew", "message": "x"}, DagsterRunError, 500, "PIPELINE_EXECUTION_ERROR"),
    ],
)  # fmt: skip
def test_error_mapping(result: dict[str, str], error: type, status: int, code: str) -> None:
    with pytest.raises(error) as raised:
        raise_for_result(result, {"run_id": "r1"})
    assert raised.value.http_status == status and raised.value.error_code == code
    assert raised.value.message == result["message"]
    assert raised.value.details == {"run_id": "r1", "dagster_error": result["__typename"]}


def test_python_errors_keep_their_text_out_of_the_response() -> None:
    text = "OperationalError: connection to postgresql://etl:s3cret@db/x failed\n  File ..."
    with pytest.raises(DagsterRunError) as raised:
        raise_for_result({"__typename": "PythonError", "message": text}, {"run_id": "r1"})
    error = raised.value
    assert error.http_status == 500 and error.error_code == "PIPELINE_EXECUTION_ERROR"
    assert "s3cret" not in error.message and "s3cret" not in repr(error.details)
    assert "s3cret" in str(error)  # the server log still gets Dagster's text


def test_invalid_run_config_lists_the_errors() -> None:
    result = {
        "__typename": "RunConfigValidationInvalid",
        "pipelineName": "j",
        "errors": [{"message": 'Missing required config entry "ops"', "reason": "MISSING_REQUIRED_FIELD",
                    "path": ["root"]}],
    }  # fmt: skip
    with pytest.raises(DagsterInvalidRequest, match="Missing required config") as raised:
        raise_for_result(result)
    assert raised.value.details["errors"][0]["reason"] == "MISSING_REQUIRED_FIELD"


def test_nothing_listening_is_unavailable() -> None:
    with (
        DagsterClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client,
        pytest.raises(DagsterUnavailable) as raised,
    ):
        client.ping()
    assert raised.value.http_status == 503 and raised.value.aggregator_code == "CONN_001"


@pytest.fixture
def failing_server() -> Iterator[str]:
    """A real HTTP server that answers like a proxy in front of a dead webserver (502)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(502)
            self.end_headers()
            self.wfile.write(b"Bad Gateway")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_5xx_is_unavailable(failing_server: str) -> None:
    with DagsterClient(failing_server, timeout=5) as client, pytest.raises(DagsterUnavailable, match="502"):
        client.get_run("r1")


def test_workspace_index_finds_names_across_locations() -> None:
    nodes = [
        {"name": "__repository__", "location": {"name": "aetl"},
         "jobs": [{"name": "__ASSET_JOB"}, {"name": "warehouse_job"}],
         "assetNodes": [{"assetKey": {"path": ["calendar_days"]}}],
         "schedules": [], "sensors": [{"name": "log_failed_runs", "id": "s1"}]},
        {"name": "__repository__", "location": {"name": "aetl_datamarts"},
         "jobs": [{"name": "__ASSET_JOB"}, {"name": "datamarts_job"}],
         "assetNodes": [{"assetKey": {"path": ["orders_daily"]}}],
         "schedules": [{"name": "datamarts_nightly", "id": "x"}], "sensors": []},
    ]  # fmt: skip
    index = WorkspaceIndex.from_repositories(nodes)
    aetl = RepositoryAddress("aetl", "__repository__")
    marts = RepositoryAddress("aetl_datamarts", "__repository__")
    assert index.jobs["__ASSET_JOB"] == [aetl, marts]
    assert index.jobs["datamarts_job"] == [marts]
    assert index.assets["orders_daily"] == marts
    assert index.schedules["datamarts_nightly"][0] == marts
    assert index.sensors["log_failed_runs"] == (aetl, {"name": "log_failed_runs", "id": "s1"})


def test_latest_runs_query_is_valid_for_several_values(graphql_schema: GraphQLSchema) -> None:
    from api.dagster_client.client import build_latest_runs_query

    for count in (1, 3):
        assert validate(graphql_schema, parse(build_latest_runs_query(count))) == []


def test_a_job_in_several_locations_is_never_guessed() -> None:
    from api.dagster_client import DagsterInvalidRequest

    nodes = [
        {"name": "__repository__", "location": {"name": loc}, "jobs": [{"name": "same_job"}],
         "assetNodes": [], "schedules": [], "sensors": []}
        for loc in ("aetl_pipelines", "aetl_datamarts")
    ]  # fmt: skip
    client = DagsterClient("http://127.0.0.1:1")
    client._index = WorkspaceIndex.from_repositories(nodes)  # noqa: SLF001
    with pytest.raises(DagsterInvalidRequest) as refused:
        client.locate_job("same_job")
    assert refused.value.details["locations"] == ["aetl_datamarts", "aetl_pipelines"]
    with_default = DagsterClient("http://127.0.0.1:1", location="aetl_pipelines")
    with_default._index = client._index  # noqa: SLF001
    assert with_default.locate_job("same_job") == RepositoryAddress("aetl_pipelines", "__repository__")
    client.close()
    with_default.close()


def test_a_stop_overwritten_by_a_sensor_tick_is_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dagster's sensor daemon writes back the state it read just before a tick: a stop landing in
    # between reads STOPPED once, then RUNNING again. The client stops again until it holds.
    from api.dagster_client.models import InstigationStatus, Sensor

    client = DagsterClient("http://127.0.0.1:9")
    seen = iter(["STOPPED", "RUNNING", "STOPPED", "STOPPED", "STOPPED", "STOPPED"])
    stops: list[str] = []

    def sensor(name: str) -> Sensor:
        status = InstigationStatus(next(seen))
        return Sensor(name=name, location="aetl", status=status, default_status=InstigationStatus.RUNNING,
                      min_interval_seconds=1)  # fmt: skip

    monkeypatch.setattr(client, "_find", lambda kind, name: (None, {"id": "sensor-origin-id"}))
    monkeypatch.setattr(
        client,
        "execute",
        lambda query, variables: (
            stops.append(variables["id"]) or {"stopSensor": {"__typename": "StopSensorMutationResult"}}
        ),
    )
    monkeypatch.setattr(client, "get_sensor", sensor)
    assert client.stop_sensor("watch_x", settle_seconds=0.5).status == InstigationStatus.STOPPED
    assert stops == ["sensor-origin-id", "sensor-origin-id"]
    client.close()


def test_a_run_launched_after_its_cancel_in_the_queue_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dagster's queue daemon reads a run QUEUED, the cancel marks it CANCELED, the daemon then writes
    # STARTING over it and launches it (dagster-io/dagster#3323). The client terminates it once more.
    from types import SimpleNamespace

    client = DagsterClient("http://127.0.0.1:9")
    statuses = iter(["CANCELED", "STARTING", "STARTED"])
    answers = iter([
        {"__typename": "TerminateRunSuccess", "run": {"status": "CANCELED"}},  # the cancel in the queue
        {"__typename": "TerminateRunFailure", "message": "starting", "run": {"status": "STARTING"}},
        {"__typename": "TerminateRunSuccess", "run": {"status": "CANCELING"}},  # SIGTERM to the worker
    ])  # fmt: skip
    terminated = threading.Event()
    policies: list[str] = []

    def execute(query: str, variables: dict[str, str]) -> dict[str, object]:
        policies.append(variables["terminatePolicy"])
        answer = next(answers)
        if answer["run"]["status"] == "CANCELING":
            terminated.set()
        return {"terminateRun": answer}

    monkeypatch.setattr(client, "execute", execute)
    monkeypatch.setattr(client, "get_run", lambda run_id: SimpleNamespace(status=RunStatus(next(statuses))))
    monkeypatch.setattr("api.dagster_client.client.time.sleep", lambda s: None)
    assert client.terminate_run("run-1") == RunStatus.CANCELED
    assert terminated.wait(5), policies
    assert policies == ["SAFE_TERMINATE"] * 3
    client.close()


def test_a_cancel_in_the_queue_that_holds_is_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    client = DagsterClient("http://127.0.0.1:9")
    calls: list[str] = []
    monkeypatch.setattr(client, "execute", lambda q, v: calls.append("terminate") or {
        "terminateRun": {"__typename": "TerminateRunSuccess", "run": {"status": "CANCELED"}}})  # fmt: skip
    monkeypatch.setattr(client, "get_run", lambda run_id: calls.append("get") or SimpleNamespace(
        status=RunStatus.CANCELED))  # fmt: skip
    assert client.terminate_run("run-1", watch_queued=0.6) == RunStatus.CANCELED
    time.sleep(1.0)
    assert calls[0] == "terminate" and set(calls[1:]) == {"get"} and len(calls) >= 2
    client.close()
