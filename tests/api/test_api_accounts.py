"""Mailed account tokens: email verification and password reset through the development outbox."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import httpx
import sqlalchemy as sa
from api_helpers import PASSWORD, ApiServer, ApiUser, assert_error_shape, bearer, login

from api.core.mail import read_outbox

TOKEN = re.compile(r"Token: (\S+)")


def _mails_to(server: ApiServer, address: str) -> list[EmailMessage]:
    return [m for m in read_outbox(Path(server.env["AETL_MAIL_OUTBOX_DIR"])) if m["To"] == address]


def _token(mail: EmailMessage) -> str:
    body = mail.get_body()
    assert body is not None
    match = TOKEN.search(body.get_content())
    assert match, body.get_content()
    return match.group(1)


def _register(client: httpx.Client) -> dict[str, str]:
    name = f"acc_{secrets.token_hex(4)}"
    response = client.post(
        "/api/v1/auth/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_registration_mails_a_single_use_verification_token(
    client: httpx.Client, api_server: ApiServer
) -> None:
    user = _register(client)
    mails = _mails_to(api_server, user["email"])
    assert len(mails) == 1 and "Verify" in mails[0]["Subject"]
    token = _token(mails[0])

    tokens = login(client, user["username"], PASSWORD)
    assert (
        client.get("/api/v1/users/me", headers=bearer(tokens["access_token"])).json()["email_verified"]
        is False
    )
    verified = client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["data"] == {"user_id": user["id"], "email_verified": True}
    assert (
        client.get("/api/v1/users/me", headers=bearer(tokens["access_token"])).json()["email_verified"]
        is True
    )
    # single use
    assert_error_shape(client.post("/api/v1/auth/verify-email", json={"token": token}), 401, "INVALID_TOKEN")
    assert_error_shape(
        client.post("/api/v1/auth/verify-email", json={"token": "not-a-valid-token"}), 401, "INVALID_TOKEN"
    )
    # the token is stored hashed: the raw value is nowhere in the table
    engine = sa.create_engine(api_server.database_url)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT token_hash FROM account_tokens WHERE user_id = :u"), {"u": user["id"]}
        )
        hashes = [row[0] for row in stored]
    engine.dispose()
    assert hashes and token not in hashes


def test_admin_created_user_gets_mail_and_resend_supersedes(
    client: httpx.Client, api_server: ApiServer, make_user: Callable[..., ApiUser]
) -> None:
    user = make_user("engineer")
    first = _token(_mails_to(api_server, user.email)[-1])
    resent = client.post("/api/v1/auth/verify-email/resend", headers=user.headers)
    assert resent.status_code == 200
    mails = _mails_to(api_server, user.email)
    assert len(mails) == 2
    second = _token(mails[-1])
    # only the latest mail counts
    assert_error_shape(client.post("/api/v1/auth/verify-email", json={"token": first}), 401, "INVALID_TOKEN")
    assert client.post("/api/v1/auth/verify-email", json={"token": second}).status_code == 200
    # verified: resend sends nothing more
    assert client.post("/api/v1/auth/verify-email/resend", headers=user.headers).status_code == 200
    assert len(_mails_to(api_server, user.email)) == 2


def test_password_reset_request_and_confirm(client: httpx.Client, api_server: ApiServer) -> None:
    user = _register(client)
    old_session = login(client, user["username"], PASSWORD)
    known = client.post("/api/v1/auth/reset-password", json={"email": user["email"].upper()})
    unknown = client.post(
        "/api/v1/auth/reset-password", json={"email": f"nobody_{secrets.token_hex(3)}@example.com"}
    )
    # no user enumeration: same status, same body
    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()
    resets = [m for m in _mails_to(api_server, user["email"]) if "Reset" in m["Subject"]]
    assert len(resets) == 1
    token = _token(resets[0])

    weak = client.post("/api/v1/auth/reset-password/confirm", json={"token": token, "new_password": "short"})
    assert_error_shape(weak, 422)
    done = client.post(
        "/api/v1/auth/reset-password/confirm", json={"token": token, "new_password": "BrandNew123"}
    )
    assert done.status_code == 200, done.text
    # the old password and every old session are dead; the new password works
    assert_error_shape(
        client.post("/api/v1/auth/login", json={"username": user["username"], "password": PASSWORD}), 401
    )
    assert_error_shape(client.get("/api/v1/users/me", headers=bearer(old_session["access_token"])), 401)
    assert_error_shape(
        client.post("/api/v1/auth/refresh", json={"refresh_token": old_session["refresh_token"]}), 401
    )
    login(client, user["username"], "BrandNew123")
    # single use
    again = client.post(
        "/api/v1/auth/reset-password/confirm", json={"token": token, "new_password": "Another123"}
    )
    assert_error_shape(again, 401, "INVALID_TOKEN")
    # the token never shows up in the activity log
    admin = login(client, api_server.admin_username, api_server.admin_password)["access_token"]
    logs = client.get(f"/api/v1/admin/activity-logs/{user['id']}", headers=bearer(admin))
    if logs.status_code == 200:
        assert token not in logs.text


def test_expired_reset_token_is_refused(client: httpx.Client, api_server: ApiServer) -> None:
    user = _register(client)
    client.post("/api/v1/auth/reset-password", json={"email": user["email"]})
    token = _token([m for m in _mails_to(api_server, user["email"]) if "Reset" in m["Subject"]][-1])
    engine = sa.create_engine(api_server.database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE account_tokens SET expires_at = now() - interval '1 minute' "
                "WHERE user_id = :u AND purpose = 'reset_password'"
            ),
            {"u": user["id"]},
        )
    engine.dispose()
    expired = client.post(
        "/api/v1/auth/reset-password/confirm", json={"token": token, "new_password": "BrandNew123"}
    )
    assert_error_shape(expired, 401, "TOKEN_EXPIRED")
    login(client, user["username"], PASSWORD)


def test_reset_mails_are_capped_per_account(client: httpx.Client, api_server: ApiServer) -> None:
    user = _register(client)
    limit = 3  # AETL_ACCOUNT_MAIL_LIMIT default
    answers = [
        client.post("/api/v1/auth/reset-password", json={"email": user["email"]}) for _ in range(limit + 2)
    ]
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    resets = [m for m in _mails_to(api_server, user["email"]) if "Reset" in m["Subject"]]
    assert len(resets) == limit
