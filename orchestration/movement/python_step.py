"""Python transformations (`def transform(df)`) in a separate, limited process.

The child gets CPU-time and address-space limits (setrlimit), a wall-clock timeout, its own process
group (killed whole on timeout) and an environment with none of the platform's variables, so a
step cannot read database URLs, keys or warehouse passwords. Data goes in and out as Arrow IPC files.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]

RUNNER = Path(__file__).with_name("sandbox_runner.py")


class PythonStepError(RuntimeError):
    """The transform failed; the message is the transform's own error text."""


@dataclass(frozen=True)
class StepLimits:
    cpu_seconds: int = 120
    memory_mb: int = 4096
    wall_seconds: int = 300

    @classmethod
    def from_environment(cls) -> StepLimits:
        return cls(
            int(os.environ.get("AETL_PYTHON_STEP_CPU_SECONDS", 120)),
            int(os.environ.get("AETL_PYTHON_STEP_MEMORY_MB", 4096)),
            int(os.environ.get("AETL_PYTHON_STEP_TIMEOUT_SECONDS", 300)),
        )


def _limit(limits: StepLimits) -> None:
    # runs in the child between fork and exec
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _clean_environment(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


def run_python_step(
    step_id: str, code: str, batches: Iterator[pa.RecordBatch], schema: pa.Schema, limits: StepLimits
) -> tuple[pa.Schema, Iterator[pa.RecordBatch], int]:
    """Write the input, run transform(df) in the child, and return (schema, batches, rows) of the output.

    The output batches are read from a memory-mapped file, so the caller can insert them one by one.
    """
    workdir = tempfile.mkdtemp(prefix=f"aetl_step_{step_id}_")
    in_path, out_path, code_path = (os.path.join(workdir, n) for n in ("in.arrow", "out.arrow", "step.py"))
    with pa.OSFile(in_path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    Path(code_path).write_text(code, encoding="utf-8")
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", str(RUNNER), in_path, out_path, code_path],
            cwd=workdir,
            env=_clean_environment(workdir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: _limit(limits),  # noqa: PLW1509 - setrlimit must run in the child
        )
        try:
            _, stderr = process.communicate(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise PythonStepError(
                f"python transformation {step_id} exceeded its time limit of {limits.wall_seconds} s"
            ) from None
        except BaseException:  # the run is being canceled (SIGTERM → interrupt): the step goes with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        text = stderr.decode(errors="replace").strip()
        if process.returncode != 0:
            raise PythonStepError(
                f"python transformation {step_id} failed: {_reason(process.returncode, text, limits)}"
            )
        source = pa.memory_map(out_path, "r")
        reader = pa.ipc.open_file(source)
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))

        def output() -> Iterator[pa.RecordBatch]:
            try:
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
            finally:
                source.close()
                _remove(workdir)

        return reader.schema, output(), rows
    except BaseException:
        _remove(workdir)
        raise


def _reason(code: int, stderr: str, limits: StepLimits) -> str:
    last = stderr.splitlines()[-1] if stderr else ""
    if code == -signal.SIGXCPU or code == -signal.SIGKILL and not last:
        return f"exceeded its CPU time limit of {limits.cpu_seconds} s"
    if "MemoryError" in stderr or "std::bad_alloc" in stderr:
        return f"exceeded its memory limit of {limits.memory_mb} MB ({last})"
    return last or f"the step process exited with code {code}"


def _remove(workdir: str) -> None:
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
