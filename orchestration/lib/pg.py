"""PostgreSQL database life cycle: the stack and the tests create the databases they use.

Works with libpq URLs (`postgresql://…`) and SQLAlchemy URLs (`postgresql+psycopg://…`).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def _libpq_url(url: str) -> str:
    """psycopg only understands the plain scheme; SQLAlchemy URLs carry a driver suffix."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def database_name(url: str) -> str:
    """The database a URL points at (`postgresql://u@h:5432/aetl_dagster` -> `aetl_dagster`)."""
    name = urlsplit(_libpq_url(url)).path.lstrip("/")
    if not name:
        raise ValueError("PostgreSQL URL names no database")
    return name


def server_url(url: str, database: str = "postgres") -> str:
    """The same server and credentials, another database (to create/drop the one the URL names)."""
    parts = urlsplit(_libpq_url(url))
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_exists(url: str) -> bool:
    with psycopg.connect(server_url(url), autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database_name(url),)).fetchone()
    return row is not None


def ensure_pg_database(url: str) -> bool:
    """Create the database the URL names if it is missing. Returns True if it was created."""
    name = database_name(url)
    with psycopg.connect(server_url(url), autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            # Another process (webserver and daemon start together) created it first.
            return False
    return True


def drop_pg_database(url: str) -> None:
    """Drop the database the URL names, closing its connections (tests clean what they create)."""
    name = database_name(url)
    with psycopg.connect(server_url(url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
