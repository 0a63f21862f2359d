"""Mounts as stored in the metadata DB: public settings as JSON, credentials as one Fernet token.

Shared by the API (mount, watch, import) and the code location (sensors, run workers), which read the
same rows; the plain credentials exist only in the process that connects.
"""

from __future__ import annotations

import json
from typing import Any

from orchestration.lib.secrets import decrypt_secret, encrypt_secret
from orchestration.storage.mounts import MountConfig

STORAGE_SECRETS = b"storage-credentials"
SECRET_FIELDS = ("password", "private_key")


def split_mount(config: MountConfig) -> tuple[dict[str, Any], str | None]:
    """(public settings, encrypted credentials token or None)."""
    public = config.model_dump(exclude=set(SECRET_FIELDS), exclude_none=True)
    secrets = {
        name: value.get_secret_value()
        for name in SECRET_FIELDS
        if (value := getattr(config, name)) is not None
    }
    return public, (encrypt_secret(json.dumps(secrets), STORAGE_SECRETS) if secrets else None)


def mount_from_stored(public: dict[str, Any], token: str | None) -> MountConfig:
    secrets: dict[str, Any] = {}
    if token:
        plain = decrypt_secret(token, STORAGE_SECRETS)
        if plain is None:
            raise ValueError("stored credentials cannot be decrypted (was AETL_ENCRYPTION_KEY changed?)")
        secrets = json.loads(plain)
    return MountConfig.model_validate({**public, **secrets})


def load_mount(database_url: str, storage_id: str) -> tuple[MountConfig, str]:
    """(configuration, mount point) of a live mount, read straight from the metadata DB."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as connection:
        row = connection.execute(
            "SELECT config, secrets, mount_point FROM storage_mounts WHERE id = %s AND deleted_at IS NULL",
            (storage_id,),
        ).fetchone()
    if row is None:
        raise LookupError(f"storage {storage_id} does not exist")
    config = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    return mount_from_stored(config, row[1]), str(row[2])
