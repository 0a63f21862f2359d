"""Connectors as stored by the API in the metadata DB, read back where the rows move (the run worker).

Credentials never travel in run config or tags: a run names a connector by id, and this module reads
it from the metadata DB (DATABASE_URL) and decrypts its secrets in the process that connects.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from orchestration.connectors.config import ConnectorConfig, connector_from_stored
from orchestration.lib.secrets import CONNECTOR_SECRETS, decrypt_secret


class ConnectorNotFound(LookupError):
    pass


@lru_cache(maxsize=2)
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def metadata_database_url() -> str:
    from api.core.config import get_settings  # DATABASE_URL, or the default the API uses

    return get_settings().database_url


def decode_stored(connector_type: str, config: Any, secrets_token: str | None) -> ConnectorConfig:
    """A stored row's configuration with its secrets decrypted."""
    public = config if isinstance(config, dict) else json.loads(config or "{}")
    secrets: dict[str, str] = {}
    if secrets_token:
        plain = decrypt_secret(secrets_token, CONNECTOR_SECRETS)
        if plain is None:
            raise ValueError("the connector's credentials cannot be decrypted with this AETL_ENCRYPTION_KEY")
        secrets = json.loads(plain)
    return connector_from_stored(connector_type, {k: v for k, v in public.items() if k != "type"}, secrets)


def load_connector(connector_id: str, database_url: str | None = None) -> ConnectorConfig:
    """The connector's full configuration, credentials included; raises ConnectorNotFound."""
    engine = _engine(database_url or metadata_database_url())
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT type, config, secrets FROM connectors WHERE id = :id AND deleted_at IS NULL"),
            {"id": connector_id},
        ).first()
    if row is None:
        raise ConnectorNotFound(f"connector {connector_id} does not exist (or was deleted)")
    return decode_stored(row[0], row[1], row[2])
