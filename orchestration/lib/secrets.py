"""Encryption at rest (Fernet), shared by the API and the run workers.

One key (`AETL_ENCRYPTION_KEY`, read through the one settings object) and a purpose per use: a
connector password and a TOTP secret are encrypted under different derived keys, so one cannot be
swapped for the other.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken as FernetInvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CONNECTOR_SECRETS = b"connector-secrets"


@lru_cache(maxsize=8)
def _fernet(key_material: str, purpose: bytes) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"aetl", info=purpose).derive(
        key_material.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encryption_key() -> str:
    # the settings object reads the environment and .env the same way in every process
    from api.core.config import get_settings

    return get_settings().encryption_key.get_secret_value()


def encrypt_secret(plain: str, purpose: bytes, key: str | None = None) -> str:
    return _fernet(key or encryption_key(), purpose).encrypt(plain.encode()).decode()


def decrypt_secret(token: str, purpose: bytes, key: str | None = None) -> str | None:
    """The plain text, or None when the token was not made with this key and purpose."""
    try:
        return _fernet(key or encryption_key(), purpose).decrypt(token.encode()).decode()
    except (FernetInvalidToken, ValueError):
        return None
