"""Annotated dependencies: database session, the caller, permission checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.admin import service as admin_service
from api.auth.service import Principal, resolve_principal
from api.core.errors import PermissionDenied
from api.db.session import session_scope
from api.users.models import User


def get_session() -> Iterator[Session]:
    yield from session_scope()


SessionDep = Annotated[Session, Depends(get_session)]

# auto_error=False: a missing credential is our AuthFailed in the error shape, not FastAPI's 403
_bearer = HTTPBearer(auto_error=False, description="JWT access token or an `aetl_` API key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (`aetl_...`)")


# all a user with a temporary password may do until it is changed
PASSWORD_CHANGE_PATHS = frozenset({"/api/v1/auth/change-password", "/api/v1/auth/logout", "/api/v1/users/me"})


def get_principal(
    request: Request,
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> Principal:
    principal = resolve_principal(
        session, bearer=bearer.credentials if bearer else None, api_key=api_key or None
    )
    request.state.user_id = principal.user.id
    if principal.user.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise PermissionDenied(
            "Password change required: call POST /api/v1/auth/change-password first",
            details={"reason": "password_change_required"},
        )
    if admin_service.dev_role_refused(session, principal.user):
        raise PermissionDenied(
            "The developer role is not allowed in production without an administrator's temporary approval",
            details={"reason": "dev_role_not_approved"},
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_permission(resource: str, action: str) -> Callable[[Principal], Principal]:
    """`Depends(require_permission("pipelines", "create"))`: 403 unless role (and key scope) allow."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(resource, action):
            raise PermissionDenied(
                f"Permission denied: {resource}.{action}",
                details={"resource": resource, "action": action, "role": principal.user.role},
            )
        return principal

    check.__name__ = f"require_{resource}_{action}"
    return check


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


ClientIP = Annotated[str | None, Depends(client_ip)]
