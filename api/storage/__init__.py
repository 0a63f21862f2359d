"""Watched storage: mounts, folder watches (Dagster sensors) and file imports."""
