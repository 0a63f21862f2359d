"""Bodies of /roles* (aggregator envelope payloads)."""

from __future__ import annotations

from pydantic import BaseModel

PermissionMatrix = dict[str, dict[str, bool]]


class RoleSummary(BaseModel):
    name: str
    display_name: str
    level: int
    description: str


class RoleDetail(RoleSummary):
    permissions: PermissionMatrix


class RolePermissions(BaseModel):
    role: str
    permissions: PermissionMatrix


class FeatureAccess(BaseModel):
    role: str
    features: PermissionMatrix
    navigation: dict[str, bool]
