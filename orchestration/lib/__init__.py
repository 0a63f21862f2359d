"""Small reusable helpers of the engine (no Dagster definitions here)."""
