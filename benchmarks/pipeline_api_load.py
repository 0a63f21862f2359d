"""GET /pipelines and GET /pipelines/{id}/runs under concurrent clients, with many pipelines and runs.

    .venv/bin/python benchmarks/pipeline_api_load.py [--pipelines 1000] [--runs 10000] [--clients 50]
                                                      [--requests 1000] [--slow-requests N] [--warmup N]

Starts its own stack (free ports, own databases, rate limits off), creates the pipelines through the
API, and seeds the runs straight into Dagster's run storage through the Dagster instance API
(`DagsterInstance.add_run`, tagged like API-launched runs, status SUCCESS, no events): launching
10,000 real runs would take hours on 2 cores, and the endpoints read runs from that storage the same
way whatever made them. Runs are spread over the 20 newest pipelines (the first page of the list,
so every row of it has a `last_run`). Prints p50/p95/p99/max and errors per endpoint (as clients
see them, through the API's response cache; then again with `Cache-Control: no-cache`, which the
app answers every time), next to two baselines measured the same way: the API's cheapest route
(`GET /health`) and Dagster's own GraphQL `runsOrError` for the same runs. The clients are
benchmarks/http_load.py (raw keep-alive HTTP/1.1 on uvloop, ~0.1 ms of CPU per request): httpx's
AsyncClient cost ~5 ms per request and measured itself.

`--runs 0` with `--running --reuse` measures again over what an earlier run seeded.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_stack import RUNNING_HELP, admin_headers, percentile, running_stack  # noqa: E402
from http_load import run_load  # noqa: E402

from api.dagster_client import queries  # noqa: E402
from orchestration.lib.env import patched_environ  # noqa: E402
from orchestration.specs.pipeline_plan import (  # noqa: E402
    TAG_PIPELINE,
    TAG_TRIGGER,
    TAG_TRIGGERED_BY,
    TAG_VERSION,
    job_name,
)

BODY = {
    "name": "Load test pipeline",
    "sources": [{"id": "orders", "type": "clickhouse", "table": "shop.orders"}],
    "transformations": [{"id": "daily", "sql": "SELECT day, count() AS n FROM orders GROUP BY day"}],
    "targets": [{"id": "out", "table": "orders_daily", "mode": "replace"}],
    "schedule": "0 2 * * *",
}


def create_pipelines(api: str, headers: dict[str, str], count: int) -> list[str]:
    def one(i: int) -> str:
        response = httpx.post(
            f"{api}/api/v1/pipelines", headers=headers, json={**BODY, "name": f"Load {i}"}, timeout=60
        )
        response.raise_for_status()
        return str(response.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def seed_runs(dagster_home: Path, pg_url: str, pipeline_ids: list[str], count: int, user_id: str) -> None:
    from dagster import DagsterInstance
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    with (
        patched_environ({"DAGSTER_PG_URL": pg_url}),
        DagsterInstance.from_config(str(dagster_home)) as instance,
    ):
        for i in range(count):
            pipeline_id = pipeline_ids[i % len(pipeline_ids)]
            instance.add_run(
                DagsterRun(
                    job_name=job_name(pipeline_id),
                    run_id=str(uuid.uuid4()),
                    status=DagsterRunStatus.SUCCESS,
                    tags={
                        TAG_PIPELINE: pipeline_id,
                        TAG_VERSION: "1",
                        TAG_TRIGGERED_BY: user_id,
                        TAG_TRIGGER: "benchmark",
                    },
                )
            )


def report(label: str, latencies: list[float], errors: int, rate: float, samples: list[str]) -> None:
    print(
        f"  {label:<48} p50 {percentile(latencies, 50):7.1f} ms  p95 {percentile(latencies, 95):7.1f} ms  "
        f"p99 {percentile(latencies, 99):7.1f} ms  max {max(latencies):7.1f} ms  errors {errors}  "
        f"{rate:6.1f} req/s"
    )
    for sample in samples[:3]:
        print(f"    error: {sample}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=1000, help="per endpoint")
    parser.add_argument(
        "--warmup", type=int, default=0, help="requests per route sent first and not counted (0: none)"
    )
    parser.add_argument(
        "--slow-requests",
        type=int,
        help="per endpoint for the no-cache and Dagster cases (default: --requests); at ~80 req/s and "
        "~8 req/s they would take minutes where the cached routes take seconds",
    )
    parser.add_argument("--running", action="store_true", help=RUNNING_HELP)
    parser.add_argument(
        "--reuse", action="store_true", help="with --running: measure over the pipelines already there"
    )
    args = parser.parse_args()
    with running_stack(args.running, AETL_RATE_LIMIT_ENABLED="false") as stack:
        headers = admin_headers(stack)
        me = httpx.get(f"{stack.api_url}/api/v1/users/me", headers=headers).json()
        started = time.monotonic()
        if args.reuse:
            listed = httpx.get(f"{stack.api_url}/api/v1/pipelines", headers=headers, timeout=60).json()
            newest = [p["id"] for p in listed["items"]]
            print(f"reusing the {listed['total']} pipelines already there")
        else:
            ids = create_pipelines(stack.api_url, headers, args.pipelines)
            print(f"created {len(ids)} pipelines through the API in {time.monotonic() - started:.1f} s")
            newest = ids[-20:]
        started = time.monotonic()
        seed_runs(stack.settings.dagster_home, stack.settings.dagster_pg_url, newest, args.runs, me["id"])
        print(f"seeded {args.runs} runs into Dagster's run storage in {time.monotonic() - started:.1f} s")
        hot = newest[-1]
        runs_per = args.runs // 20 if args.runs else "seeded"
        runs_filter = {"tags": [{"key": TAG_PIPELINE, "value": hot}]}
        graphql = {
            "query": queries.LIST_RUNS_WITH_METADATA,
            "variables": {"filter": runs_filter, "limit": 20},
        }
        fresh = {**headers, "Cache-Control": "no-cache"}  # past the response cache: the app every time
        runs_url = f"{stack.api_url}/api/v1/pipelines/{hot}/runs"
        cases = [
            ("baseline: GET /health", "GET", f"{stack.api_url}/health", None, {}),
            ("GET /api/v1/pipelines (limit 20)", "GET", f"{stack.api_url}/api/v1/pipelines", None, headers),
            (f"GET /api/v1/pipelines/{{id}}/runs ({runs_per} runs)", "GET", runs_url, None, headers),
            ("same /pipelines, no-cache", "GET", f"{stack.api_url}/api/v1/pipelines", None, fresh),
            ("same /runs, no-cache", "GET", runs_url, None, fresh),
            ("baseline: Dagster GraphQL runsOrError (same)", "POST", f"{stack.settings.dagster_url}/graphql",
             graphql, {}),
        ]  # fmt: skip
        slow = args.slow_requests or args.requests
        print(f"{args.clients} concurrent clients, {args.requests} requests per route ({slow}: slow ones):")
        for label, method, url, body, case_headers in cases:
            count = slow if "no-cache" in label or "Dagster" in label else args.requests
            if args.warmup:  # the first requests pay cold caches (response cache, run cache, pool)
                cold = run_load(
                    method, url, clients=args.clients, requests=args.warmup, headers=case_headers, json=body
                )
                print(f"  (warm-up: {args.warmup} requests, slowest {max(cold.latencies_ms):.1f} ms)")
            result = run_load(
                method, url, clients=args.clients, requests=count, headers=case_headers, json=body
            )
            report(label, result.latencies_ms, result.errors, result.rate, result.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
