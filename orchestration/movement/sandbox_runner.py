"""Runs one Python transformation in a child process: `python -I sandbox_runner.py IN OUT CODE`.

IN and OUT are Arrow IPC files; CODE defines `transform(df)` (pandas in, pandas out). Started by
`orchestration.movement.python_step` with CPU, memory and wall-clock limits and an environment that
holds none of the platform's secrets. Imports nothing from the platform on purpose.
"""

from __future__ import annotations

import sys
import traceback


def main() -> int:
    in_path, out_path, code_path = sys.argv[1:4]
    import pandas as pd
    import pyarrow as pa

    with pa.memory_map(in_path, "r") as source:
        frame = pa.ipc.open_file(source).read_all().to_pandas()
    with open(code_path, encoding="utf-8") as handle:
        code = handle.read()
    namespace: dict[str, object] = {"__name__": "transform_step", "pd": pd}
    try:
        exec(compile(code, "<transform>", "exec"), namespace)  # noqa: S102 - the sandboxed step itself
        transform = namespace.get("transform")
        if not callable(transform):
            raise TypeError("the code does not define transform(df)")
        result = transform(frame)
    except BaseException as error:  # noqa: BLE001 - every failure of user code is reported the same way
        frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == "<transform>"]
        where = f" (line {frames[-1].lineno})" if frames else ""
        sys.stderr.write(f"{type(error).__name__}: {error}{where}\n")
        return 3
    if not isinstance(result, pd.DataFrame):
        sys.stderr.write(
            f"TypeError: transform(df) must return a pandas DataFrame, not {type(result).__name__}\n"
        )
        return 3
    table = pa.Table.from_pandas(result, preserve_index=False)
    with pa.OSFile(out_path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=65_536)
    return 0


if __name__ == "__main__":
    sys.exit(main())
