"""Pipelines domain: documents and their immutable versions, deploy into Dagster, runs, live status."""
