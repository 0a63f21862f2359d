"""Credentials: argon2 password hashes, JWT access/refresh tokens, API keys, TOTP secrets.

Pure functions over the settings; storage (which refresh tokens are live, which keys exist) is
the auth service's business.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import jwt
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from api.core.config import get_settings
from api.core.errors import InvalidToken, TokenExpired
from orchestration.lib import secrets as secrets_at_rest

TokenType = Literal["access", "refresh"]
API_KEY_PREFIX = "aetl_"
TOTP_ISSUER = "AI-ETL"
PASSWORD_MIN, PASSWORD_MAX = 8, 128

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- passwords ---------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(hashed: str) -> bool:
    try:
        return _hasher.check_needs_rehash(hashed)
    except InvalidHashError:
        return True


# a real hash to verify against when the user does not exist, so timing does not reveal it
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def burn_password_check(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def password_problem(password: str) -> str | None:
    """The aggregator's rule: at least 8 characters, letters and numbers."""
    if len(password) < PASSWORD_MIN:
        return f"Password must be at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"Password must be at most {PASSWORD_MAX} characters"
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        return "Password must contain letters and numbers"
    return None


def temporary_password() -> str:
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(14))
    # guarantee the policy (letters + digits) whatever the random draw was
    return f"{core}{secrets.choice(string.ascii_uppercase)}{secrets.choice(string.digits)}!"


# --- JWT ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


def _secret() -> str:
    return get_settings().secret_key.get_secret_value()


def _encode(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, _secret(), algorithm=get_settings().jwt_algorithm)


def create_access_token(
    *, user_id: str, role: str, token_version: int, session_id: str | None
) -> IssuedToken:
    now = utcnow()
    expires = now + timedelta(minutes=get_settings().access_token_minutes)
    jti = uuid.uuid4().hex
    claims: dict[str, Any] = {
        "sub": user_id,
        "type": "access",
        "role": role,
        "ver": token_version,
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": expires,
    }
    if session_id:
        claims["sid"] = session_id
    return IssuedToken(_encode(claims), jti, expires)


def create_refresh_token(*, user_id: str, family_id: str, not_after: datetime | None = None) -> IssuedToken:
    now = utcnow()
    expires = now + timedelta(days=get_settings().refresh_token_days)
    if not_after is not None:
        expires = min(expires, not_after)
    jti = uuid.uuid4().hex
    claims = {"sub": user_id, "type": "refresh", "fam": family_id, "jti": jti, "iat": now, "exp": expires}
    return IssuedToken(_encode(claims), jti, expires)


# Tokens whose signature was verified, keyed by (token, secret, algorithm): every request verifies its
# token twice (the rate limiter keys on the user, then the auth dependency), and a client sends the
# same token many times. A hit only re-checks expiry; a rotated secret misses (another key).
_VERIFIED_CAPACITY = 2048
_verified: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()
_verified_lock = threading.Lock()


def decode_token(token: str, expected: TokenType) -> dict[str, Any]:
    secret, algorithm = _secret(), get_settings().jwt_algorithm
    key = (token, secret, algorithm)
    with _verified_lock:
        cached = _verified.get(key)
    if cached is not None and cached["exp"] > time.time():
        claims = cached
    else:
        try:
            claims = jwt.decode(
                token, secret, algorithms=[algorithm], options={"require": ["exp", "iat", "sub", "type"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired() from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken() from exc
        if isinstance(claims.get("exp"), int | float):
            with _verified_lock:
                _verified[key] = claims
                while len(_verified) > _VERIFIED_CAPACITY:
                    _verified.popitem(last=False)
    if claims.get("type") != expected or not isinstance(claims.get("sub"), str):
        raise InvalidToken()
    return dict(claims)


def peek_access_claims(token: str) -> dict[str, Any] | None:
    """Verified claims or None, without raising (rate limiting keys on the user, not the IP)."""
    try:
        return decode_token(token, "access")
    except (InvalidToken, TokenExpired):
        return None


# --- API keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewApiKey:
    key: str
    prefix: str
    key_hash: str


@lru_cache(maxsize=4)
def _api_key_hash_key(explicit: str, encryption_key: str) -> bytes:
    """AETL_API_KEY_HASH_KEY, else derived from the encryption key: never the JWT secret, so
    rotating the JWT secret (which logs everyone out) leaves API keys working."""
    if explicit:
        return explicit.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"aetl", info=b"api-key-hash").derive(
        encryption_key.encode()
    )


def hash_api_key(key: str) -> str:
    # keys carry 256 random bits, so a keyed fast hash is enough (argon2 would only add latency)
    settings = get_settings()
    secret = _api_key_hash_key(
        settings.api_key_hash_key.get_secret_value(), settings.encryption_key.get_secret_value()
    )
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def legacy_api_key_hash(key: str) -> str:
    """How keys were hashed before they had a key of their own (with the JWT secret)."""
    return hmac.new(_secret().encode(), key.encode(), hashlib.sha256).hexdigest()


def hash_random_token(token: str) -> str:
    """Keyed hash of a random single-use token (mailed tokens): same reasoning as API keys."""
    return hmac.new(_secret().encode(), f"token:{token}".encode(), hashlib.sha256).hexdigest()


def generate_api_key() -> NewApiKey:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return NewApiKey(key=key, prefix=key[: len(API_KEY_PREFIX) + 8], key_hash=hash_api_key(key))


def looks_like_api_key(value: str) -> bool:
    return value.startswith(API_KEY_PREFIX) and 20 <= len(value) <= 128


# --- encryption at rest (TOTP secrets) ---------------------------------------------------------


def encrypt_secret(plain: str, purpose: bytes = b"totp-secret") -> str:
    return secrets_at_rest.encrypt_secret(plain, purpose, get_settings().encryption_key.get_secret_value())


def decrypt_secret(token: str, purpose: bytes = b"totp-secret") -> str | None:
    return secrets_at_rest.decrypt_secret(token, purpose, get_settings().encryption_key.get_secret_value())


# --- TOTP --------------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=TOTP_ISSUER)


def totp_match(secret: str, code: str, *, last_counter: int | None = None) -> int | None:
    """The time step the code belongs to (one step of clock drift either way), or None.

    A step at or before `last_counter` was already used: refusing it makes a code single-use.
    """
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit()) or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = int(time.time()) // totp.interval
    for counter in (now - 1, now, now + 1):
        if hmac.compare_digest(totp.generate_otp(counter), code):
            return None if last_counter is not None and counter <= last_counter else counter
    return None
