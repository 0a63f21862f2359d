"""User and API-key bodies (UserCreate / UserUpdate / UserPublic)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, EmailStr, Field, field_validator

from api.auth.schemas import Password, Username
from api.core.permissions import ROLE_NAMES, valid_scope
from api.core.schemas import RequestModel, ResponseModel, UTCDateTime
from api.core.security import password_problem


def _check_role(value: str | None) -> str | None:
    if value is not None and value not in ROLE_NAMES:
        raise ValueError(f"unknown role; one of {', '.join(ROLE_NAMES)}")
    return value


class UserPublic(ResponseModel):
    id: str
    username: str
    email: str
    full_name: str | None
    role: str
    is_active: bool
    email_verified: bool
    two_factor_enabled: bool = Field(validation_alias=AliasChoices("totp_enabled", "two_factor_enabled"))
    must_change_password: bool
    created_at: UTCDateTime
    last_login: UTCDateTime | None


class UserCreated(ResponseModel):
    """ai-etl register response."""

    id: str
    username: str
    email: str
    full_name: str | None
    role: str
    created_at: UTCDateTime


class UserCreate(RequestModel):
    username: str | None = Username()
    email: EmailStr = Field(max_length=254)
    password: str = Password()
    full_name: str | None = Field(None, max_length=200)
    role: str = Field("viewer", max_length=32)
    is_active: bool = True

    _role = field_validator("role")(_check_role)

    @field_validator("password")
    @classmethod
    def _password_policy(cls, value: str) -> str:
        if problem := password_problem(value):
            raise ValueError(problem)
        return value


class UserUpdate(RequestModel):
    username: str | None = Username()
    email: EmailStr | None = Field(None, max_length=254)
    full_name: str | None = Field(None, max_length=200)
    # admin only; ignored fields are refused rather than silently dropped
    role: str | None = Field(None, max_length=32)
    is_active: bool | None = None

    _role = field_validator("role")(_check_role)


class UserList(ResponseModel):
    items: list[UserPublic]
    total: int
    skip: int
    limit: int


class UserActiveState(ResponseModel):
    user_id: str
    is_active: bool


class TemporaryPassword(ResponseModel):
    user_id: str
    temporary_password: str
    must_change_password: bool = True


class ApiKeyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    # no scope would be a key that may do nothing; left out, a key may only read
    permissions: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=lambda: ["read"],
        min_length=1,
        max_length=50,
        description='scopes: "read", "write", "*", "<resource>:<action>", "<resource>:*"; default ["read"]',
    )
    expires_in_days: int | None = Field(None, ge=1, le=3650)

    @field_validator("permissions")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not valid_scope(s)]
        if bad:
            raise ValueError(f"unknown permission scope(s): {', '.join(s[:40] for s in bad[:5])}")
        return sorted(set(value))


class ApiKeyPublic(ResponseModel):
    id: str
    name: str
    prefix: str
    permissions: list[str]
    created_at: UTCDateTime
    expires_at: UTCDateTime | None
    last_used_at: UTCDateTime | None


class ApiKeyCreated(ApiKeyPublic):
    # shown once; only its hash is stored
    key: str
