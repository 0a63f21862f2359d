"""Dagster run latency: submit -> SUCCESS, p50/p95 over N runs, per run launcher, with a breakdown.

    .venv/bin/python benchmarks/run_latency.py                      # own stacks: default launcher, then warm
    .venv/bin/python benchmarks/run_latency.py --launchers default  # one launcher only
    .venv/bin/python benchmarks/run_latency.py --jobs sleep_job@aetl --runs 20
    .venv/bin/python benchmarks/run_latency.py --dagster-url http://127.0.0.1:3000   # a running stack
    .venv/bin/python benchmarks/run_latency.py --dagster-url ... --api-url http://127.0.0.1:8000 \
        --api-pipeline <id>                                          # a pipeline through the REST API

Without `--dagster-url` the script starts one isolated stack per launcher (free ports, a temporary
data folder, own databases dropped afterwards) exactly as `make run` does, so "default" (Dagster's
DefaultRunLauncher: the code server spawns a fresh Python per run) and "warm" (AETL's
WarmForkRunLauncher) are measured by the same script in the same sitting.

A job is `name[@location]`; sleep_job runs with seconds=0 and warehouse_job with a 10-day calendar.
Runs go one after another (latency, not throughput). The breakdown comes from the run's own event
log timestamps (the webserver's clock, same machine):
  submit->queued       client submit to RUN_ENQUEUED (webserver: run + snapshots created)
  queued->launching    RUN_ENQUEUED to RUN_STARTING (the daemon's dequeue loop picks it up)
  launching->worker    RUN_STARTING to the worker's "Started process for run" (spawn or fork, imports,
                       instance)
  worker->start        worker started to RUN_START (load the code location and the job)
  start->steps         RUN_START to the last step's end
  steps->success       last step's end to RUN_SUCCESS
  success->seen        RUN_SUCCESS to the client seeing SUCCESS (poll interval 50 ms)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.dagster_client import DagsterClient, RunStatus  # noqa: E402
from api.dagster_client.models import RunEvent  # noqa: E402
from orchestration.run_launcher import RUN_LAUNCHER_TAG  # noqa: E402

RUN_CONFIGS: dict[str, dict[str, Any]] = {
    "sleep_job": {"ops": {"sleep_op": {"config": {"seconds": 0}}}},
    "warehouse_job": {"ops": {"calendar_days": {"config": {"start": "2024-01-01", "end": "2024-01-10"}}}},
}
PHASES = (
    "submit->queued",
    "queued->launching",
    "launching->worker",
    "worker->start",
    "start->steps",
    "steps->success",
    "success->seen",
)
POLL_SECONDS = 0.05
API_FINISHED = {"success", "failed", "failure", "cancelled", "canceled", "error"}


@dataclass
class Sample:
    total: float
    phases: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def breakdown(events: list[RunEvent], submitted_at: datetime, seen_at: datetime) -> dict[str, float]:
    """Phase durations (s) from the run's event log; a phase whose events are missing is left out."""

    def first(kind: str, message_prefix: str = "") -> datetime | None:
        return next(
            (
                e.timestamp
                for e in events
                if e.dagster_event_type == kind and e.message.startswith(message_prefix)
            ),
            None,
        )

    step_ends = [e.timestamp for e in events if e.dagster_event_type in ("STEP_SUCCESS", "STEP_FAILURE")]
    marks = [
        submitted_at,
        first("RUN_ENQUEUED"),
        first("RUN_STARTING"),
        first("ENGINE_EVENT", "Started process for run"),
        first("RUN_START"),
        max(step_ends) if step_ends else None,
        first("RUN_SUCCESS"),
        seen_at,
    ]
    phases = {}
    for name, begin, end in zip(PHASES, marks, marks[1:], strict=False):
        if begin is not None and end is not None:
            phases[name] = (end - begin).total_seconds()
    return phases


def run_dagster_job(
    client: DagsterClient, job: str, location: str | None, run_config: dict[str, Any], tags: dict[str, str]
) -> Sample:
    submitted_at = datetime.now().astimezone()
    started = time.perf_counter()
    run_id = client.launch_run(
        job,
        run_config=run_config,
        repository_location=location,
        tags={"aetl/benchmark": "run_latency", **tags},
    )
    run = client.wait_for_run(run_id, timeout=180, poll_interval=POLL_SECONDS)
    total = time.perf_counter() - started
    seen_at = datetime.now().astimezone()
    if run.status is not RunStatus.SUCCESS:
        raise RuntimeError(f"{job} run {run_id} ended {run.status.value}")
    return Sample(total, breakdown(client.get_run_logs(run_id).events, submitted_at, seen_at))


def api_token(api: httpx.Client, username: str, password: str) -> str:
    response = api.post("/api/v1/auth/login", json={"username": username, "password": password})
    response.raise_for_status()
    return str(response.json()["access_token"])


def run_api_pipeline(api: httpx.Client, client: DagsterClient, pipeline_id: str) -> Sample:
    """POST /pipelines/{id}/run, poll GET /pipelines/{id}/runs until that run has finished."""
    submitted_at = datetime.now().astimezone()
    started = time.perf_counter()
    response = api.post(f"/api/v1/pipelines/{pipeline_id}/run", json={})
    if response.status_code != 202:
        raise RuntimeError(f"run pipeline {pipeline_id}: HTTP {response.status_code} {response.text[:300]}")
    body = response.json()
    run_id = str(body["run_id"])
    deadline = started + 180
    while True:
        page = api.get(f"/api/v1/pipelines/{pipeline_id}/runs", params={"limit": 20})
        page.raise_for_status()
        item = next((i for i in page.json()["items"] if str(i["id"]) == run_id), None)
        if item is not None and str(item["status"]).lower() in API_FINISHED:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"pipeline run {run_id} not finished after 180 s")
        time.sleep(POLL_SECONDS)
    total = time.perf_counter() - started
    seen_at = datetime.now().astimezone()
    if str(item["status"]).lower() != "success":
        raise RuntimeError(f"pipeline run {run_id} ended {item['status']}")
    dagster_run_id = body.get("dagster_run_id") or item.get("dagster_run_id")
    phases = (
        breakdown(client.get_run_logs(dagster_run_id).events, submitted_at, seen_at) if dagster_run_id else {}
    )
    return Sample(total, phases)


def create_ten_row_pipeline(api_url: str, username: str, password: str) -> str:
    """A deployed 10-row warehouse pipeline (query source, SQL step, replace load) of the started stack."""
    with httpx.Client(base_url=api_url, timeout=60) as api:
        api.headers["Authorization"] = f"Bearer {api_token(api, username, password)}"
        body = {
            "name": "Run latency 10 rows",
            "sources": [{"id": "numbers", "type": "clickhouse",
                         "query": "SELECT number AS n, toString(number) AS s FROM numbers(10)"}],
            "transformations": [{"id": "double", "type": "sql",
                                 "sql": "SELECT n, n * 2 AS twice, s FROM numbers"}],
            "targets": [{"id": "out", "table": "run_latency_ten", "mode": "replace", "order_by": ["n"]}],
        }  # fmt: skip
        created = api.post("/api/v1/pipelines", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"create pipeline: HTTP {created.status_code} {created.text[:300]}")
        pipeline_id = str(created.json()["id"])
        api.post(f"/api/v1/pipelines/{pipeline_id}/deploy").raise_for_status()
        deadline = time.monotonic() + 180
        while True:
            state = api.get(f"/api/v1/pipelines/{pipeline_id}/status").json()["data"]["deploy_status"]
            if state == "deployed":
                return pipeline_id
            if state == "failed" or time.monotonic() > deadline:
                raise RuntimeError(f"deploy of the benchmark pipeline: {state}")
            time.sleep(0.5)


def summarize(label: str, samples: list[Sample]) -> None:
    failed = sum(1 for s in samples if s.total != s.total)
    totals = [s.total for s in samples if s.total == s.total]
    if failed:
        print(f"{label:<44} {failed} of {len(samples)} runs failed or timed out", flush=True)
    if not totals:
        return
    print(
        f"{label:<44} n={len(samples):<3} p50 {percentile(totals, 50):5.2f} s"
        f"  p95 {percentile(totals, 95):5.2f} s  min {min(totals):5.2f} s  max {max(totals):5.2f} s",
        flush=True,
    )
    medians = []
    for phase in PHASES:
        values = [s.phases[phase] for s in samples if phase in s.phases]
        if values:
            medians.append(f"{phase} {statistics.median(values):.2f}")
    print(f"{'':<44} median phases (s): " + ", ".join(medians), flush=True)


def interleaved(runs: int, warmup: int, variants: dict[str, Callable[[], Sample]]) -> dict[str, list[Sample]]:
    """Variants alternate run by run, so a busy neighbour on the machine slows them alike."""
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    for i in range(warmup + runs):
        for name, once in variants.items():
            try:
                sample = once()
            except (RuntimeError, TimeoutError) as error:  # counted, not fatal: an overloaded host fails runs
                print(f"{name}: run failed: {error}", flush=True)
                sample = Sample(float("nan"))
            if i >= warmup:
                samples[name].append(sample)
    return samples


def parse_job(spec: str) -> tuple[str, str | None]:
    job, _, location = spec.partition("@")
    return job, location or None


def bench_stack(dagster_url: str, args: argparse.Namespace, label: str) -> None:
    with DagsterClient(dagster_url, timeout=30) as client:
        if args.api_pipeline:
            with httpx.Client(base_url=args.api_url, timeout=30) as api:
                api.headers["Authorization"] = f"Bearer {api_token(api, args.username, args.password)}"
                name = f"{label}: pipeline {args.api_pipeline} via API"
                results = interleaved(
                    args.runs, args.warmup, {name: lambda: run_api_pipeline(api, client, args.api_pipeline)}
                )
                summarize(name, results[name])
        for spec in args.jobs.split(","):
            job, location = parse_job(spec)
            config = RUN_CONFIGS.get(job, {}) if args.run_config is None else args.run_config

            def variant(
                launcher: str,
                job: str = job,
                location: str | None = location,
                config: dict[str, Any] = config,
            ) -> Callable[[], Sample]:
                tags = {RUN_LAUNCHER_TAG: "default"} if launcher == "default" else {}
                return lambda: run_dagster_job(client, job, location, config, tags)

            variants = {f"{label}: {spec} [{v}]": variant(v) for v in args.variants.split(",")}
            for name, samples in interleaved(args.runs, args.warmup, variants).items():
                summarize(name, samples)


@contextlib.contextmanager
def own_stack(launcher: str, tmp: Path) -> Iterator[tuple[str, str]]:
    from orchestration.lib.env import patched_environ
    from tests.support import isolated_stack

    started = time.monotonic()
    # the API pipeline's poll asks every 50 ms: a latency measurement, not a test of the rate limit
    with (
        patched_environ({"AETL_RATE_LIMIT_ENABLED": "false"}),
        isolated_stack(tmp / launcher, AETL_RUN_LAUNCHER=launcher) as stack,
    ):
        print(f"-- stack (AETL_RUN_LAUNCHER={launcher}) up in {time.monotonic() - started:.1f} s", flush=True)
        yield stack.settings.dagster_url, stack.api_url


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2, help="runs before measuring (not counted)")
    parser.add_argument(
        "--jobs", default="sleep_job@aetl,warehouse_job@aetl", help="comma list of job[@location]"
    )
    parser.add_argument(
        "--run-config",
        type=json.loads,
        default=None,
        help="JSON run config for every job (default: a small config per known job)",
    )
    parser.add_argument(
        "--variants",
        default="default,warm",
        help="launch paths to alternate: default (tag aetl/run_launcher=default: the code "
        "server spawns the worker, as DefaultRunLauncher) and warm (forked from the warm server)",
    )
    parser.add_argument(
        "--stack-launcher",
        default="warm",
        choices=["warm", "default"],
        help="AETL_RUN_LAUNCHER of the stack this script starts (ignored with --dagster-url)",
    )
    parser.add_argument("--dagster-url", help="measure a running stack instead of starting one")
    parser.add_argument("--api-url", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--api-pipeline",
        help="pipeline id: also time POST /pipelines/{id}/run through the API ('auto': create a deployed "
        "10-row warehouse pipeline in the stack this script starts)",
    )
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="admin12345")
    args = parser.parse_args()
    # a background shell ignores SIGINT and SIGTERM would skip clean-up: both must stop the stack
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.dagster_url:
        bench_stack(args.dagster_url, args, "running stack")
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="aetl-run-latency-") as tmp,
        own_stack(args.stack_launcher, Path(tmp)) as (dagster_url, api_url),
    ):
        args.api_url = api_url
        if args.api_pipeline == "auto":
            args.api_pipeline = create_ten_row_pipeline(api_url, args.username, args.password)
        bench_stack(dagster_url, args, f"AETL_RUN_LAUNCHER={args.stack_launcher}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
