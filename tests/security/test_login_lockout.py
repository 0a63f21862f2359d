"""Failed logins and 2FA codes lock out an account or an address for a while (issue 14)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import httpx
import pyotp
from api_helpers import PASSWORD, ApiServer, ApiUser, assert_error_shape

LOGIN = "/api/v1/auth/login"
LOCK_SECONDS = 15


def _login(client: httpx.Client, username: str, password: str, **extra: str) -> httpx.Response:
    return client.post(LOGIN, json={"username": username, "password": password, **extra})


def _assert_locked(response: httpx.Response, scope: str) -> int:
    body = assert_error_shape(response, 429, "RATE_LIMIT_EXCEEDED")
    assert body["errors"][0]["code"] == "RATE_001"
    assert body["error"]["details"]["reason"] == "too_many_failed_attempts"
    assert body["error"]["details"]["scope"] == scope
    assert 1 <= int(response.headers["Retry-After"]) <= LOCK_SECONDS
    return int(response.headers["Retry-After"])


def test_failed_logins_and_codes_lock_out_account_then_address(
    start_api: Callable[..., ApiServer], client: httpx.Client, make_user: Callable[..., ApiUser]
) -> None:
    guessed, with_2fa, bystander = make_user("viewer"), make_user("viewer"), make_user("viewer")
    setup = client.post("/api/v1/auth/2fa/setup", headers=with_2fa.headers).json()["data"]
    totp = pyotp.TOTP(setup["otp_secret"])
    assert client.post(
        "/api/v1/auth/2fa/verify", headers=with_2fa.headers, json={"code": totp.now()}
    ).is_success

    server = start_api(
        AETL_LOGIN_MAX_FAILURES_PER_ACCOUNT="3",
        AETL_LOGIN_MAX_FAILURES_PER_ADDRESS="9",
        AETL_LOGIN_LOCKOUT_SECONDS=str(LOCK_SECONDS),
    )
    with httpx.Client(base_url=server.url, timeout=30) as api:
        started = time.monotonic()
        # password guessing: the account locks, even the right password is refused meanwhile
        for _ in range(3):
            assert_error_shape(_login(api, guessed.username, "wrong1234"), 401, "AUTH_FAILED")
        _assert_locked(_login(api, guessed.username, guessed.password), "account")
        _assert_locked(_login(api, guessed.email, guessed.password), "account")

        # one-time code guessing after a right password locks the same way
        for code in ("000000", "111111", "222222"):
            wrong = _login(api, with_2fa.username, with_2fa.password, otp_code=code)
            assert_error_shape(wrong, 401, "AUTH_FAILED")
        next_code = totp.at(time.time() + totp.interval)
        _assert_locked(_login(api, with_2fa.username, with_2fa.password, otp_code=next_code), "account")

        # unknown names are throttled too; spread over names, the address locks
        for _ in range(3):
            unknown = _login(api, f"nobody_{secrets.token_hex(4)}", PASSWORD)
            assert_error_shape(unknown, 401, "AUTH_FAILED")
        wait = _assert_locked(_login(api, bystander.username, bystander.password), "address")
        assert time.monotonic() - started < LOCK_SECONDS, "too slow to observe the lock-out"

        # Retry-After is honest: once it has passed, the first failures have aged out
        time.sleep(wait + 1)
        assert _login(api, guessed.username, guessed.password).status_code == 200
