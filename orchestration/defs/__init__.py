"""One module per domain; each exposes `defs: dagster.Definitions`, merged by orchestration.definitions."""
# No `from __future__ import annotations` in defs/: Dagster reads config/resource types from annotations.
