"""TOTP two-factor authentication: setup, verify, login with a code, disable."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pyotp
from api_helpers import ApiUser, assert_error_shape


def test_two_factor_flow(client: httpx.Client, make_user: Callable[..., ApiUser]) -> None:
    user = make_user("engineer")
    setup = client.post("/api/v1/auth/2fa/setup", headers=user.headers)
    assert setup.status_code == 200, setup.text
    data = setup.json()["data"]
    assert data["otp_auth_url"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(data["otp_secret"])

    # not enabled before it is verified: login still works without a code
    assert (
        client.post(
            "/api/v1/auth/login", json={"username": user.username, "password": user.password}
        ).status_code
        == 200
    )
    bad = client.post("/api/v1/auth/2fa/verify", headers=user.headers, json={"code": "000000"})
    assert_error_shape(bad, 400)
    ok = client.post("/api/v1/auth/2fa/verify", headers=user.headers, json={"code": totp.now()})
    assert ok.status_code == 200 and ok.json()["data"]["two_factor_enabled"] is True

    without = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    body = assert_error_shape(without, 401, "AUTH_FAILED")
    assert body["error"]["details"]["two_factor_required"] is True
    wrong = client.post(
        "/api/v1/auth/login",
        json={"username": user.username, "password": user.password, "otp_code": "123456"},
    )
    assert_error_shape(wrong, 401, "AUTH_FAILED")
    # the verify call used this step's code; a code is single-use, so log in with the next step's
    # (accepted: one step of clock drift either way)
    next_code = totp.at(time.time() + totp.interval)
    creds = {"username": user.username, "password": user.password}
    with_code = client.post("/api/v1/auth/login", json={**creds, "otp_code": next_code})
    assert with_code.status_code == 200, with_code.text
    replay = client.post("/api/v1/auth/login", json={**creds, "totp_code": next_code})
    assert_error_shape(replay, 401, "AUTH_FAILED")
    me = client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {with_code.json()['access_token']}"}
    )
    assert me.json()["two_factor_enabled"] is True

    disable = client.post("/api/v1/auth/2fa/disable", headers=user.headers, json={"password": user.password})
    assert disable.status_code == 200 and disable.json()["data"]["two_factor_enabled"] is False
    assert (
        client.post(
            "/api/v1/auth/login", json={"username": user.username, "password": user.password}
        ).status_code
        == 200
    )
