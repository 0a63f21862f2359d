"""Start-up time and idle memory of the whole stack, as `make run` starts it.

    .venv/bin/python benchmarks/stack_footprint.py [--idle 20]

Runs `python -m orchestration.stack run` on free ports with a temporary data folder and its own
databases (dropped afterwards), measures the time until `GET /health/detailed` answers 200 (every
component healthy: PostgreSQL, warehouse, Dagster GraphQL, daemon heartbeat), lets it idle, then
sums the memory of the whole process tree. RSS counts shared pages once per process; PSS shares
them out, so the PSS total is the honest "what the stack costs" figure. For reference, the same
script prints the cost of a bare Python interpreter (the floor of each process).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.core.config import REPO_ROOT  # noqa: E402
from orchestration.lib.pg import drop_pg_database  # noqa: E402
from orchestration.stack import child_env  # noqa: E402
from tests.support import isolated_settings  # noqa: E402


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/detailed", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def tree_memory(root: psutil.Process) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Per-process (RSS MB, PSS MB) by short command, and the totals."""
    rows: dict[str, tuple[float, float]] = {}
    total_rss = total_pss = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            name = " ".join(proc.cmdline()[1:4])[:70]
        except psutil.NoSuchProcess:
            continue
        rss, pss = info.rss / 2**20, getattr(info, "pss", info.rss) / 2**20
        total_rss += rss
        total_pss += pss
        key = name
        n = 2
        while key in rows:
            key, n = f"{name} #{n}", n + 1
        rows[key] = (rss, pss)
    return rows, total_rss, total_pss


def bare_python_pss() -> float:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    time.sleep(1)
    pss = psutil.Process(proc.pid).memory_full_info().pss / 2**20
    proc.kill()
    proc.wait()
    return pss


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=20.0, help="seconds to idle before measuring memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aetl-footprint-") as tmp:
        settings = isolated_settings(Path(tmp) / "data")
        api_url = f"http://127.0.0.1:{settings.api_port}"
        log_path = Path(tmp) / "stack.log"
        try:
            for label in ("cold (new databases, migrations)", "warm (everything set up)"):
                with log_path.open("wb") as log:
                    started = time.monotonic()
                    stack = subprocess.Popen(
                        [sys.executable, "-m", "orchestration.stack", "run"], cwd=REPO_ROOT,
                        env=child_env(settings), stdout=log, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                    try:
                        while not healthy(api_url):
                            if stack.poll() is not None or time.monotonic() - started > 300:
                                print(log_path.read_text()[-3000:])
                                return 1
                            # /health/detailed spends the anonymous budget (100/min): stay under it
                            time.sleep(0.7)
                        elapsed = time.monotonic() - started
                        print(f"make run -> all components healthy, {label}: {elapsed:.1f} s")
                        if label.startswith("warm"):
                            time.sleep(args.idle)
                            rows, rss, pss = tree_memory(psutil.Process(stack.pid))
                            print(f"idle memory after {args.idle:.0f} s ({len(rows)} processes):")
                            for name, (p_rss, p_pss) in sorted(rows.items(), key=lambda r: -r[1][1]):
                                print(f"  {p_pss:7.1f} MB PSS {p_rss:7.1f} MB RSS  {name}")
                            print(f"  total: {pss:.0f} MB PSS, {rss:.0f} MB RSS")
                            print(f"  baseline: a bare Python interpreter is {bare_python_pss():.1f} MB PSS")
                    finally:
                        stack.send_signal(signal.SIGTERM)
                        stack.wait(timeout=60)
        finally:
            drop_pg_database(settings.database_url)
            drop_pg_database(settings.dagster_pg_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
