"""/api/v1/users: own profile (ai-etl body), administration and own API keys (envelope)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from api.auth import service as auth_service
from api.auth.service import Principal
from api.core.paging import PagingDep
from api.core.permissions import ROLE_NAMES
from api.core.responses import BAD_REQUEST, CONFLICT, ERROR_RESPONSES, NOT_FOUND
from api.core.schemas import Envelope, MessageEnvelope, ok
from api.deps import (
    ClientIP,
    CurrentUser,
    LoginSessionUser,
    SessionDep,
    UserIdPath,
    require_permission,
    require_self_or_permission,
)
from api.users import service as users_service
from api.users.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    TemporaryPassword,
    UserActiveState,
    UserCreate,
    UserList,
    UserPublic,
    UserUpdate,
)

# an enum, so an unknown role is a 422 and the OpenAPI lists the choices
RoleFilter = StrEnum("RoleFilter", {name: name for name in ROLE_NAMES})  # type: ignore[misc]

router = APIRouter(prefix="/users", tags=["users"], responses=ERROR_RESPONSES)

CanViewUsers = Annotated[Principal, Depends(require_permission("users", "view"))]
CanCreateUsers = Annotated[Principal, Depends(require_permission("users", "create"))]
CanEditUsers = Annotated[Principal, Depends(require_permission("users", "edit"))]
CanDeleteUsers = Annotated[Principal, Depends(require_permission("users", "delete"))]
SelfOrCanViewUsers = Annotated[Principal, Depends(require_self_or_permission("users", "view"))]
SelfOrCanEditUsers = Annotated[Principal, Depends(require_self_or_permission("users", "edit"))]


def _public(user: object) -> dict[str, object]:
    return UserPublic.model_validate(user).model_dump(mode="json")


@router.get("/me", response_model=UserPublic)
def read_me(user: CurrentUser) -> object:
    return user


@router.get("/me/api-keys", response_model=Envelope[list[ApiKeyPublic]])
def list_my_api_keys(user: LoginSessionUser, session: SessionDep) -> object:
    keys = auth_service.list_api_keys(session, user)
    return ok([ApiKeyPublic.model_validate(k).model_dump(mode="json") for k in keys])


@router.post("/me/api-keys", status_code=status.HTTP_201_CREATED, response_model=Envelope[ApiKeyCreated])
def create_my_api_key(
    body: ApiKeyCreate, user: LoginSessionUser, session: SessionDep, ip: ClientIP
) -> object:
    """The key is shown once, in this answer; only its hash is stored. Use it as
    `Authorization: Bearer aetl_...` or `X-API-Key: aetl_...`."""
    row, key = auth_service.create_api_key(
        session,
        user,
        name=body.name,
        permissions=body.permissions,
        expires_in_days=body.expires_in_days,
        ip=ip,
    )
    data = ApiKeyPublic.model_validate(row).model_dump(mode="json") | {"key": key}
    return ok(data, "Store this key now: it is not shown again")


@router.delete("/me/api-keys/{key_id}", response_model=Envelope[ApiKeyPublic], responses=NOT_FOUND)
def revoke_my_api_key(
    key_id: Annotated[str, Path(min_length=1, max_length=40)],
    user: LoginSessionUser,
    session: SessionDep,
    ip: ClientIP,
) -> object:
    row = auth_service.revoke_api_key(session, user, key_id, ip)
    return ok(ApiKeyPublic.model_validate(row).model_dump(mode="json"), "API key revoked")


@router.get("", response_model=Envelope[UserList])
def list_users(
    _: CanViewUsers,
    session: SessionDep,
    page: PagingDep,
    role: Annotated[RoleFilter | None, Query(description="only users with this role")] = None,
) -> object:
    users, total = users_service.list_users(
        session, skip=page.offset, limit=page.limit, role=role.value if role else None
    )
    return ok(
        {"items": [_public(u) for u in users], "total": total, "skip": page.offset, "limit": page.limit}
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Envelope[UserPublic],
    responses={**CONFLICT, **BAD_REQUEST},
)
def create_user(body: UserCreate, admin: CanCreateUsers, session: SessionDep, ip: ClientIP) -> object:
    """Administrators create users with any role."""
    user = users_service.create_user(session, admin.user, body, ip)
    return ok(_public(user), "User created")


@router.get("/{user_id}", response_model=Envelope[UserPublic], responses=NOT_FOUND)
def get_user(user_id: UserIdPath, _: SelfOrCanViewUsers, session: SessionDep) -> object:
    """Administrators read anyone; others read their own profile."""
    return ok(_public(users_service.get_user(session, user_id)))


@router.put("/{user_id}", response_model=Envelope[UserPublic], responses={**NOT_FOUND, **CONFLICT})
def update_user(
    user_id: UserIdPath, body: UserUpdate, principal: SelfOrCanEditUsers, session: SessionDep, ip: ClientIP
) -> object:
    """Administrators edit anyone (incl. role, is_active); others edit their own profile."""
    user = users_service.update_user(
        session, principal.user, user_id, body, is_admin=principal.can("users", "edit"), ip=ip
    )
    return ok(_public(user), "User updated")


@router.delete("/{user_id}", response_model=MessageEnvelope, responses={**NOT_FOUND, **BAD_REQUEST})
def delete_user(user_id: UserIdPath, admin: CanDeleteUsers, session: SessionDep, ip: ClientIP) -> object:
    users_service.delete_user(session, admin.user, user_id, ip)
    return {"status": "success", "message": "User deleted", "data": {"user_id": user_id}}


@router.post("/{user_id}/activate", response_model=Envelope[UserActiveState], responses=NOT_FOUND)
def activate_user(user_id: UserIdPath, admin: CanEditUsers, session: SessionDep, ip: ClientIP) -> object:
    user = users_service.set_active(session, admin.user, user_id, True, ip)
    return ok({"user_id": user.id, "is_active": user.is_active}, "User activated successfully")


@router.post(
    "/{user_id}/deactivate", response_model=Envelope[UserActiveState], responses={**NOT_FOUND, **BAD_REQUEST}
)
def deactivate_user(user_id: UserIdPath, admin: CanEditUsers, session: SessionDep, ip: ClientIP) -> object:
    """Refused everywhere at once: every token and API key of the user stops working."""
    user = users_service.set_active(session, admin.user, user_id, False, ip)
    return ok({"user_id": user.id, "is_active": user.is_active}, "User deactivated successfully")


@router.post("/{user_id}/reset-password", response_model=Envelope[TemporaryPassword], responses=NOT_FOUND)
def reset_user_password(
    user_id: UserIdPath, admin: CanEditUsers, session: SessionDep, ip: ClientIP
) -> object:
    """Generates a temporary password (shown once); the user must change it after logging in."""
    user, temporary = users_service.admin_reset_password(session, admin.user, user_id, ip)
    return ok(
        {"user_id": user.id, "temporary_password": temporary, "must_change_password": True},
        "Password reset successfully",
    )
