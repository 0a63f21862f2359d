"""Pure pieces tested alone: rate tiers, API-key scopes, the role table, TOTP single use, tokens."""

from __future__ import annotations

import hashlib
import hmac

import pyotp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from api.core import security
from api.core.config import get_settings
from api.core.errors import InvalidToken, RateLimitExceeded
from api.core.middleware import rate_tier
from api.core.permissions import NAVIGATION, RESOURCES, ROLES, role_can, scope_allows, valid_scope


def test_rate_tiers() -> None:
    assert rate_tier(frozenset({"generation"}), "user:u1", "admin") == "generation"
    assert rate_tier(frozenset({"admin"}), "user:u1", "viewer") == "admin"
    assert rate_tier(frozenset(), "user:u1", "admin") == "admin"
    assert rate_tier(frozenset(), "user:u1", "viewer") == "user"
    assert rate_tier(frozenset(), "user:u2", None) == "user"
    assert rate_tier(frozenset(), "ip:127.0.0.1", None) == "anonymous"


def test_scopes() -> None:
    assert not scope_allows([], "pipelines", "delete") and not scope_allows([], "pipelines", "view")
    assert scope_allows(["read"], "pipelines", "view") and scope_allows(["read"], "datamarts", "export")
    assert not scope_allows(["read"], "pipelines", "execute")
    assert scope_allows(["pipelines:execute"], "pipelines", "execute")
    assert not scope_allows(["pipelines:execute"], "pipelines", "delete")
    assert scope_allows(["pipelines:*"], "pipelines", "delete")
    assert valid_scope("datamarts:preview") and not valid_scope("pipelines:fly") and not valid_scope("x:*")


def test_role_table_is_coherent() -> None:
    for role in ROLES.values():
        for resource, actions in role.grants.items():
            assert resource in RESOURCES and actions <= set(RESOURCES[resource]), (role.name, resource)
        assert set(role.navigation()) == set(NAVIGATION)
    assert all(role_can("admin", r, a) for r, actions in RESOURCES.items() for a in actions)
    assert role_can("analyst", "datamarts", "export") and not role_can("executor", "datamarts", "export")
    assert not role_can("viewer", "pipelines", "create") and not role_can("nobody", "pipelines", "view")


def test_totp_codes_are_single_use() -> None:
    secret = security.new_totp_secret()
    code = pyotp.TOTP(secret).now()
    counter = security.totp_match(secret, code)
    assert counter is not None
    assert security.totp_match(secret, code, last_counter=counter) is None
    assert security.totp_match(secret, "12345") is None and security.totp_match(secret, "abcdef") is None


def test_secrets_round_trip_and_tamper() -> None:
    token = security.encrypt_secret("JBSWY3DPEHPK3PXP")
    assert token != "JBSWY3DPEHPK3PXP" and security.decrypt_secret(token) == "JBSWY3DPEHPK3PXP"
    assert security.decrypt_secret(token[:-4] + "AAAA") is None


def test_passwords_and_keys() -> None:
    hashed = security.hash_password("Secret1234")
    assert hashed.startswith("$argon2id$") and security.verify_password(hashed, "Secret1234")
    assert not security.verify_password(hashed, "Secret12345") and not security.verify_password("junk", "x")
    assert security.password_problem("short") and security.password_problem("lettersonly")
    assert security.password_problem("Secret1234") is None
    assert security.password_problem(security.temporary_password()) is None
    key = security.generate_api_key()
    assert security.looks_like_api_key(key.key) and key.key.startswith(key.prefix)
    # the stored hash is HMAC-SHA256 under a key of its own, computed here independently
    hash_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"aetl", info=b"api-key-hash").derive(
        get_settings().encryption_key.get_secret_value().encode()
    )
    assert key.key_hash == hmac.new(hash_key, key.key.encode(), hashlib.sha256).hexdigest()
    assert key.key_hash != security.legacy_api_key_hash(key.key)


def test_token_types_are_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    access = security.create_access_token(user_id="user_1", role="viewer", token_version=0, session_id="s")
    refresh = security.create_refresh_token(user_id="user_1", family_id="f")
    assert security.decode_token(access.token, "access")["sub"] == "user_1"
    with pytest.raises(InvalidToken):
        security.decode_token(refresh.token, "access")
    assert RateLimitExceeded().status_code == 429


def test_an_exhausted_connection_pool_is_a_503_not_a_500() -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from api.core.errors import render_exception

    response = render_exception(PoolTimeout("QueuePool limit of size 20 overflow 0 reached"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert b"QueuePool" not in response.body
