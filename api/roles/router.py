"""/api/v1/roles: the role table as the API sees it (the same table the checks use)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.auth.service import Principal
from api.core.errors import NotFound
from api.core.permissions import ROLE_NAMES, ROLES, Role, get_role
from api.core.responses import ERROR_RESPONSES, NOT_FOUND
from api.core.schemas import Envelope, ok
from api.deps import CurrentPrincipal, CurrentUser, require_permission
from api.roles.schemas import FeatureAccess, RoleDetail, RolePermissions, RoleSummary

router = APIRouter(prefix="/roles", tags=["roles"], responses=ERROR_RESPONSES)

RoleName = Annotated[str, Path(description=f"one of {', '.join(ROLE_NAMES)}", max_length=32)]


def _role_or_404(name: str) -> Role:
    role = get_role(name)
    if role is None:
        raise NotFound(f"Role '{name[:32]}' not found", details={"role_name": name[:32]})
    return role


def _summary(role: Role) -> dict[str, object]:
    return {
        "name": role.name,
        "display_name": role.display_name,
        "level": role.level,
        "description": role.description,
    }


@router.get("", response_model=Envelope[list[RoleSummary]])
def list_roles(_: CurrentUser) -> object:
    """All roles, highest level first."""
    return ok([_summary(r) for r in sorted(ROLES.values(), key=lambda r: -r.level)])


@router.get("/navigation/items", response_model=Envelope[dict[str, bool]])
def navigation_items(user: CurrentUser) -> object:
    return ok(_role_or_404(user.role).navigation())


@router.get("/features/access", response_model=Envelope[FeatureAccess])
def feature_access(principal: CurrentPrincipal) -> object:
    """What the caller may do (role grants; an API key's scopes narrow them further)."""
    role = _role_or_404(principal.user.role)
    features = {
        res: {action: principal.can(res, action) for action in actions}
        for res, actions in role.permission_matrix().items()
    }
    return ok({"role": role.name, "features": features, "navigation": role.navigation()})


@router.get("/{role_name}", response_model=Envelope[RoleDetail], responses=NOT_FOUND)
def get_role_detail(role_name: RoleName, _: CurrentUser) -> object:
    role = _role_or_404(role_name)
    return ok({**_summary(role), "permissions": role.permission_matrix()})


@router.get("/{role_name}/permissions", response_model=Envelope[RolePermissions], responses=NOT_FOUND)
def get_role_permissions(
    role_name: RoleName, _: Annotated[Principal, Depends(require_permission("roles", "view"))]
) -> object:
    """Full permission object of a role (admin, developer, architect)."""
    role = _role_or_404(role_name)
    return ok({"role": role.name, "permissions": role.permission_matrix()})
