"""Annotated dependencies: database session, the caller, permission checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.admin import service as admin_service
from api.auth.service import Principal, resolve_principal
from api.core.errors import PermissionDenied
from api.core.permissions import scope_allows
from api.core.security import hash_api_key
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
    verified = getattr(request.app.state, "verified_api_keys", None)
    if principal.via == "api_key" and verified is not None:
        # from now on the rate limiter counts this key as its owner, not as its address
        raw = api_key or (bearer.credentials if bearer else "")
        verified.remember(hash_api_key(raw), principal.user.id, principal.user.role)
    if principal.via == "api_key" and not principal.scopes:
        raise PermissionDenied(
            "This API key has no scopes, so it may do nothing; create one with the scopes it needs",
            details={"reason": "api_key_without_scope"},
        )
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


def get_login_session_principal(principal: CurrentPrincipal) -> Principal:
    """The caller, if it came with a logged-in session (JWT); an API key is refused."""
    if principal.via != "jwt":
        raise PermissionDenied(
            "This action needs a logged-in session (access token); API keys cannot do it",
            details={"reason": "session_required"},
        )
    return principal


LoginSessionPrincipal = Annotated[Principal, Depends(get_login_session_principal)]


def get_login_session_user(principal: LoginSessionPrincipal) -> User:
    return principal.user


# credentials, keys, 2FA and sessions are managed only by a person logged in, never by a key
LoginSessionUser = Annotated[User, Depends(get_login_session_user)]


def _denied(principal: Principal, resource: str, action: str) -> PermissionDenied:
    return PermissionDenied(
        f"Permission denied: {resource}.{action}",
        details={"resource": resource, "action": action, "role": principal.user.role},
    )


class PermissionCheck:
    """`Depends(require_permission("pipelines", "create"))`: 403 unless role (and key scope) allow.

    A class rather than a closure so the route table can be read back (which grant a route
    needs): tests walk every route's dependencies to check keys against the permission table.
    """

    def __init__(self, resource: str, action: str) -> None:
        self.resource, self.action = resource, action

    # async: a pure check of the caller already resolved, so FastAPI runs it on the event loop
    # instead of a thread-pool round trip per request
    async def __call__(self, principal: CurrentPrincipal) -> Principal:
        if not principal.can(self.resource, self.action):
            raise _denied(principal, self.resource, self.action)
        return principal


def require_permission(resource: str, action: str) -> PermissionCheck:
    return PermissionCheck(resource, action)


UserIdPath = Annotated[str, Path(min_length=1, max_length=40, description="user id (`user_...`)")]


class SelfOrPermission(PermissionCheck):
    """The caller's own user record (path `user_id`), or the `<resource>.<action>` grant.

    On one's own record a session may always act; an API key needs the scope for it.
    """

    async def __call__(  # type: ignore[override]
        self, principal: CurrentPrincipal, user_id: UserIdPath
    ) -> Principal:
        own = principal.user.id == user_id
        if own and (principal.via == "jwt" or scope_allows(principal.scopes, self.resource, self.action)):
            return principal
        if principal.can(self.resource, self.action):
            return principal
        raise _denied(principal, self.resource, self.action)


def require_self_or_permission(resource: str, action: str) -> SelfOrPermission:
    return SelfOrPermission(resource, action)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


ClientIP = Annotated[str | None, Depends(client_ip)]
