"""Connectors domain: stored connection settings (credentials encrypted), tests and introspection."""
