"""The dbt project as Dagster sees it, and the manifest it needs before the code location loads.

dagster-dbt builds assets from `target/manifest.json`. `dagster dev` would parse the project itself
(`prepare_if_dev`); the webserver and daemon started by the stack do not, so the supervisor calls
`prepare_dbt_manifest()` (`python -m orchestration.dbt`) first: `dbt parse` only when a project file
is newer than the manifest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from orchestration.lib.clickhouse_url import dbt_env_for_clickhouse, default_clickhouse_url

if TYPE_CHECKING:
    from dagster_dbt import DbtProject

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# Project inputs that change the manifest (dbt's own folders + config files).
_SOURCE_DIRS = ("models", "seeds", "macros", "snapshots", "tests", "analyses")
_SOURCE_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml", "selectors.yml")


class DbtManifestMissing(RuntimeError):
    """The code location cannot build datamart assets without a parsed dbt project."""


def dbt_executable() -> str:
    """The venv's dbt: run workers may start without the venv on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def data_dir() -> Path:
    return Path(os.environ.get("AETL_DATA_DIR") or REPO_ROOT / ".data").resolve()


def datamart_model_path() -> str:
    """The dbt model path of generated datamarts, relative to dbt_project/ (dbt_project.yml reads it).

    Inside the project (gitignored `generated/`): dbt writes compiled files at target/<original path>,
    which for an absolute model path is the model file itself. One folder per data folder, so the test
    stack's datamarts never show up in the `make run` stack (both share the one dbt_project/).
    """
    key = hashlib.sha256(str(data_dir()).encode()).hexdigest()[:12]
    return f"generated/{key}"


def datamart_models_dir() -> Path:
    """Where the API writes generated datamart models."""
    return DBT_PROJECT_DIR / datamart_model_path()


def dbt_target_dir() -> Path:
    """The manifest the code location loads: per stack, since it includes that stack's datamarts."""
    return data_dir() / "dbt" / "target"


def dbt_paths_env() -> dict[str, str]:
    """What every dbt invocation of the platform needs to see the same project as the code location."""
    return {"AETL_DATAMARTS_MODEL_PATH": datamart_model_path()}


def build_dbt_project(project_dir: Path = DBT_PROJECT_DIR) -> DbtProject:
    # Imported here: dagster-dbt costs ~5 s of imports, the start-up check below needs none of it.
    from dagster_dbt import DbtProject

    return DbtProject(project_dir=project_dir, profiles_dir=project_dir, target_path=dbt_target_dir())


def manifest_path_of(project_dir: Path) -> Path:
    """Where `dbt parse` writes the manifest (the platform's project: per data folder)."""
    if project_dir.resolve() == DBT_PROJECT_DIR:
        return dbt_target_dir() / "manifest.json"
    return project_dir / "target" / "manifest.json"


def newest_source_mtime(project_dir: Path, extra_dirs: tuple[Path, ...] = ()) -> float:
    """Latest modification time among the files that feed `dbt parse` (0 when there are none).

    Folder times count too, so a deleted model makes the manifest stale.
    """
    paths = [project_dir / name for name in _SOURCE_FILES]
    roots = [project_dir / folder for folder in _SOURCE_DIRS] + list(extra_dirs)
    for root in roots:
        if root.is_dir():
            paths.append(root)
            paths.extend(p for p in root.rglob("*"))
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def manifest_is_current(project_dir: Path, manifest_path: Path, extra_dirs: tuple[Path, ...] = ()) -> bool:
    return manifest_path.exists() and manifest_path.stat().st_mtime >= newest_source_mtime(
        project_dir, extra_dirs
    )


def dbt_warehouse_env(clickhouse_url: str | None = None) -> dict[str, str]:
    """Variables profiles.yml reads, derived from the one warehouse URL (CLICKHOUSE_URL)."""
    url = clickhouse_url or os.environ.get("CLICKHOUSE_URL") or default_clickhouse_url()
    return dbt_env_for_clickhouse(url)


def prepare_dbt_manifest(project_dir: Path = DBT_PROJECT_DIR, force: bool = False) -> Path:
    """Run `dbt parse` if the manifest is missing or older than the project; return its path."""
    if not (project_dir / "dbt_project.yml").exists():
        raise DbtManifestMissing(f"no dbt project at {project_dir} (dbt_project.yml missing)")
    manifest_path = manifest_path_of(project_dir)
    if not force and manifest_is_current(project_dir, manifest_path, (datamart_models_dir(),)):
        return manifest_path
    env = {
        **os.environ,
        **dbt_warehouse_env(),
        **dbt_paths_env(),
        "DBT_TARGET_PATH": str(manifest_path.parent),
        "DBT_PROFILES_DIR": str(project_dir),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    # Parsing never connects to the warehouse; it only renders profiles.yml and the models.
    result = subprocess.run(
        [dbt_executable(), "parse", "--quiet"],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not manifest_path.exists():
        raise DbtManifestMissing(
            f"`dbt parse` failed in {project_dir} (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return manifest_path


def require_manifest(project: DbtProject) -> Path:
    """The manifest path, or a clear error telling how to create it (the code location fails loading)."""
    project.prepare_if_dev()
    if not project.manifest_path.exists():
        raise DbtManifestMissing(
            f"dbt manifest not found at {project.manifest_path}. Run `python -m orchestration.dbt` "
            "(the stack supervisor does this at start-up) and reload the code location."
        )
    return project.manifest_path


def main() -> None:
    started = time.monotonic()
    path = prepare_dbt_manifest(force="--force" in sys.argv)
    print(f"dbt manifest ready: {path} ({time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    main()
