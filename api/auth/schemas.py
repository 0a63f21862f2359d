"""Request and response bodies of /auth (ai-etl bodies; aggregator fields accepted too)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import EmailStr, Field, field_validator, model_validator

from api.core.schemas import RequestModel, ResponseModel
from api.core.security import password_problem

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def Password() -> Any:  # noqa: N802
    return Field(min_length=1, max_length=128)


def Username() -> Any:  # noqa: N802 - reads like the Field it returns
    return Field(None, min_length=3, max_length=64, pattern=USERNAME_PATTERN)


def OtpCode() -> Any:  # noqa: N802
    # ASCII digits only: str.isdigit() also accepts other scripts' digits, which broke the TOTP check
    return Field(None, min_length=6, max_length=10, pattern=r"^[0-9 ]+$")


def _check_new_password(value: str) -> str:
    problem = password_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class RegisterRequest(RequestModel):
    username: str | None = Username()
    email: EmailStr = Field(max_length=254)
    password: str = Password()
    full_name: str | None = Field(None, max_length=200)

    _password = field_validator("password")(_check_new_password)


class LoginRequest(RequestModel):
    username: str | None = Field(None, min_length=1, max_length=254)
    email: str | None = Field(None, min_length=1, max_length=254)
    password: str = Password()
    # TOTP code, required once 2FA is enabled (both names are in use by clients)
    otp_code: str | None = OtpCode()
    totp_code: str | None = OtpCode()

    @model_validator(mode="after")
    def _one_identity(self) -> LoginRequest:
        if not (self.username or self.email):
            raise ValueError("username or email is required")
        return self

    @property
    def login(self) -> str:
        return (self.username or self.email or "").strip()

    @property
    def code(self) -> str | None:
        return self.otp_code or self.totp_code


class TokenPair(ResponseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    must_change_password: bool = False


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=10, max_length=4096)


class LogoutRequest(RequestModel):
    refresh_token: str | None = Field(None, max_length=4096)
    # end every session of the user, not only this one
    all_sessions: bool = False


class ChangePasswordRequest(RequestModel):
    current_password: str = Password()
    new_password: str = Password()

    _new = field_validator("new_password")(_check_new_password)


class ResetPasswordRequest(RequestModel):
    email: EmailStr = Field(max_length=254)


class ResetPasswordConfirm(RequestModel):
    token: str = Field(min_length=10, max_length=256)
    new_password: str = Password()

    _new = field_validator("new_password")(_check_new_password)


class VerifyEmailRequest(RequestModel):
    token: str = Field(min_length=10, max_length=256)


class TwoFactorSetup(ResponseModel):
    otp_secret: str
    otp_auth_url: str


class TwoFactorCode(RequestModel):
    code: str | None = OtpCode()
    otp_code: str | None = OtpCode()

    @model_validator(mode="after")
    def _has_code(self) -> TwoFactorCode:
        if not (self.code or self.otp_code):
            raise ValueError("code is required")
        return self

    @property
    def value(self) -> str:
        return self.code or self.otp_code or ""


class TwoFactorDisable(RequestModel):
    password: str | None = Field(None, min_length=1, max_length=128)
    code: str | None = OtpCode()
    otp_code: str | None = OtpCode()

    @model_validator(mode="after")
    def _has_proof(self) -> TwoFactorDisable:
        if not (self.password or self.code or self.otp_code):
            raise ValueError("password or code is required")
        return self


class TwoFactorStatus(ResponseModel):
    two_factor_enabled: bool
