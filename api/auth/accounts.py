"""Mailed account tokens: email verification and self-service password reset.

A token is 256 random bits, mailed once, stored only as a keyed hash, valid until it expires or is
used (whichever comes first). Issuing a new token of a purpose supersedes the user's older unused
ones. Requests that name an address never reveal whether it is registered; mails per account
are capped per window so the endpoints cannot be used to flood a mailbox.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.auth.models import AccountToken
from api.auth.service import revoke_all_sessions
from api.core import security
from api.core.config import get_settings
from api.core.errors import InvalidToken, TokenExpired
from api.core.mail import send_mail
from api.users.models import User

Purpose = Literal["verify_email", "reset_password"]
VERIFY_EMAIL: Purpose = "verify_email"
RESET_PASSWORD: Purpose = "reset_password"


def _recently_issued(session: Session, user: User, purpose: Purpose) -> int:
    settings = get_settings()
    since = security.utcnow() - timedelta(minutes=settings.account_mail_window_minutes)
    count = session.scalar(
        select(func.count())
        .select_from(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == purpose,
            AccountToken.created_at >= since,
        )
    )
    return int(count or 0)


def issue_token(session: Session, user: User, purpose: Purpose) -> str | None:
    """A new token (returned once, to be mailed), or None when this account hit the mail cap."""
    settings = get_settings()
    if _recently_issued(session, user, purpose) >= settings.account_mail_limit:
        return None
    now = security.utcnow()
    lifetime = (
        timedelta(hours=settings.email_verify_token_hours)
        if purpose == VERIFY_EMAIL
        else timedelta(minutes=settings.password_reset_token_minutes)
    )
    # older unused tokens of this purpose stop working: only the latest mail counts
    session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=security.hash_random_token(token),
            email=user.email,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def consume_token(session: Session, token: str, purpose: Purpose) -> User:
    """The token's user; the token is spent. Unknown, used or mismatched tokens are one error."""
    row = session.scalar(
        select(AccountToken)
        .where(AccountToken.token_hash == security.hash_random_token(token), AccountToken.purpose == purpose)
        .with_for_update()
    )
    if row is None or row.used_at is not None:
        raise InvalidToken("Invalid or already used token")
    if row.expires_at <= security.utcnow():
        raise TokenExpired("Token expired; request a new one")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active or user.email != row.email:
        raise InvalidToken("Invalid or already used token")
    row.used_at = security.utcnow()
    return user


def send_verification(session: Session, user: User, *, ip: str | None = None) -> bool:
    """Issues a verification token and mails it (within the caller's transaction, committed by
    the caller). False when the mail cap was hit or the address is already verified."""
    if user.email_verified:
        return False
    token = issue_token(session, user, VERIFY_EMAIL)
    if token is None:
        return False
    hours = get_settings().email_verify_token_hours
    send_mail(
        to=user.email,
        subject="Verify your email address",
        body=(
            f"Hello {user.full_name or user.username},\n\n"
            "confirm this address with POST /api/v1/auth/verify-email and the token below.\n\n"
            f"Token: {token}\n\nIt is valid for {hours} hours and works once.\n"
        ),
    )
    log_activity(session, user.id, "auth.verify_email_sent", "user", user.id, ip=ip)
    return True


def verify_email(session: Session, token: str, *, ip: str | None) -> User:
    user = consume_token(session, token, VERIFY_EMAIL)
    user.email_verified = True
    log_activity(session, user.id, "auth.email_verified", "user", user.id, ip=ip)
    session.commit()
    return user


def resend_verification(session: Session, user: User, *, ip: str | None) -> None:
    send_verification(session, user, ip=ip)
    session.commit()


def request_password_reset(session: Session, email: str, *, ip: str | None) -> None:
    """Mails a reset token if the address belongs to an active account; silent otherwise."""
    user = session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None or not user.is_active:
        return
    token = issue_token(session, user, RESET_PASSWORD)
    if token is None:
        session.commit()
        return
    minutes = get_settings().password_reset_token_minutes
    send_mail(
        to=user.email,
        subject="Reset your password",
        body=(
            f"Hello {user.full_name or user.username},\n\n"
            "someone asked to reset the password of this account. If it was you, call "
            "POST /api/v1/auth/reset-password/confirm with the token below and a new password.\n\n"
            f"Token: {token}\n\nIt is valid for {minutes} minutes and works once. "
            "If it was not you, ignore this mail: your password stays as it is.\n"
        ),
    )
    log_activity(session, user.id, "auth.password_reset_requested", "user", user.id, ip=ip)
    session.commit()


def confirm_password_reset(session: Session, token: str, new_password: str, *, ip: str | None) -> User:
    user = consume_token(session, token, RESET_PASSWORD)
    user.hashed_password = security.hash_password(new_password)
    user.must_change_password = False
    # the mailbox was proven: receiving the reset mail also verifies the address
    user.email_verified = True
    # every session and access token issued before the reset dies
    revoke_all_sessions(session, user)
    log_activity(session, user.id, "auth.password_reset", "user", user.id, ip=ip)
    session.commit()
    return user
