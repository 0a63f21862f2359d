"""User administration rules (admin-only actions, own-profile edits, last-admin protection)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.activity.service import log_activity
from api.auth import accounts
from api.auth import service as auth_service
from api.core import security
from api.core.errors import BadRequest, Conflict, NotFound, PermissionDenied
from api.core.permissions import ADMIN_ROLE
from api.users.models import User
from api.users.schemas import UserCreate, UserUpdate


def list_users(session: Session, *, skip: int, limit: int, role: str | None) -> tuple[list[User], int]:
    query = select(User)
    count = select(func.count()).select_from(User)
    if role:
        query, count = query.where(User.role == role), count.where(User.role == role)
    rows = session.scalars(query.order_by(User.created_at, User.id).offset(skip).limit(limit))
    return list(rows), int(session.scalar(count) or 0)


def get_user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("User not found", details={"user_id": user_id})
    return user


def create_user(session: Session, actor: User, data: UserCreate, ip: str | None) -> User:
    user = auth_service.create_user(
        session,
        email=str(data.email),
        password=data.password,
        username=data.username,
        full_name=data.full_name,
        role=data.role,
        is_active=data.is_active,
    )
    log_activity(session, actor.id, "user.create", "user", user.id, ip=ip, details={"role": data.role})
    accounts.send_verification(session, user, ip=ip)
    session.commit()
    return user


def _other_active_admins(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == ADMIN_ROLE, User.is_active.is_(True), User.id != user.id)
        )
        or 0
    )


def _guard_last_admin(session: Session, user: User) -> None:
    if user.role == ADMIN_ROLE and user.is_active and _other_active_admins(session, user) == 0:
        raise BadRequest("This is the last active administrator; promote another admin first")


def update_user(
    session: Session, actor: User, user_id: str, data: UserUpdate, *, is_admin: bool, ip: str | None
) -> User:
    user = get_user(session, user_id)
    changes = data.model_dump(exclude_unset=True)
    if not is_admin and ({"role", "is_active"} & changes.keys()):
        raise PermissionDenied("Only administrators change roles or activation")
    if changes.get("role") not in (None, user.role) or changes.get("is_active") is False:
        _guard_last_admin(session, user)
    if "email" in changes and changes["email"] is not None:
        email = str(changes["email"]).lower()
        clash = session.scalar(select(User.id).where(func.lower(User.email) == email, User.id != user.id))
        if clash:
            raise Conflict("A user with this email already exists", field="email")
        if email != user.email:
            user.email, user.email_verified = email, False
    if changes.get("username"):
        name = changes["username"]
        clash = session.scalar(
            select(User.id).where(func.lower(User.username) == name.lower(), User.id != user.id)
        )
        if clash:
            raise Conflict("A user with this username already exists", field="username")
        user.username = name
    if "full_name" in changes:
        user.full_name = changes["full_name"]
    if changes.get("role") is not None and changes["role"] != user.role:
        user.role = changes["role"]
        # tokens carry the role for rate limiting; make the holder pick up the new one
        user.token_version += 1
    if changes.get("is_active") is not None and changes["is_active"] != user.is_active:
        _set_active(session, user, bool(changes["is_active"]))
    log_activity(
        session, actor.id, "user.update", "user", user.id, ip=ip, details={"fields": sorted(changes)}
    )
    if not user.email_verified and "email" in changes:
        # the new address must be proven too; pending tokens for the old one no longer match
        accounts.send_verification(session, user, ip=ip)
    session.commit()
    return user


def _set_active(session: Session, user: User, active: bool) -> None:
    user.is_active = active
    if not active:
        auth_service.revoke_all_sessions(session, user)


def set_active(session: Session, actor: User, user_id: str, active: bool, ip: str | None) -> User:
    user = get_user(session, user_id)
    if not active:
        if user.id == actor.id:
            raise BadRequest("You cannot deactivate your own account")
        _guard_last_admin(session, user)
    _set_active(session, user, active)
    log_activity(session, actor.id, "user.activate" if active else "user.deactivate", "user", user.id, ip=ip)
    session.commit()
    return user


def delete_user(session: Session, actor: User, user_id: str, ip: str | None) -> None:
    user = get_user(session, user_id)
    if user.id == actor.id:
        raise BadRequest("You cannot delete your own account")
    _guard_last_admin(session, user)
    log_activity(
        session, actor.id, "user.delete", "user", user.id, ip=ip, details={"username": user.username}
    )
    session.delete(user)
    session.commit()


def admin_reset_password(session: Session, actor: User, user_id: str, ip: str | None) -> tuple[User, str]:
    user = get_user(session, user_id)
    temporary = security.temporary_password()
    user.hashed_password = security.hash_password(temporary)
    user.must_change_password = True
    auth_service.revoke_all_sessions(session, user)
    log_activity(session, actor.id, "user.reset_password", "user", user.id, ip=ip)
    session.commit()
    return user, temporary
