"""Authentication rules: registration, login, token rotation, logout, 2FA, API keys, principals.

Knows nothing of HTTP: takes a session and plain values, returns rows or raises AppError.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import exists, func, literal, or_, select, update
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.auth.models import ApiKey, RefreshToken
from api.auth.throttle import failed_attempts
from api.core import security
from api.core.config import get_settings
from api.core.errors import (
    AccountInactive,
    AuthFailed,
    BadRequest,
    Conflict,
    InvalidToken,
    NotFound,
    PermissionDenied,
)
from api.core.permissions import get_role, role_can, scope_allows
from api.users.models import User

# only refresh last_used_at this often: a busy key must not turn every request into a write
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass
class Principal:
    """Who is calling and through which credential."""

    user: User
    via: Literal["jwt", "api_key"]
    session_id: str | None = None
    api_key_id: str | None = None
    scopes: list[str] = field(default_factory=list)

    def can(self, resource: str, action: str) -> bool:
        if not role_can(self.user.role, resource, action):
            return False
        return self.via != "api_key" or scope_allows(self.scopes, resource, action)


# --- registration and login --------------------------------------------------------------------


def _free_username(session: Session, email: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "", email.split("@", 1)[0])[:50] or "user"
    if len(base) < 3:
        base = f"{base}user"
    candidate = base
    while session.scalar(select(exists().where(User.username == candidate))):
        candidate = f"{base}_{secrets.token_hex(3)}"
    return candidate


def create_user(
    session: Session,
    *,
    email: str,
    password: str,
    username: str | None,
    full_name: str | None,
    role: str,
    is_active: bool = True,
    must_change_password: bool = False,
) -> User:
    email = email.strip().lower()
    if get_role(role) is None:
        raise BadRequest(f"Unknown role '{role}'", field="role")
    if session.scalar(select(exists().where(func.lower(User.email) == email))):
        raise Conflict("A user with this email already exists", field="email", details={"field": "email"})
    if username and session.scalar(select(exists().where(func.lower(User.username) == username.lower()))):
        raise Conflict(
            "A user with this username already exists", field="username", details={"field": "username"}
        )
    user = User(
        username=username or _free_username(session, email),
        email=email,
        full_name=full_name,
        role=role,
        hashed_password=security.hash_password(password),
        is_active=is_active,
        must_change_password=must_change_password,
    )
    session.add(user)
    session.flush()
    return user


def register(
    session: Session,
    *,
    email: str,
    password: str,
    username: str | None,
    full_name: str | None,
    ip: str | None,
) -> User:
    role = get_settings().self_registration_role
    user = create_user(
        session,
        email=email,
        password=password,
        username=username,
        full_name=full_name,
        role=role if get_role(role) else "viewer",
    )
    log_activity(session, user.id, "user.register", "user", user.id, ip=ip)
    from api.auth import accounts  # accounts builds on this module

    accounts.send_verification(session, user, ip=ip)
    session.commit()
    return user


def authenticate(
    session: Session, *, login: str, password: str, otp_code: str | None, ip: str | None
) -> User:
    login_l = login.lower()
    user = session.scalar(
        select(User).where(or_(func.lower(User.username) == login_l, func.lower(User.email) == login_l))
    )
    # an unknown name is throttled like an account, so the answers reveal nothing
    account = user.id if user is not None else f"name:{login_l}"
    attempts = failed_attempts()
    attempts.ensure_allowed(account, ip)
    if user is None:
        security.burn_password_check(password)
        attempts.record_failure(account, ip)
        raise AuthFailed("Incorrect username or password")
    if not security.verify_password(user.hashed_password, password):
        attempts.record_failure(account, ip)
        log_activity(session, user.id, "auth.login_failed", "user", user.id, ip=ip, status="failure")
        session.commit()
        raise AuthFailed("Incorrect username or password")
    if not user.is_active:
        raise AccountInactive(
            "Account is inactive; contact an administrator", details={"reason": "account_inactive"}
        )
    if user.totp_enabled:
        if not otp_code:
            raise AuthFailed(
                "Two-factor code required", details={"two_factor_required": True}, field="otp_code"
            )
        if not _accept_totp(user, otp_code):
            attempts.record_failure(account, ip)
            raise AuthFailed(
                "Invalid two-factor code", details={"two_factor_required": True}, field="otp_code"
            )
    if security.password_needs_rehash(user.hashed_password):
        user.hashed_password = security.hash_password(password)
    user.last_login = security.utcnow()
    log_activity(session, user.id, "auth.login", "user", user.id, ip=ip)
    return user


def _session_started(session: Session, family_id: str) -> datetime | None:
    return session.scalar(
        select(func.min(RefreshToken.created_at)).where(RefreshToken.family_id == family_id)
    )


def issue_tokens(session: Session, user: User, family_id: str | None = None) -> dict[str, object]:
    """A new access + refresh pair; the refresh jti is stored so it can be rotated and revoked.

    Rotation never extends a session past AETL_SESSION_MAX_DAYS from its login.
    """
    family = family_id or uuid.uuid4().hex
    started = _session_started(session, family) if family_id else None
    session_end = (started or security.utcnow()) + timedelta(days=get_settings().session_max_days)
    refresh = security.create_refresh_token(user_id=user.id, family_id=family, not_after=session_end)
    session.add(
        RefreshToken(jti=refresh.jti, user_id=user.id, family_id=family, expires_at=refresh.expires_at)
    )
    access = security.create_access_token(
        user_id=user.id, role=user.role, token_version=user.token_version, session_id=family
    )
    session.flush()
    return {
        "access_token": access.token,
        "refresh_token": refresh.token,
        "token_type": "bearer",
        "expires_in": get_settings().access_token_minutes * 60,
        "must_change_password": user.must_change_password,
    }


def login(
    session: Session, *, login: str, password: str, otp_code: str | None, ip: str | None
) -> dict[str, object]:
    user = authenticate(session, login=login, password=password, otp_code=otp_code, ip=ip)
    tokens = issue_tokens(session, user)
    session.commit()
    return tokens


def _revoke_family(session: Session, family_id: str) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=security.utcnow())
    )


def revoke_all_sessions(session: Session, user: User) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=security.utcnow())
    )
    user.token_version += 1


def refresh(session: Session, refresh_token: str) -> dict[str, object]:
    """Rotate: the presented token dies, a new pair of the same session is issued.

    A token presented after it was rotated means it leaked (or a client raced itself): the whole
    session is revoked, so a thief and a victim both have to log in again.
    """
    claims = security.decode_token(refresh_token, "refresh")
    row = session.scalar(select(RefreshToken).where(RefreshToken.jti == claims.get("jti")).with_for_update())
    if row is None or row.user_id != claims["sub"]:
        raise InvalidToken("Invalid refresh token")
    if row.revoked_at is not None:
        _revoke_family(session, row.family_id)
        session.commit()
        raise InvalidToken(
            "Refresh token already used or revoked; session ended", details={"reason": "refresh_token_reuse"}
        )
    started = _session_started(session, row.family_id)
    max_age = timedelta(days=get_settings().session_max_days)
    if started is not None and security.utcnow() - started >= max_age:
        _revoke_family(session, row.family_id)
        session.commit()
        raise InvalidToken("Session too old; log in again", details={"reason": "session_max_age"})
    user = session.get(User, row.user_id)
    if user is None:
        raise InvalidToken("Invalid refresh token")
    if not user.is_active:
        raise AccountInactive(details={"reason": "account_inactive"})
    tokens = issue_tokens(session, user, family_id=row.family_id)
    new_claims = security.decode_token(str(tokens["refresh_token"]), "refresh")
    row.revoked_at = security.utcnow()
    row.replaced_by = new_claims["jti"]
    session.commit()
    return tokens


def logout(
    session: Session, principal: Principal, *, refresh_token: str | None, all_sessions: bool, ip: str | None
) -> None:
    user = principal.user
    if all_sessions:
        revoke_all_sessions(session, user)
    else:
        if principal.session_id:
            _revoke_family(session, principal.session_id)
        if refresh_token:
            try:
                claims = security.decode_token(refresh_token, "refresh")
            except (InvalidToken, security.TokenExpired):
                claims = {}
            if claims.get("sub") == user.id and claims.get("fam"):
                _revoke_family(session, str(claims["fam"]))
    log_activity(
        session, user.id, "auth.logout", "user", user.id, ip=ip, details={"all_sessions": all_sessions}
    )
    session.commit()


# --- resolving the caller ----------------------------------------------------------------------


def _active(user: User | None) -> User:
    if user is None:
        raise InvalidToken()
    if not user.is_active:
        raise AccountInactive(details={"reason": "account_inactive"})
    return user


def principal_from_access_token(session: Session, token: str) -> Principal:
    claims = security.decode_token(token, "access")
    sid = claims.get("sid")
    # the user and whether the token's session is still live, in one round trip (every request)
    live_session = (
        exists().where(
            RefreshToken.family_id == sid,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > security.utcnow(),
        )
        if sid
        else literal(False)
    )
    row = session.execute(select(User, live_session).where(User.id == claims["sub"])).first()
    user, live = (row[0], bool(row[1])) if row else (None, False)
    if user is None or claims.get("ver") != user.token_version:
        raise InvalidToken()
    user = _active(user)
    if not sid:
        # every access token we issue belongs to a session; one without cannot be logged out
        raise InvalidToken("Access token without a session")
    if not live:
        raise InvalidToken("Session has ended")
    return Principal(user=user, via="jwt", session_id=sid)


def principal_from_api_key(session: Session, key: str) -> Principal:
    key_hash = security.hash_api_key(key)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if row is None:
        # keys made before AETL_API_KEY_HASH_KEY were hashed with the JWT secret: re-hash on first use
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == security.legacy_api_key_hash(key)))
        if row is not None:
            row.key_hash = key_hash
            session.commit()
    now = security.utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise InvalidToken("Invalid or revoked API key")
    user = _active(session.get(User, row.user_id))
    if row.last_used_at is None or now - row.last_used_at > API_KEY_TOUCH_INTERVAL:
        row.last_used_at = now
        session.commit()
    return Principal(user=user, via="api_key", api_key_id=row.id, scopes=list(row.permissions or []))


def resolve_principal(session: Session, *, bearer: str | None, api_key: str | None) -> Principal:
    if api_key:
        return principal_from_api_key(session, api_key)
    if bearer:
        if security.looks_like_api_key(bearer):
            return principal_from_api_key(session, bearer)
        return principal_from_access_token(session, bearer)
    raise AuthFailed("Not authenticated", headers={"WWW-Authenticate": "Bearer"})


# --- passwords ---------------------------------------------------------------------------------


def change_password(session: Session, user: User, *, current: str, new: str, ip: str | None) -> None:
    attempts = failed_attempts()
    attempts.ensure_allowed(user.id, ip)
    if not security.verify_password(user.hashed_password, current):
        attempts.record_failure(user.id, ip)
        raise BadRequest("Current password is incorrect", field="current_password")
    if current == new:
        raise BadRequest("New password must differ from the current one", field="new_password")
    user.hashed_password = security.hash_password(new)
    user.must_change_password = False
    # every other session ends; the caller logs in again with the new password
    revoke_all_sessions(session, user)
    log_activity(session, user.id, "auth.change_password", "user", user.id, ip=ip)
    session.commit()


# --- two-factor authentication -----------------------------------------------------------------


def setup_two_factor(session: Session, user: User) -> dict[str, str]:
    if user.totp_enabled:
        raise Conflict("Two-factor authentication is already enabled; disable it first")
    secret = security.new_totp_secret()
    user.totp_secret = security.encrypt_secret(secret)
    user.totp_last_counter = None
    session.commit()
    return {"otp_secret": secret, "otp_auth_url": security.totp_uri(secret, user.email)}


def _current_totp_secret(user: User) -> str:
    secret = security.decrypt_secret(user.totp_secret or "")
    if secret is None:
        raise BadRequest("Two-factor authentication has not been set up; call /auth/2fa/setup first")
    return secret


def _accept_totp(user: User, code: str) -> bool:
    """Checks a code against the user's secret and burns its time step."""
    secret = security.decrypt_secret(user.totp_secret or "")
    if secret is None:
        return False
    counter = security.totp_match(secret, code, last_counter=user.totp_last_counter)
    if counter is None:
        return False
    user.totp_last_counter = counter
    return True


def enable_two_factor(session: Session, user: User, code: str, ip: str | None) -> None:
    _current_totp_secret(user)
    attempts = failed_attempts()
    attempts.ensure_allowed(user.id, ip)
    if not _accept_totp(user, code):
        attempts.record_failure(user.id, ip)
        raise BadRequest("Invalid two-factor code", field="code")
    user.totp_enabled = True
    log_activity(session, user.id, "auth.2fa_enabled", "user", user.id, ip=ip)
    session.commit()


def disable_two_factor(
    session: Session, user: User, *, password: str | None, code: str | None, ip: str | None
) -> None:
    if not user.totp_enabled:
        raise BadRequest("Two-factor authentication is not enabled")
    attempts = failed_attempts()
    attempts.ensure_allowed(user.id, ip)
    proven = (password is not None and security.verify_password(user.hashed_password, password)) or (
        code is not None and _accept_totp(user, code)
    )
    if not proven:
        attempts.record_failure(user.id, ip)
        raise PermissionDenied("Password or two-factor code is incorrect")
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_counter = None
    log_activity(session, user.id, "auth.2fa_disabled", "user", user.id, ip=ip)
    session.commit()


# --- API keys ----------------------------------------------------------------------------------


def list_api_keys(session: Session, user: User) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at)
        )
    )


def create_api_key(
    session: Session,
    user: User,
    *,
    name: str,
    permissions: list[str],
    expires_in_days: int | None,
    ip: str | None,
) -> tuple[ApiKey, str]:
    new = security.generate_api_key()
    expires = security.utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiKey(
        user_id=user.id,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        permissions=permissions,
        expires_at=expires,
    )
    session.add(row)
    session.flush()
    log_activity(session, user.id, "api_key.create", "api_key", row.id, ip=ip)
    session.commit()
    return row, new.key


def revoke_api_key(session: Session, user: User, key_id: str, ip: str | None) -> ApiKey:
    row = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user.id))
    if row is None or row.revoked_at is not None:
        raise NotFound("API key not found", details={"key_id": key_id})
    row.revoked_at = security.utcnow()
    log_activity(session, user.id, "api_key.revoke", "api_key", row.id, ip=ip)
    session.commit()
    return row
