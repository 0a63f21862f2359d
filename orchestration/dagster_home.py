"""Prepare a DAGSTER_HOME for the webserver and the daemon (called by the stack supervisor and tests).

The repo's `dagster.yaml` is the template; `${DAGSTER_HOME}` in it becomes the absolute path of the
home, everything secret stays an `env:` reference resolved by Dagster at start-up.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from orchestration.lib.env import patched_environ
from orchestration.lib.pg import database_name, ensure_pg_database

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGSTER_YAML_TEMPLATE = REPO_ROOT / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"


RUN_LAUNCHERS = ("warm", "default")
RUN_WORKER_SOCKET = "run_workers.sock"
DEFAULT_RUN_LAUNCHER = {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}


def run_worker_socket(dagster_home: Path) -> Path:
    """Where the warm run-worker server listens (the template's `socket_path`)."""
    return dagster_home.resolve() / RUN_WORKER_SOCKET


def render_dagster_yaml(template: str, dagster_home: Path, run_launcher: str = "warm") -> str:
    """The instance config for one home: the path placeholder is substituted; `run_launcher`
    "default" swaps the template's warm launcher for Dagster's DefaultRunLauncher."""
    if run_launcher not in RUN_LAUNCHERS:
        raise ValueError(f"run launcher must be one of {RUN_LAUNCHERS}, not {run_launcher!r}")
    rendered = template.replace("${DAGSTER_HOME}", str(dagster_home.resolve()))
    if run_launcher == "default":
        document = yaml.safe_load(rendered)
        document["run_launcher"] = DEFAULT_RUN_LAUNCHER
        rendered = "# rendered with AETL_RUN_LAUNCHER=default\n" + yaml.safe_dump(document, sort_keys=False)
    return rendered


def prepare_dagster_home(
    dagster_home: Path, pg_url: str | None = None, run_launcher: str | None = None
) -> Path:
    """Create the home, write its dagster.yaml (only if changed) and make sure the storage DB exists.

    `pg_url` defaults to DAGSTER_PG_URL, the variable dagster.yaml reads; pass False-y to skip the DB.
    `run_launcher` ("warm" or "default") defaults to AETL_RUN_LAUNCHER, else "warm".
    Returns the path of the rendered dagster.yaml.
    """
    dagster_home = dagster_home.resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "compute_logs").mkdir(exist_ok=True)
    target = dagster_home / "dagster.yaml"
    launcher = run_launcher or os.environ.get("AETL_RUN_LAUNCHER") or "warm"
    rendered = render_dagster_yaml(DAGSTER_YAML_TEMPLATE.read_text(), dagster_home, launcher)
    # Rewriting an unchanged file would make a running webserver think the instance changed.
    if not target.exists() or target.read_text() != rendered:
        tmp = target.with_suffix(".yaml.tmp")
        tmp.write_text(rendered)
        tmp.replace(target)
    url = pg_url if pg_url is not None else os.environ.get("DAGSTER_PG_URL")
    if url:
        ensure_pg_database(url)
        migrate_instance_storage(dagster_home, url)
    return target


def migrate_instance_storage(dagster_home: Path, pg_url: str) -> bool:
    """Create or migrate Dagster's tables once per Dagster version and database (False: already done).

    Done here, before the webserver and the daemon start, so they never race to create the schema
    and never refuse to start after a Dagster upgrade ("run dagster instance migrate").
    """
    stamp_path = dagster_home / ".aetl_storage_stamp"
    stamp = f"dagster {importlib.metadata.version('dagster')} database {database_name(pg_url)}\n"
    if stamp_path.exists() and stamp_path.read_text() == stamp:
        return False
    import dagster  # here: ~2 s of imports, paid only when the stamp changed
    from dagster_postgres import DagsterPostgresStorage

    # dagster.yaml turns table auto-creation off for every process; only this step creates them
    DagsterPostgresStorage(pg_url, should_autocreate_tables=True)  # NullPool: holds no connection
    with (
        patched_environ({"DAGSTER_PG_URL": pg_url}),
        dagster.DagsterInstance.from_config(str(dagster_home)) as instance,
    ):
        instance.upgrade()
    stamp_path.write_text(stamp)
    return True


@dataclass(frozen=True)
class CodeLocation:
    name: str
    module: str


def workspace_locations(workspace_yaml: Path = WORKSPACE_YAML) -> list[CodeLocation]:
    """The code locations of the repo's workspace.yaml (the list `dagster dev` also uses)."""
    entries = yaml.safe_load(workspace_yaml.read_text())["load_from"]
    return [
        CodeLocation(entry["python_module"]["location_name"], entry["python_module"]["module_name"])
        for entry in entries
    ]


def render_grpc_workspace(dagster_home: Path, servers: list[tuple[CodeLocation, str, int]]) -> Path:
    """A workspace pointing at running code servers (one per location, shared by webserver and daemon).

    Shared servers mean one load of the code per location, and a reload through the webserver is
    seen by the daemon too, so runs it dequeues use the same definitions the API just deployed.
    """
    document = {
        "load_from": [
            {"grpc_server": {"host": host, "port": port, "location_name": location.name}}
            for location, host, port in servers
        ]
    }
    target = dagster_home.resolve() / "workspace.yaml"
    rendered = yaml.safe_dump(document, sort_keys=False)
    if not target.exists() or target.read_text() != rendered:
        target.write_text(rendered)
    return target


def main() -> None:
    """`python -m orchestration.dagster_home`: prepare $DAGSTER_HOME with $DAGSTER_PG_URL."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise SystemExit("DAGSTER_HOME is not set")
    if not os.environ.get("DAGSTER_PG_URL"):
        raise SystemExit("DAGSTER_PG_URL is not set")
    print(f"dagster home ready: {prepare_dagster_home(Path(home))}")


if __name__ == "__main__":
    main()
