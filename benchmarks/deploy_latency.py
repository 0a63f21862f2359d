"""Deploy -> the pipeline's asset visible in Dagster's GraphQL, p50 over several deploys.

    .venv/bin/python benchmarks/deploy_latency.py [--deploys 10]

Starts its own stack (free ports, own databases), creates one pipeline per deploy through the API and
times, for each: `POST /pipelines/{id}/deploy` answered; the asset `pipelines/<id>/<table>` visible in
the `aetl_pipelines` location through GraphQL; `GET /pipelines/{id}/status` saying `deployed`. The
native baseline is a bare `reloadRepositoryLocation` of the same location (what every deploy costs
at least), timed the same way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_stack import RUNNING_HELP, admin_headers, percentile, running_stack  # noqa: E402

from api.dagster_client import DagsterClient  # noqa: E402
from orchestration.specs.pipeline_plan import LOCATION  # noqa: E402


def body(i: int) -> dict[str, object]:
    return {
        "name": f"Deploy latency {i}",
        "sources": [{"id": "orders", "type": "clickhouse", "table": "shop.orders"}],
        "targets": [{"id": "out", "table": f"orders_copy_{i}", "mode": "replace"}],
        "schedule": "0 2 * * *",
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--running", action="store_true", help=RUNNING_HELP)
    args = parser.parse_args()
    with (
        running_stack(args.running, AETL_RATE_LIMIT_ENABLED="false") as stack,
        DagsterClient(stack.settings.dagster_url, timeout=300) as dagster,
    ):
        headers = admin_headers(stack)
        api = f"{stack.api_url}/api/v1"
        answered, visible, deployed, reloads = [], [], [], []
        for _ in range(args.deploys):
            started = time.perf_counter()
            dagster.reload_location(LOCATION)
            reloads.append(time.perf_counter() - started)
        for i in range(args.deploys):
            pipeline_id = httpx.post(f"{api}/pipelines", headers=headers, json=body(i), timeout=60).json()[
                "id"
            ]
            key = f"pipelines/{pipeline_id}/orders_copy_{i}"
            started = time.perf_counter()
            response = httpx.post(f"{api}/pipelines/{pipeline_id}/deploy", headers=headers, timeout=60)
            response.raise_for_status()
            answered.append(time.perf_counter() - started)
            while key not in dagster.repository_contents(LOCATION).assets:
                time.sleep(0.1)
            visible.append(time.perf_counter() - started)
            while True:
                state = httpx.get(f"{api}/pipelines/{pipeline_id}/status", headers=headers, timeout=60).json()
                if state["data"]["deploy_status"] != "deploying":
                    break
                time.sleep(0.1)
            assert state["data"]["deploy_status"] == "deployed", state
            deployed.append(time.perf_counter() - started)
            print(
                f"  deploy {i + 1}: answered {answered[-1] * 1000:.0f} ms, "
                f"asset visible {visible[-1]:.2f} s, status deployed {deployed[-1]:.2f} s"
            )
        for label, values in (
            ("baseline: reloadRepositoryLocation alone", reloads),
            ("POST /deploy answered", answered),
            ("deploy -> asset visible in GraphQL", visible),
            ("deploy -> status deployed", deployed),
        ):
            print(
                f"{label:<42} p50 {percentile(values, 50):6.2f} s  p95 {percentile(values, 95):6.2f} s  "
                f"max {max(values):6.2f} s  (n={len(values)})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
