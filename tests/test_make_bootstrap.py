"""The first `make` works on a system Python that refuses pip (PEP 668, Debian/Ubuntu)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from api.core.config import REPO_ROOT

# a python3 like Debian's: no uv module, and pip refuses to install into the system
EXTERNALLY_MANAGED_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "uv" ]; then echo "No module named uv" >&2; exit 1; fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "error: externally-managed-environment" >&2; exit 1
fi
exec {python} "$@"
"""


def test_uv_is_bootstrapped_when_pip_is_externally_managed(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    python3 = fake_bin / "python3"
    real = Path(sys.base_prefix) / "bin" / "python3.11"
    python3.write_text(
        EXTERNALLY_MANAGED_PYTHON.format(python=real if real.exists() else shutil.which("python3"))
    )
    python3.chmod(0o755)
    bootstrap = tmp_path / "bootstrap"
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "uv", f"BOOTSTRAP={bootstrap}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    uv = done.stdout.strip().splitlines()[-1]
    assert uv == f"{bootstrap}/bin/uv"
    version = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("uv "), version.stderr
    # the second run reuses it
    again = subprocess.run(
        ["make", "-s", "--no-print-directory", "uv", f"BOOTSTRAP={bootstrap}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.stdout.strip() == uv


def test_ci_runs_lint_before_the_tests() -> None:
    commands = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.startswith("make")
    ]
    assert commands == ["make lint", "make test"]
