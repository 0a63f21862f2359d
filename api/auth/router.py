"""/api/v1/auth: register, login, refresh, logout (ai-etl bodies); passwords, email, 2FA (envelope)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.auth import accounts
from api.auth import service as auth_service
from api.auth.schemas import (
    ChangePasswordRequest,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
    ResetPasswordConfirm,
    ResetPasswordRequest,
    TokenPair,
    TwoFactorCode,
    TwoFactorDisable,
    TwoFactorSetup,
    TwoFactorStatus,
    VerifyEmailRequest,
)
from api.core.responses import BAD_REQUEST, CONFLICT, ERROR_RESPONSES
from api.core.schemas import Envelope, MessageEnvelope, ok
from api.deps import ClientIP, LoginSessionPrincipal, LoginSessionUser, SessionDep
from api.users.schemas import UserCreated

RESET_REQUESTED_MESSAGE = (
    "If the address belongs to an active account, a password reset token has been mailed to it"
)

router = APIRouter(prefix="/auth", tags=["auth"], responses={**ERROR_RESPONSES, **BAD_REQUEST})


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserCreated, responses=CONFLICT)
def register(body: RegisterRequest, session: SessionDep, ip: ClientIP) -> object:
    """Self-registration; the new account gets the least role (settings: AETL_SELF_REGISTRATION_ROLE)."""
    return auth_service.register(
        session,
        email=str(body.email),
        password=body.password,
        username=body.username,
        full_name=body.full_name,
        ip=ip,
    )


@router.post("/login", response_model=TokenPair)
def login(body: LoginRequest, session: SessionDep, ip: ClientIP) -> object:
    """Login by username or email (+ `otp_code` once 2FA is enabled)."""
    return auth_service.login(session, login=body.login, password=body.password, otp_code=body.code, ip=ip)


@router.post("/refresh", response_model=TokenPair)
def refresh(body: RefreshRequest, session: SessionDep) -> object:
    """Rotates the refresh token: the old one stops working; reusing it ends the session."""
    return auth_service.refresh(session, body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def logout(
    principal: LoginSessionPrincipal, session: SessionDep, ip: ClientIP, body: LogoutRequest | None = None
) -> Response:
    """Ends this session (its access and refresh tokens); `all_sessions` ends every session."""
    body = body or LogoutRequest(refresh_token=None, all_sessions=False)
    auth_service.logout(
        session, principal, refresh_token=body.refresh_token, all_sessions=body.all_sessions, ip=ip
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/change-password", response_model=MessageEnvelope)
def change_password(
    body: ChangePasswordRequest, user: LoginSessionUser, session: SessionDep, ip: ClientIP
) -> object:
    """Changes the caller's password; every session ends (log in again with the new password)."""
    auth_service.change_password(session, user, current=body.current_password, new=body.new_password, ip=ip)
    return {"status": "success", "message": "Password changed successfully; please log in again"}


@router.post("/reset-password", response_model=MessageEnvelope)
def reset_password(body: ResetPasswordRequest, session: SessionDep, ip: ClientIP) -> object:
    """Step 1: mails a single-use reset token if the address belongs to an active account. The
    answer is the same whether or not it does, so it reveals nothing about who is registered."""
    accounts.request_password_reset(session, str(body.email), ip=ip)
    return {"status": "success", "message": RESET_REQUESTED_MESSAGE}


@router.post("/reset-password/confirm", response_model=MessageEnvelope)
def reset_password_confirm(body: ResetPasswordConfirm, session: SessionDep, ip: ClientIP) -> object:
    """Step 2: the mailed token and a new password. The token works once; every session of the
    account ends (log in again with the new password)."""
    user = accounts.confirm_password_reset(session, body.token, body.new_password, ip=ip)
    return {"status": "success", "message": "Password reset; please log in", "data": {"user_id": user.id}}


@router.post("/verify-email", response_model=MessageEnvelope)
def verify_email(body: VerifyEmailRequest, session: SessionDep, ip: ClientIP) -> object:
    """Verifies the address with the token mailed at registration (single use, expires)."""
    user = accounts.verify_email(session, body.token, ip=ip)
    return {
        "status": "success",
        "message": "Email verified",
        "data": {"user_id": user.id, "email_verified": True},
    }


@router.post("/verify-email/resend", response_model=MessageEnvelope)
def resend_verification(user: LoginSessionUser, session: SessionDep, ip: ClientIP) -> object:
    """Mails the caller a new verification token (older ones stop working)."""
    accounts.resend_verification(session, user, ip=ip)
    return {
        "status": "success",
        "message": "If the address is not verified yet, a new verification mail is on its way",
    }


@router.post("/2fa/setup", response_model=Envelope[TwoFactorSetup], responses=CONFLICT)
def two_factor_setup(user: LoginSessionUser, session: SessionDep) -> object:
    """New TOTP secret (stored encrypted); 2FA is on only after `/2fa/verify` with a code."""
    return ok(
        auth_service.setup_two_factor(session, user),
        "Scan the otpauth URL, then confirm with /auth/2fa/verify",
    )


@router.post("/2fa/verify", response_model=Envelope[TwoFactorStatus])
def two_factor_verify(
    body: TwoFactorCode, user: LoginSessionUser, session: SessionDep, ip: ClientIP
) -> object:
    auth_service.enable_two_factor(session, user, body.value, ip)
    return ok({"two_factor_enabled": True}, "Two-factor authentication enabled")


@router.post("/2fa/disable", response_model=Envelope[TwoFactorStatus])
def two_factor_disable(
    body: TwoFactorDisable, user: LoginSessionUser, session: SessionDep, ip: ClientIP
) -> object:
    auth_service.disable_two_factor(
        session, user, password=body.password, code=body.code or body.otp_code, ip=ip
    )
    return ok({"two_factor_enabled": False}, "Two-factor authentication disabled")
