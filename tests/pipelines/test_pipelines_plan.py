"""The document -> Dagster plan and definitions factory, without a server (pure data + Dagster objects)."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import AssetKey, DefaultScheduleStatus, Definitions

from orchestration.defs.pipelines import build_definitions
from orchestration.specs.pipeline import PipelineDocument
from orchestration.specs.pipeline_plan import (
    LOCATION,
    DeployedPipeline,
    job_name,
    op_name,
    plan_location,
    run_config,
    target_asset_key,
)


def document(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Orders daily",
        "sources": [{"id": "orders", "type": "clickhouse", "table": "shop.orders"}],
        "transformations": [
            {"id": "daily", "sql": "SELECT day, sum(amount) AS amount FROM orders GROUP BY day"}
        ],
        "targets": [{"id": "out", "table": "orders_daily", "mode": "replace"}],
        "schedule": "0 2 * * *",
        "triggers": [{"id": "hourly", "type": "cron", "cron": "0 * * * *", "enabled": False}],
    }
    body.update(overrides)
    return body


def row(pipeline_id: str, doc: Any, status: str = "active") -> DeployedPipeline:
    return DeployedPipeline(pipeline_id, f"name {pipeline_id}", status, f"pver_{pipeline_id}", 3, doc)


def test_names_are_dagster_safe_and_unique_per_pipeline() -> None:
    assert job_name("pipe_ab12") == "pipeline_pipe_ab12"
    assert LOCATION == "aetl_pipelines"
    doc = PipelineDocument.parse(document())
    key = target_asset_key("pipe_ab12", doc.targets[0])
    assert key == ("pipelines", "pipe_ab12", "orders_daily")
    assert run_config("pipe_ab12", doc, {"day": "2026-01-01"}) == {
        "ops": {op_name(key): {"config": {"parameters": {"day": "2026-01-01"}}}}
    }


def test_plan_has_lineage_schedules_and_pipeline_to_pipeline_edges() -> None:
    downstream = document(
        name="Reads the first pipeline's table",
        sources=[{"id": "daily", "type": "clickhouse", "table": "orders_daily"}],
        transformations=[],
        targets=[{"id": "copy", "table": "orders_copy"}],
        schedule=None,
        triggers=[],
    )
    plan = plan_location([row("pipe_a", document()), row("pipe_b", downstream, status="paused")])
    assert plan.failures == {}
    first, second = plan.pipelines
    assert first.targets[0].deps == (("warehouse", "shop", "orders"),)
    # pipe_b reads the table pipe_a loads: its upstream is pipe_a's asset, not an external table
    assert second.targets[0].deps == (("pipelines", "pipe_a", "orders_daily"),)
    assert plan.external_keys == [("warehouse", "shop", "orders")]
    assert [(s.name, s.cron, s.running) for s in first.schedules] == [
        ("pipeline_pipe_a__schedule", "0 2 * * *", True),
        ("pipeline_pipe_a__hourly", "0 * * * *", False),
    ]
    assert first.tags == {
        "aetl/pipeline_id": "pipe_a",
        "aetl/pipeline_version": "3",
        "aetl/pipeline_version_id": "pver_pipe_a",
    }


def test_a_paused_pipeline_has_its_schedules_stopped() -> None:
    plan = plan_location([row("pipe_p", document(), status="paused")])
    assert [s.running for s in plan.pipelines[0].schedules] == [False, False]


def test_a_broken_document_is_left_out_with_the_reason() -> None:
    broken = document(schedule="not a cron")
    plan = plan_location([row("pipe_ok", document()), row("pipe_bad", broken), row("pipe_junk", {"x": 1})])
    assert [p.pipeline_id for p in plan.pipelines] == ["pipe_ok"]
    assert "schedule" in plan.failures["pipe_bad"] and "cron" in plan.failures["pipe_bad"]
    assert "pipe_junk" in plan.failures


def test_definitions_have_asset_job_schedule_and_external_upstream() -> None:
    plan = plan_location([row("pipe_a", document()), row("pipe_b", document(name="other"))])
    defs = build_definitions(plan)
    Definitions.validate_loadable(defs)
    assert plan.failures == {}
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"pipelines/pipe_a/orders_daily", "pipelines/pipe_b/orders_daily", "warehouse/shop/orders"} <= keys
    graph = defs.resolve_asset_graph()
    parents = graph.get(AssetKey(["pipelines", "pipe_a", "orders_daily"])).parent_keys
    assert parents == {AssetKey(["warehouse", "shop", "orders"])}
    job = defs.resolve_job_def("pipeline_pipe_a")
    assert job.tags["aetl/pipeline_id"] == "pipe_a" and job.tags["aetl/pipeline_version"] == "3"
    schedule = defs.resolve_schedule_def("pipeline_pipe_a__schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    assert (
        defs.resolve_schedule_def("pipeline_pipe_a__hourly").default_status == DefaultScheduleStatus.STOPPED
    )


@pytest.mark.parametrize("count", [0, 1])
def test_an_empty_or_single_location_loads(count: int) -> None:
    rows = [row("pipe_a", document())][:count]
    Definitions.validate_loadable(build_definitions(plan_location(rows)))
